#!/usr/bin/env bash
# Set up (if needed), build, and run the whole test suite with ctest.
# GPU tests skip on machines without a CUDA device.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
build=${LMC_BUILD_DIR:-build}
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
