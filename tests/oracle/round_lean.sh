#!/usr/bin/env bash
# The shortest GPU-machine pass of round_device.sh: the new recipes'
# goldens, every CUDA test (with and without LMC_CUDA_PREVIEW=1), then
# batched decode of the Llama-3.1-8B shape and single-sequence decode with
# the model's own caches and the engine's, as far as the time allows.
#   tests/oracle/round_lean.sh OUT_DIR
set -u
out=$1 work=/tmp/lmcbench
mkdir -p "$out" "$work"
export LMC_SOURCE_DIR=$PWD
new="${WIDE_ONLY:-phi3_partial gemma3_text_softcap phi3_longrope}"
python3 - "$work" > "$out/ckpt.log" 2>&1 <<'PY' &
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dp", "bench/decode_prefill_vs_hf.py")
dp = importlib.util.module_from_spec(spec); spec.loader.exec_module(dp)
dp.write_checkpoint("llama-3.1-8b", sys.argv[1])
PY
WIDE_ONLY="$new" python3 tests/oracle/make_wide_models.py tests/golden/wide > "$out/goldens.log" 2>&1
grep -v "Writing model" "$out/goldens.log" | tail -4
tar czf "$out/wide_new.tgz" $(for n in $new; do [ -d tests/golden/wide/$n ] && echo tests/golden/wide/$n; done)
source scripts/device_env.sh
tests="test_cuda_wide_parity test_cuda_batch test_cuda_kernels test_cuda_paged_attn test_cuda_gemm test_cuda_parity test_cuda_generate"
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target $tests batch_decode decode >> "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
for t in $tests; do
  timeout 90 build-dev/tests/cuda/$t > "$out/$t.log" 2>&1; echo "$t exit $?"
  grep -E "CHECK|FAIL" "$out/$t.log" | head -6; tail -1 "$out/$t.log"
done
for t in test_cuda_parity test_cuda_generate; do
  LMC_CUDA_PREVIEW=1 timeout 90 build-dev/tests/cuda/$t > "$out/$t-engine.log" 2>&1
  echo "$t (engine caches) exit $?"; grep -E "CHECK|FAIL" "$out/$t-engine.log" | head -6
  tail -1 "$out/$t-engine.log"
done
wait
summ() { python3 -c "import json,sys; d=json.load(sys.stdin); print('$1', ' '.join('%d:%.1f/%.1f%%' % (r['batch'], r['tokens_per_s'], 100*r['fraction']) for r in d['runs']))"; }
m="$work/llama-3.1-8b"
build-dev/bench/batch_decode "$m" 512 32 1,8,32,64,128 | tee "$out/after.json" | summ after
for pv in 0 1; do
  LMC_CUDA_PREVIEW=$pv build-dev/bench/decode "$m" 2>&1 | tail -1 | tee "$out/decode$pv.json"
done
LMC_CUDA_GEMV_ROWS=0 LMC_CUDA_PA_SPLITS=1 LMC_CUDA_BATCH_DECODE=0 build-dev/bench/batch_decode "$m" 512 32 1,64 | tee "$out/before.json" | summ before
