#!/usr/bin/env bash
# Start-up costs, measured in one run:
#  1. tokenizer.json load time of every test tokenizer: lmc_tokenizer_load
#     (bench/tokenizer_load_bench) beside Hugging Face tokenizers'
#     Tokenizer.from_file when the Python `tokenizers` package is importable
#     (median of N loads in one process each, wall time), with the ratio
#     HF / lmc; lmc's thread CPU time is shown too (a busy machine inflates
#     wall time far more than it);
#  2. with MODEL_DIR: time to first token of `lmc generate` (wall time of the
#     whole process asked for one token: start, load, prefill, first token
#     and exit, so an upper bound), median of N runs.
#   bench/startup.sh BUILD_DIR [MODEL_DIR [DEVICE]]     (N=7 by default: LMC_BENCH_N)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: bench/startup.sh BUILD_DIR [MODEL_DIR [cpu|cuda]]}
model=${2:-}
device=${3:-cpu}
n=${LMC_BENCH_N:-7}
have_hf=0
python3 -c "import tokenizers" 2>/dev/null && have_hf=1

echo "== tokenizer.json load (median of $n)"
dirs=()
for d in "$root"/.cache/assets/tokenizers/* "$root"/tests/golden/tokenizer/*/; do
  [ -f "$d/tokenizer.json" ] && dirs+=("${d%/}")
done
for d in "${dirs[@]}"; do
  name=$(basename "$d")
  line=$("$build/bench/tokenizer_load_bench" "$d" "$name" "$n")
  lmc_ms=$(sed -E 's/.*load: median ([0-9.]+) ms.*/\1/' <<<"$line")
  cpu_ms=$(sed -E 's/.*cpu median ([0-9.]+) ms.*/\1/' <<<"$line")
  if ((have_hf)); then
    hf_ms=$(python3 - "$d/tokenizer.json" "$n" <<'PY'
import statistics, sys, time
from tokenizers import Tokenizer
t = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    Tokenizer.from_file(sys.argv[1])
    t.append((time.perf_counter() - t0) * 1e3)
print(f"{statistics.median(t):.1f}")
PY
)
    ratio=$(python3 -c "print(f'{$hf_ms / $lmc_ms:.2f}')")
    printf '%-12s lmc %7.1f ms (cpu %7.1f)   HF tokenizers %7.1f ms   HF/lmc %sx\n' "$name" \
      "$lmc_ms" "$cpu_ms" "$hf_ms" "$ratio"
  else
    printf '%-12s lmc %7.1f ms (cpu %7.1f)   (HF tokenizers not importable here)\n' "$name" \
      "$lmc_ms" "$cpu_ms"
  fi
done

[ -n "$model" ] || exit 0
echo "== lmc generate: time to first token ($model, $device, median of $n)"
times=()
for _ in $(seq "$n"); do
  t0=$(date +%s%N)
  "$build/tools/lmc" generate -m "$model" -p "Hello" --max-tokens 1 --device "$device" \
    >/dev/null 2>&1
  t1=$(date +%s%N)
  times+=($(((t1 - t0) / 1000000)))
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)];
  printf "first token within %d ms of start (median; runs: min %d, max %d ms)\n", m, a[1], a[NR]}'
