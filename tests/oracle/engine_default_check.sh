#!/usr/bin/env bash
# What decides the CUDA defaults left open (CU_ENGINE_CACHES_DEFAULT in
# src/backend/cuda/cuda_llama.c, PAGED_FA_MIN in cuda_batch.c), in one GPU
# machine call of about eight minutes, most needed first (logs land in
# OUT_DIR as they are made):
#   1. test_cuda_paged_attn (the flash kernel over a block table against
#      float64);
#   2. single-sequence Llama-3.1-8B decode and prefill: BASE_SRC (another
#      source tree, e.g. `git archive 19d836b | tar -x -C DIR`, carried),
#      this tree's own caches and its engine caches with flash prompt
#      chunks (bench/single_seq_vs_base.sh);
#   3. test_cuda_parity (both caches), test_cuda_batch, test_cuda_wide_parity
#      and test_cuda_generate;
#   4. batched decode at batch 1/8/32/64/128 (bench/batch_decode).
#   tests/oracle/engine_default_check.sh BASE_SRC OUT_DIR [RUNS=2]
set -u
base=$1 out=$2 runs=${3:-2} w=/tmp/lmcbench
m=$w/llama-3.1-8b
mkdir -p "$out" "$w"
source scripts/device_env.sh
export LMC_SOURCE_DIR=$PWD
python3 - "$w" > "$out/ckpt.log" 2>&1 <<'PY' &
import importlib.util, sys
spec = importlib.util.spec_from_file_location("dp", "bench/decode_prefill_vs_hf.py")
dp = importlib.util.module_from_spec(spec); spec.loader.exec_module(dp)
dp.write_checkpoint("llama-3.1-8b", sys.argv[1])
PY
ck=$!
# every build first, so that nothing compiles while the benchmarks run
(cmake -S . -B build-dev $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target test_cuda_paged_attn test_cuda_batch test_cuda_wide_parity \
    test_cuda_parity test_cuda_generate decode prefill batch_decode >> "$out/build.log" 2>&1) &
b1=$!
(cmake -S "$base" -B build-dev-base $LMC_DEVICE_CMAKE_ARGS -DLMC_CUDA=ON > "$out/build-base.log" 2>&1 &&
  cmake --build build-dev-base -j16 --target decode prefill >> "$out/build-base.log" 2>&1) &
b2=$!
wait $b1 || { tail -20 "$out/build.log"; exit 1; }
wait $b2 || { tail -20 "$out/build-base.log"; exit 1; }
run() { # NAME SECONDS COMMAND...
  local n=$1 t=$2; shift 2
  timeout "$t" "$@" > "$out/$n.log" 2>&1; echo "$n exit $?"
  grep -E "FAIL|CHECK" "$out/$n.log" | head -6; tail -1 "$out/$n.log"
}
run test_cuda_paged_attn 60 build-dev/tests/cuda/test_cuda_paged_attn
wait $ck || { tail -20 "$out/ckpt.log"; exit 1; }
timeout 300 bash bench/single_seq_vs_base.sh "$base" "$m" "$runs" > "$out/single_seq.log" 2>&1
tail -6 "$out/single_seq.log"
for t in test_cuda_parity test_cuda_batch test_cuda_wide_parity test_cuda_generate; do
  run $t 120 build-dev/tests/cuda/$t
done
timeout 90 build-dev/bench/batch_decode "$m" 512 32 1,8,32,64,128 > "$out/batch_decode.json" 2> "$out/batch_decode.log"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(' '.join('%d:%.1f/%.1f%%' % (r['batch'], r['tokens_per_s'], 100*r['fraction']) for r in d['runs']))" "$out/batch_decode.json"
