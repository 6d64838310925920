#!/usr/bin/env bash
# Batched decode on a GPU machine, each change of this round on and off in
# one run: build, the batched-path GPU tests, then bench/batch_decode on the
# Llama-3.1-8B shape (512-token contexts) with the earlier choices
# (LMC_CUDA_GEMV_ROWS=0: one-row products through cuBLASLt;
# LMC_CUDA_PA_SPLITS=1: no split attention;:
# the heuristic's GEMM picks) and the current ones.
#   bench/batch_quick.sh OUT_DIR [WORK_DIR]
set -u
out=$1 work=${2:-/tmp/lmcbench}
mkdir -p "$out" "$work"
source scripts/device_env.sh
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target test_cuda_paged_attn test_cuda_gemm test_cuda_batch \
    batch_decode decode_gemm >> "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
export LMC_SOURCE_DIR=$PWD
for t in test_cuda_paged_attn test_cuda_gemm test_cuda_batch; do
  build-dev/tests/cuda/$t > "$out/$t.log" 2>&1; echo "$t exit $?"; grep -E "FAIL|checks" "$out/$t.log" | head -5
done
[ -d "$work/llama-3.1-8b" ] || python3 - "$work" > /dev/null 2>&1 <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dp", "bench/decode_prefill_vs_hf.py")
dp = importlib.util.module_from_spec(spec); spec.loader.exec_module(dp)
dp.write_checkpoint("llama-3.1-8b", sys.argv[1])
PY
summ() { python3 -c "import json,sys; d=json.load(sys.stdin); print('$1', ' '.join('%d:%.1f/%.1f%%' % (r['batch'], r['tokens_per_s'], 100*r['fraction']) for r in d['runs']))"; }
LMC_CUDA_GEMV_ROWS=0 LMC_CUDA_PA_SPLITS=1 LMC_CUDA_BATCH_DECODE=0 build-dev/bench/batch_decode "$work/llama-3.1-8b" 512 32 "${BATCHES:-1,8,32,64,128}" | tee "$out/before.json" | summ before
build-dev/bench/batch_decode "$work/llama-3.1-8b" 512 32 "${BATCHES:-1,8,32,64,128}" | tee "$out/after.json" | summ after
[ -n "${ROWS:-}" ] && build-dev/bench/decode_gemm "$ROWS" | tee "$out/decode_gemm.md"
