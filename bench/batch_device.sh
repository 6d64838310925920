#!/usr/bin/env bash
# One GPU-machine pass for batched execution: build, the CUDA batch and
# realistic-width parity tests, single-sequence decode/prefill of this tree
# against an earlier one (OLD_SRC: a .tgz of src include CMakeLists.txt
# bench tools) on the same checkpoints, then bench/batch_vs_hf.py.
#   bench/batch_device.sh OUT_DIR [WORK_DIR]
set -u
out=$1 work=${2:-/tmp/lmcbench}
mkdir -p "$out" "$work"
source scripts/device_env.sh
targets="test_cuda_batch test_cuda_wide_parity batch_decode decode prefill"
cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target $targets >> "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 1; }
if [ -n "${OLD_SRC:-}" ]; then
  rm -rf /tmp/lmc-old && mkdir -p /tmp/lmc-old && tar xzf "$OLD_SRC" -C /tmp/lmc-old
  (cmake -S /tmp/lmc-old -B /tmp/lmc-old/build $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON &&
    cmake --build /tmp/lmc-old/build -j16 --target decode prefill) > "$out/build-old.log" 2>&1 &
fi
export LMC_SOURCE_DIR=$PWD
build-dev/tests/cuda/test_cuda_batch > "$out/batch.log" 2>&1; echo "test_cuda_batch exit $?"
grep -E "CHECK|sequences" "$out/batch.log" | head -20
build-dev/tests/cuda/test_cuda_wide_parity > "$out/wide.log" 2>&1; echo "wide exit $?"
grep -E "CHECK" "$out/wide.log" | head; tail -1 "$out/wide.log"
wait
python3 - "$work" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dp", "bench/decode_prefill_vs_hf.py")
dp = importlib.util.module_from_spec(spec); spec.loader.exec_module(dp)
for n in ("llama-3.2-1b", "llama-3.1-8b"): dp.write_checkpoint(n, sys.argv[1])
PY
if [ -n "${OLD_SRC:-}" ]; then
  for m in llama-3.2-1b llama-3.1-8b; do
    for b in /tmp/lmc-old/build build-dev /tmp/lmc-old/build build-dev; do
      d=$(${b}/bench/decode "$work/$m" 128 256 3 | python3 -c "import json,sys; print('%.1f tok/s' % json.load(sys.stdin)['tokens_per_s'])")
      p=$(${b}/bench/prefill "$work/$m" 2048 5 | python3 -c "import json,sys; print('%.2f ms' % (1e3*json.load(sys.stdin)['seconds']))")
      echo "$m $b decode $d prefill $p" | tee -a "$out/single.log"
    done
  done
fi
python3 bench/batch_vs_hf.py build-dev "$work" 512 "${BATCHES:-1,8,32,64,128}" 2>&1 | tee "$out/batch_bench.log" | grep -v "^  \$" | tail -12
