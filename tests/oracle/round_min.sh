#!/usr/bin/env bash
# The least GPU-machine time that still checks this round's work against
# transformers: the new recipes' goldens first (OUT_DIR/wide_new.tgz), then
# the realistic-width CUDA parity (gemma3_text, partial rotary, softcapping
# through their kernels and the API's caches on the engine), the batched
# equivalence test, and the single-sequence tests on the engine's caches.
#   tests/oracle/round_min.sh OUT_DIR
set -u
out=$1
mkdir -p "$out"
export LMC_SOURCE_DIR=$PWD
new="${WIDE_ONLY:-phi3_partial gemma3_text_softcap phi3_longrope}"
WIDE_ONLY="$new" python3 tests/oracle/make_wide_models.py tests/golden/wide > "$out/goldens.log" 2>&1
grep -v "Writing model" "$out/goldens.log" | tail -4
tar czf "$out/wide_new.tgz" $(for n in $new; do [ -d tests/golden/wide/$n ] && echo tests/golden/wide/$n; done)
source scripts/device_env.sh
tests="test_cuda_wide_parity test_cuda_batch test_cuda_parity test_cuda_generate"
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target $tests >> "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
for t in $tests; do
  LMC_CUDA_PREVIEW=1 timeout 60 build-dev/tests/cuda/$t > "$out/$t.log" 2>&1; echo "$t exit $?"
  grep -E "CHECK|FAIL" "$out/$t.log" | head -8; tail -1 "$out/$t.log"
done
