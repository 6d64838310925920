#!/usr/bin/env bash
# Side-by-side single-thread encode throughput: lmc vs the Hugging Face
# `tokenizers` library on the same text (the test corpus, each pass in a
# different order, ~1.5 MB), one line per call for both.
#   bench/tokenizer_bench.sh BUILD_DIR [NAME=TOKENIZER_DIR ...]
# Without NAME=DIR pairs it uses the fetched assets. Prints MB/s for both and
# the ratio lmc/HF; token counts must agree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: bench/tokenizer_bench.sh BUILD_DIR [NAME=DIR ...]}
shift
specs=("$@")
if ((${#specs[@]} == 0)); then
  for n in qwen3 llama3_1 llama2 gemma3 deepseek_v3 gptoss; do
    d="$root/.cache/assets/tokenizers/$n"
    [ -f "$d/tokenizer.json" ] && specs+=("$n=$d")
  done
  specs+=("bert=$root/tests/golden/tokenizer/bert" "unigram=$root/tests/golden/tokenizer/unigram")
fi
text=$(mktemp /tmp/lmc_tok_bench.XXXXXX)
trap 'rm -f "$text"' EXIT
python3 - "$root/tests/golden/tokenizer/corpus.jsonl" "$text" <<'PY'
import json, random, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
lines = [l.replace("\n", " ") for l in lines if l]
rng = random.Random(7)
out = []
for _ in range(10):
    rng.shuffle(lines)
    out.extend(lines)
open(sys.argv[2], "w", encoding="utf-8", newline="").write("\n".join(out))
PY
have_hf=0
python3 -c "import tokenizers" 2>/dev/null && have_hf=1
for spec in "${specs[@]}"; do
  name=${spec%%=*}; dir=${spec#*=}
  lmc_line=$("$build/bench/tokenizer_bench" "$dir" "$text" "$name")
  echo "$lmc_line"
  if ((have_hf)); then
    hf_line=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 \
      "$root/tests/oracle/tokenizer_goldens.py" bench "$text" "$name=$dir/tokenizer.json")
    echo "$hf_line"
    python3 - "$lmc_line" "$hf_line" <<'PY'
import re, sys
l = re.search(r": ([\d.]+) MB/s \((\d+) tokens", sys.argv[1])
h = re.search(r": ([\d.]+) MB/s \((\d+) tokens", sys.argv[2])
same = "tokens agree" if l.group(2) == h.group(2) else "TOKEN COUNTS DIFFER"
print(f"ratio lmc/hf: {float(l.group(1)) / float(h.group(1)):.2f}x ({same})")
PY
  else
    echo "(python tokenizers not installed here: HF side not measured)"
  fi
done
