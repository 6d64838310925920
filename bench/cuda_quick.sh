#!/usr/bin/env bash
# One GPU-machine pass while tuning the CUDA backend: build, the GPU tests,
# lmc-only decode/prefill on the three benchmark shapes (WITH_HF=1: the full
# comparison with transformers, and nothing after it), a decode run with
# programmatic launches off for comparison, the decode graph's edge types
# and a per-kernel profile of Llama-3.2-1B decode steps.
#   bench/cuda_quick.sh OUT_DIR [WORK_DIR]
set -u
out=$1 work=${2:-/tmp/lmcbench}
mkdir -p "$out"
source scripts/device_env.sh
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target decode prefill test_cuda_kernels test_cuda_parity \
    test_cuda_generate \
    >> "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
build-dev/tests/cuda/test_cuda_kernels 2>&1 | tee "$out/kernels.log" | tail -25
build-dev/tests/cuda/test_cuda_parity 2>&1 | tee "$out/parity.log" | tail -4
build-dev/tests/cuda/test_cuda_generate 2>&1 | tail -3
[ -n "${WITH_HF:-}" ] || export LMC_BENCH_SKIP_HF=1
python3 bench/decode_prefill_vs_hf.py build-dev "$work" 2>&1 |
  tee "$out/bench.log" | grep -v '^  \$' | tail -8
[ -n "${WITH_HF:-}" ] && exit 0
for m in llama-3.2-1b llama-3.1-8b; do
  echo "$m, programmatic launches off:"
  LMC_CUDA_PDL=0 build-dev/bench/decode "$work/$m" 128 256 3 | tail -1
done
LMC_CUDA_GRAPH_INFO=1 build-dev/bench/decode "$work/llama-3.2-1b" 16 8 1 2>&1 | grep graph | head -2
bash bench/decode_profile.sh build-dev "$work/llama-3.2-1b" 400 200 "$out/ncu.csv" | head -14
