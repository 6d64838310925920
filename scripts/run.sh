#!/usr/bin/env bash
# Set up, build, and run lmc's main job end to end on this machine:
#   1. tokenize text with a real tokenizer (Qwen3),
#   2. render a real chat template (Qwen3) for a two-message conversation,
#   3. greedy-generate 32 tokens from a tiny random-weight Qwen3 checkpoint
#      (tests/golden/models/qwen3-bf16, written by HF transformers) and show
#      the greedy ids transformers produced for the same prompt.
# Pass a model directory to generate from your own checkpoint instead:
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

echo "== tokenize (Qwen3 tokenizer)"
"$lmc" tokenize -t "$tok" "Hello, world! Grüße aus Köln 🌍"

echo "== chat template (Qwen3)"
msgs=$(mktemp)
trap 'rm -f "$msgs"' EXIT
printf '%s' '[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi!"}]' >"$msgs"
"$lmc" template --model "$tok" --messages "$msgs" --add-generation-prompt

echo "== generate (tiny random-weight qwen3, bf16, greedy)"
golden=tests/golden/models/qwen3-bf16/golden.json
ids=$(tr -d ' \n' <"$golden" | sed -E 's/.*"prompt":\[([0-9,]*)\].*/\1/')
"$lmc" generate -m tests/golden/models/qwen3-bf16 --tokenizer "$tok" --prompt-ids "$ids" \
  --max-tokens 32
echo "transformers' greedy ids for this prompt:"
tr -d ' \n' <"$golden" | sed -E 's/.*"greedy":\[([0-9,]*)\].*/\1/'; echo
