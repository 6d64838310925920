#!/usr/bin/env bash
# One GPU-machine pass over the merged tree: the CUDA tests, the perplexity
# golden from transformers, the start-up benchmark (tokenizer loads beside
# HF tokenizers; time to first token of `lmc generate` on a Qwen2.5-0.5B-
# shaped checkpoint) and the token-mask benchmark.   tests/oracle/final_device.sh OUT_DIR
set -u
out=$1
source scripts/device_env.sh
export LMC_SOURCE_DIR=$PWD
cmake -S . -B bd $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build bd -j16 --target test_cuda_wide_parity test_cuda_parity test_cuda_generate \
    test_cuda_batch test_cuda_kernels tokenizer_load_bench mask_bench >> "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
for t in wide_parity parity generate batch kernels; do
  bd/tests/cuda/test_cuda_$t > "$out/$t.log" 2>&1; echo "test_cuda_$t exit $?"
  grep -E "CHECK|phi3.*(err|refused)" "$out/$t.log" | head -8; tail -1 "$out/$t.log"
done
python3 tests/oracle/perplexity_golden.py 2>&1 | tail -4
cp tests/golden/perplexity/stories260K.json "$out/"
LMC_BENCH_N=5 bash bench/startup.sh bd 2>&1 | tail -14
bd/bench/mask_bench .cache/assets/tokenizers/qwen3 1.164 2>&1 | tail -8
