#!/usr/bin/env bash
# CPU prefill/decode speed of this build against a baseline build, on the
# same synthetic checkpoint, runs alternating so both see the same machine
# state; prints each run and the ratios of the medians.
#   bench/cpu_decode.sh BASELINE_BUILD_DIR [BUILD_DIR=build] [ROUNDS=3]
set -euo pipefail
base=${1:?usage: cpu_decode.sh BASELINE_BUILD_DIR [BUILD_DIR] [ROUNDS]}
new=${2:-build}
rounds=${3:-3}
dir=${LMC_BENCH_DIR:-/tmp/lmc_cpu_decode_ckpt}
for b in "$base" "$new"; do
  [ -x "$b/bench/cpu_decode" ] || { echo "no $b/bench/cpu_decode (build target cpu_decode)"; exit 1; }
done
"$new/bench/cpu_decode" "$dir" 8 2 1 >/dev/null # writes the checkpoint once
declare -a bp bd np nd
for r in $(seq "$rounds"); do
  read -r _ p _ d < <("$base/bench/cpu_decode" "$dir")
  bp+=("$p"); bd+=("$d"); echo "baseline  prefill $p tok/s  decode $d tok/s"
  read -r _ p _ d < <("$new/bench/cpu_decode" "$dir")
  np+=("$p"); nd+=("$d"); echo "this      prefill $p tok/s  decode $d tok/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
awk -v bp="$(median "${bp[@]}")" -v np="$(median "${np[@]}")" \
    -v bd="$(median "${bd[@]}")" -v nd="$(median "${nd[@]}")" \
    'BEGIN { printf "median prefill: baseline %.2f, this %.2f tok/s, ratio %.3f\n", bp, np, np / bp;
             printf "median decode:  baseline %.3f, this %.3f tok/s, ratio %.3f\n", bd, nd, nd / bd }'
