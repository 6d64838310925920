#!/usr/bin/env bash
# Per-kernel GPU time of batched decode (Nsight Compute), summed by kernel
# name and grid (the decode steps' grids differ from the prefill's):
#   bench/batch_profile.sh BUILD_DIR MODEL_DIR BATCH OUT_CSV
# Graphs are off so that every kernel is seen; 4 decode steps are run.
LMC_CUDA_GRAPHS=0 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
  "$1/bench/batch_decode" "$2" 512 2 "$3" > "$4" 2>&1
python3 "$(dirname "$0")/ncu_summary.py" "$4"
