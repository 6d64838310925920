#!/usr/bin/env bash
# Per-kernel GPU time of one 2,048-token prefill (Nsight Compute), summed by
# kernel name: bench/prefill_profile.sh BUILD_DIR MODEL_DIR OUT_CSV
ncu --clock-control none --metrics gpu__time_duration.sum --csv --launch-count 400 \
  "$1/bench/prefill" "$2" 2048 1 > "$3" 2>&1
python3 "$(dirname "$0")/ncu_summary.py" "$3"
