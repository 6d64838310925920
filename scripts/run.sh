#!/usr/bin/env bash
# Set up, build, and run lmc's main job: greedy generation on the demo model.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
./build/tools/lmc --help
