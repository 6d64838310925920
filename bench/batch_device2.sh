#!/usr/bin/env bash
# Batched execution on a GPU machine without the earlier-tree comparison:
# build, the CUDA batch test, batch_decode with CUDA graphs off (for
# comparison), then bench/batch_vs_hf.py.   bench/batch_device2.sh OUT_DIR [WORK_DIR]
set -u
out=$1 work=${2:-/tmp/lmcbench}
mkdir -p "$out" "$work"
source scripts/device_env.sh
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target test_cuda_batch batch_decode >> "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
export LMC_SOURCE_DIR=$PWD
build-dev/tests/cuda/test_cuda_batch > "$out/batch.log" 2>&1; echo "test_cuda_batch exit $?"
grep -E "CHECK|sequences|greedy-only|checks" "$out/batch.log" | head -24
python3 - "$work" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dp", "bench/decode_prefill_vs_hf.py")
dp = importlib.util.module_from_spec(spec); spec.loader.exec_module(dp)
dp.write_checkpoint("llama-3.1-8b", sys.argv[1])
PY
LMC_CUDA_GRAPHS=0 build-dev/bench/batch_decode "$work/llama-3.1-8b" 512 32 1,64 | tee "$out/nograph.json"
python3 bench/batch_vs_hf.py build-dev "$work" 512 "${BATCHES:-1,8,32,64,128}" 2>&1 | tee "$out/batch_bench.log" | grep -v "^  \$" | tail -12
