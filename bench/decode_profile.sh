#!/usr/bin/env bash
# Per-kernel GPU time of decode steps (Nsight Compute), summed by kernel
# name: bench/decode_profile.sh BUILD_DIR MODEL_DIR SKIP COUNT OUT_CSV
ncu --clock-control none --metrics gpu__time_duration.sum --csv --launch-skip "$3" --launch-count "$4" \
  "$1/bench/decode" "$2" 16 8 1 > "$5" 2>&1
python3 "$(dirname "$0")/ncu_summary.py" "$5"
