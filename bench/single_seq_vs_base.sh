#!/usr/bin/env bash
# Single-sequence CUDA decode and prefill (bench/decode, bench/prefill) of
# this tree against another source tree on the same checkpoint, in one run
# on one machine: the other tree (BASE_SRC, e.g. `git archive REV | tar -x
# -C DIR`), this tree with the model's own single-sequence caches
# (LMC_CUDA_SINGLE_SEQ_CACHE=1), and this tree with the API's caches on the
# paged engine (LMC_CUDA_SINGLE_SEQ_CACHE=0; prompt chunks through the flash
# kernel over their block table, LMC_CUDA_PAGED_FA_MIN=16),
# alternating, RUNS times each. Prints every run, then the medians and
# their ratios to the base. On a GPU machine (scripts/device_env.sh):
#   bench/single_seq_vs_base.sh BASE_SRC MODEL_DIR [RUNS]
set -eu
base=$1 m=$2 runs=${3:-3}
log=${TMPDIR:-/tmp}/single_seq_vs_base
mkdir -p "$log"
source scripts/device_env.sh
build() { # SRC BUILD_DIR
  cmake -S "$1" -B "$2" $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$log/$(basename "$2").log" 2>&1 &&
    cmake --build "$2" -j"$(nproc)" --target decode prefill >> "$log/$(basename "$2").log" 2>&1 ||
    { tail -20 "$log/$(basename "$2").log"; exit 1; }
}
build . build-dev &
build "$base" build-dev-base &
wait %1 && wait %2
for i in $(seq "$runs"); do
  for v in base own engine; do
    b=build-dev own=0
    [ "$v" = base ] && b=build-dev-base
    [ "$v" = own ] && own=1
    for k in decode prefill; do
      printf '%s %s ' "$v" "$k"
      LMC_CUDA_SINGLE_SEQ_CACHE=$own LMC_CUDA_PAGED_FA_MIN=16 "$b/bench/$k" "$m" 2>&1 | tail -1
    done
  done
done | tee "$log/runs.txt"
python3 - "$log/runs.txt" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    v, k, js = line.split(" ", 2)
    d = json.loads(js)
    runs.setdefault((v, k), []).append(d["tokens_per_s"] if k == "decode" else d["tflops"])
for k, unit in (("decode", "tok/s"), ("prefill", "TFLOP/s")):
    b = statistics.median(runs[("base", k)])
    for v in ("base", "own", "engine"):
        x = statistics.median(runs[(v, k)])
        print("%-7s %-6s median %8.2f %s  %.3fx base" % (k, v, x, unit, x / b))
PY
