#!/usr/bin/env bash
# ThreadSanitizer run of the server and generation tests (CI: .ci/run).
# Builds only what those tests need, CPU only, into $LMC_TSAN_BUILD_DIR
# (default build-tsan); any data race or lock-order report fails the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${LMC_TSAN_BUILD_DIR:-build-tsan}
tests=(test_server test_server_limits test_cli_serve test_openai_client test_generate
       test_session)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMC_TSAN=ON -DLMC_CUDA=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target lmc "${tests[@]}"
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
# one BLAS/OpenMP thread: their runtimes are not instrumented
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
  ctest --test-dir "$build" -R "$regex" --output-on-failure -j"$(nproc)"
