#!/usr/bin/env bash
# Set up, build, and run lmc's main job end to end on this machine:
#   1. tell a story: greedy generation from the stories260K TinyStories model
#      shipped in models/stories260K (a 260K-parameter Llama, MIT), checked
#      token for token against the reference run's greedy ids,
#   2. tokenize text with a real tokenizer (Qwen3),
#   3. render a real chat template (Qwen3) for a two-message conversation.
# Pass a model directory (or an org/name in the local Hugging Face cache) to
# generate from your own checkpoint instead:
#   bash scripts/run.sh /path/to/model "Your prompt"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
lmc=./build/tools/lmc
tok=.cache/assets/tokenizers/qwen3

if [ $# -ge 1 ]; then
  exec "$lmc" generate -m "$1" -p "${2:-Hello}" --max-tokens "${3:-128}"
fi

model=models/stories260K
echo "== a story from stories260K (greedy, from the BOS token)"
log=$(mktemp)
msgs=$(mktemp)
trap 'rm -f "$log" "$msgs"' EXIT
# The model begins each new story with <s>: the story ends there.
"$lmc" generate -m "$model" --prompt-ids 1 --max-tokens 400 --stop "<s>" --print-ids 2>"$log"
got=$(sed -n 's/^\[generated ids \([0-9,]*\)\]$/\1/p' "$log")
want=$(tr -d ' \n' <"$model/golden_greedy_from_bos.json" | sed -E 's/.*"greedy_ids":\[([0-9,]*)\].*/\1/')
n=$(tr ',' '\n' <<<"$want" | wc -l)
if [ "$(cut -d, -f1-"$n" <<<"$got")" != "$want" ]; then
  echo "run: the first $n greedy ids differ from the reference run" >&2
  echo "  lmc:       $got" >&2
  echo "  reference: $want" >&2
  exit 1
fi
echo "(the first $n greedy ids equal the reference run's: $want)"

echo "== tokenize (Qwen3 tokenizer)"
"$lmc" tokenize -t "$tok" "Hello, world! Grüße aus Köln 🌍"

echo "== chat template (Qwen3)"
printf '%s' '[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi!"}]' >"$msgs"
"$lmc" template --model "$tok" --messages "$msgs" --add-generation-prompt
