#!/usr/bin/env bash
# One GPU-machine pass for this round's CUDA work, in order of need so that
# a short machine still returns the first parts (everything lands in
# OUT_DIR as it is made):
#   1. with WIDE_ONLY="recipe ...", those realistic-width recipes' goldens
#      remade from transformers (OUT_DIR/wide_new.tgz to unpack at the
#      repository root);
#   2. the realistic-width and batch tests; then (ROUND=lean or full)
#      batched decode of the Llama-3.1-8B shape and single-sequence decode
#      with the model's own caches and the engine's;
#   3. every other CUDA test, and the single-sequence ones again with the
#      API's caches on the paged engine (LMC_CUDA_SINGLE_SEQ_CACHE=0, flash
#      prompt chunks: LMC_CUDA_PAGED_FA_MIN=16);
#   4. (ROUND=full, the default) single-sequence prefill, the README table
#      against transformers (bench/batch_vs_hf.py), batched decode with
#      the split attention, one-row GEMV and one-row decode kernels off, and
#      a batch-64 kernel profile; with BASE_SRC=DIR (another source tree,
#      carried), single-sequence decode and prefill against it
#      (bench/single_seq_vs_base.sh).
#   [ROUND=checks|lean|full] [WIDE_ONLY=...] [BASE_SRC=DIR] \
#     tests/oracle/round_device.sh OUT_DIR
# (ROUND=checks needs about two minutes of machine time.)
set -u
out=$1 work=/tmp/lmcbench round=${ROUND:-full}
mkdir -p "$out" "$work"
export LMC_SOURCE_DIR=$PWD
[ "$round" = checks ] || python3 - "$work" > "$out/ckpt.log" 2>&1 <<'PY' &
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dp", "bench/decode_prefill_vs_hf.py")
dp = importlib.util.module_from_spec(spec); spec.loader.exec_module(dp)
dp.write_checkpoint("llama-3.1-8b", sys.argv[1])
PY
if [ -n "${WIDE_ONLY:-}" ]; then
  new="$WIDE_ONLY"
  WIDE_ONLY="$new" python3 tests/oracle/make_wide_models.py tests/golden/wide > "$out/goldens.log" 2>&1
  grep -v "Writing model" "$out/goldens.log" | tail -4
  tar czf "$out/wide_new.tgz" $(for n in $new; do [ -d tests/golden/wide/$n ] && echo tests/golden/wide/$n; done)
fi
source scripts/device_env.sh
tests="test_cuda_wide_parity test_cuda_batch test_cuda_kernels test_cuda_paged_attn test_cuda_gemm test_cuda_parity test_cuda_generate"
benches=""
[ "$round" = checks ] || benches="batch_decode decode prefill"
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target $tests $benches >> "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
runtests() {
  for t in "$@"; do
    timeout 90 build-dev/tests/cuda/$t > "$out/$t.log" 2>&1; echo "$t exit $?"
    grep -E "CHECK|FAIL" "$out/$t.log" | head -6; tail -1 "$out/$t.log"
  done
}
# the single-sequence generation tests again with the API's caches on the
# paged engine (test_cuda_parity runs both itself)
enginetests() {
  for t in test_cuda_generate; do
    LMC_CUDA_SINGLE_SEQ_CACHE=0 LMC_CUDA_PAGED_FA_MIN=16 timeout 90 build-dev/tests/cuda/$t > "$out/$t-engine.log" 2>&1
    echo "$t (engine caches) exit $?"; grep -E "CHECK|FAIL" "$out/$t-engine.log" | head -6
    tail -1 "$out/$t-engine.log"
  done
}
first="test_cuda_wide_parity test_cuda_batch"
rest="test_cuda_kernels test_cuda_paged_attn test_cuda_gemm test_cuda_parity test_cuda_generate"
runtests $first
if [ "$round" = checks ]; then runtests $rest; enginetests; exit 0; fi
wait
summ() { python3 -c "import json,sys; d=json.load(sys.stdin); print('$1', ' '.join('%d:%.1f/%.1f%%' % (r['batch'], r['tokens_per_s'], 100*r['fraction']) for r in d['runs']))"; }
m="$work/llama-3.1-8b"
build-dev/bench/batch_decode "$m" 512 32 1,8,32,64,128 | tee "$out/after.json" | summ after
for own in 1 0; do  # single-sequence decode: own caches, then the engine's
  LMC_CUDA_SINGLE_SEQ_CACHE=$own LMC_CUDA_PAGED_FA_MIN=16 build-dev/bench/decode "$m" 2>&1 | tail -1 | tee "$out/decode-own$own.json"
done
runtests $rest
enginetests
[ "$round" = lean ] && exit 0
for own in 1 0; do
  LMC_CUDA_SINGLE_SEQ_CACHE=$own LMC_CUDA_PAGED_FA_MIN=16 build-dev/bench/prefill "$m" 2>&1 | tail -1 | tee "$out/prefill-own$own.json"
done
# the README table: lmc and transformers on the same checkpoint, same run
python3 bench/batch_vs_hf.py build-dev "$work" 512 1,8,32,64,128 > "$out/batch_vs_hf.log" 2>&1
grep -v "^  \$" "$out/batch_vs_hf.log" | tail -9
LMC_CUDA_GEMV_ROWS=0 LMC_CUDA_PA_SPLITS=1 LMC_CUDA_BATCH_DECODE=0 build-dev/bench/batch_decode "$m" 512 32 1,8,32,64,128 | tee "$out/before.json" | summ before
# where a batch-64 step's time goes now (Nsight Compute, graphs off)
command -v ncu > /dev/null && timeout 150 bash bench/batch_profile.sh build-dev "$m" 64 "$out/ncu64.csv" > "$out/ncu64.txt" 2>&1
head -30 "$out/ncu64.txt" 2>/dev/null
if [ -n "${BASE_SRC:-}" ]; then
  bash bench/single_seq_vs_base.sh "$BASE_SRC" "$m" 2 > "$out/single_seq.txt" 2>&1
  tail -6 "$out/single_seq.txt"
fi
