#!/usr/bin/env bash
# On a GPU machine: (re)make the realistic-width goldens with transformers
# when asked (MAKE_GOLDENS=1, copied to OUT_DIR/wide.tgz), build the CUDA
# parity and batch tests, and run them with the CPU ones over the same
# recipes; with OLD_CUDA_LLAMA=FILE also build and run them against that
# version of src/backend/cuda/cuda_llama.c (to show a test fails before a
# fix).   tests/oracle/wide_device.sh OUT_DIR
set -u
out=$1
mkdir -p "$out"
if [ -n "${MAKE_GOLDENS:-}" ]; then
  python3 tests/oracle/make_wide_models.py tests/golden/wide 2>&1 | tee "$out/goldens.log" | tail -8
  tar czf "$out/wide.tgz" tests/golden/wide
fi
source scripts/device_env.sh
targets="test_cuda_wide_parity test_cuda_batch test_cuda_parity test_cuda_generate test_cuda_kernels
  test_wide_parity test_batch"
build() { # SRC BUILD
  cmake -S "$1" -B "$2" $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build-$(basename "$2").log" 2>&1 &&
    cmake --build "$2" -j16 --target $targets >> "$out/build-$(basename "$2").log" 2>&1 ||
    { tail -30 "$out/build-$(basename "$2").log"; exit 1; }
}
if [ -n "${OLD_CUDA_LLAMA:-}" ]; then
  rm -rf /tmp/lmc-old && mkdir -p /tmp/lmc-old
  tar cf - --exclude=./build\* --exclude=./.dev . | tar xf - -C /tmp/lmc-old
  cp "$OLD_CUDA_LLAMA" /tmp/lmc-old/src/backend/cuda/cuda_llama.c
  build /tmp/lmc-old /tmp/lmc-old/build-dev &
fi
build . build-dev
wait
export LMC_SOURCE_DIR=$PWD
if [ -n "${OLD_CUDA_LLAMA:-}" ]; then
  echo "== before the fix"
  /tmp/lmc-old/build-dev/tests/cuda/test_cuda_wide_parity > "$out/old.log" 2>&1
  echo "exit $?"; grep -E "err|refused|summary|parity:" "$out/old.log" | head -60
fi
echo "== after"
build-dev/tests/cuda/test_cuda_wide_parity > "$out/new.log" 2>&1; echo "exit $?"
grep -E "CHECK|refused|parity:" "$out/new.log" | head -30
for t in test_cuda_batch test_cuda_parity test_cuda_generate test_cuda_kernels; do
  build-dev/tests/cuda/$t > "$out/$t.log" 2>&1; echo "$t exit $?"; tail -1 "$out/$t.log"
done
build-dev/tests/models/test_wide_parity > "$out/cpu.log" 2>&1; echo "cpu wide exit $?"
grep -E "CHECK" "$out/cpu.log" | head -20; tail -1 "$out/cpu.log"
build-dev/tests/engine/test_batch > "$out/cpu_batch.log" 2>&1; echo "cpu batch exit $?"
tail -1 "$out/cpu_batch.log"
