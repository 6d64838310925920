#!/usr/bin/env bash
# CPU prefill/decode speed of this build against a baseline build, on the
# same synthetic checkpoint, runs alternating so both see the same machine
# state; prints each run and the ratios of the medians (tokens per wall
# second and per CPU second). Extra arguments go to cpu_decode (PREFILL
# DECODE RUNS).
#   bench/cpu_decode.sh BASELINE_BUILD_DIR [BUILD_DIR=build] [ROUNDS=3] [PREFILL DECODE RUNS]
set -euo pipefail
base=${1:?usage: cpu_decode.sh BASELINE_BUILD_DIR [BUILD_DIR] [ROUNDS]}
new=${2:-build}
rounds=${3:-3}
shift $(($# < 3 ? $# : 3))
dir=${LMC_BENCH_DIR:-/tmp/lmc_cpu_decode_ckpt}
for b in "$base" "$new"; do
  [ -x "$b/bench/cpu_decode" ] || { echo "no $b/bench/cpu_decode (build target cpu_decode)"; exit 1; }
done
"$new/bench/cpu_decode" "$dir" 8 2 1 >/dev/null # writes the checkpoint once
declare -a bp bd bcp bcd np nd ncp ncd
for r in $(seq "$rounds"); do
  read -r _ p _ d _ cp _ cd < <("$base/bench/cpu_decode" "$dir" "$@")
  bp+=("$p"); bd+=("$d"); bcp+=("$cp"); bcd+=("$cd")
  echo "baseline  prefill $p tok/s ($cp per cpu s)  decode $d tok/s ($cd per cpu s)"
  read -r _ p _ d _ cp _ cd < <("$new/bench/cpu_decode" "$dir" "$@")
  np+=("$p"); nd+=("$d"); ncp+=("$cp"); ncd+=("$cd")
  echo "this      prefill $p tok/s ($cp per cpu s)  decode $d tok/s ($cd per cpu s)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v w="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%-24s baseline %9.3f  this %9.3f  ratio %.3f\n", w, b, n, n / b }'; }
ratio "prefill tok/s" "$(median "${bp[@]}")" "$(median "${np[@]}")"
ratio "decode tok/s" "$(median "${bd[@]}")" "$(median "${nd[@]}")"
ratio "prefill tok per cpu s" "$(median "${bcp[@]}")" "$(median "${ncp[@]}")"
ratio "decode tok per cpu s" "$(median "${bcd[@]}")" "$(median "${ncd[@]}")"
