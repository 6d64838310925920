#!/usr/bin/env bash
# The Python package as a user gets it: liblmc installed (cmake --install)
# into a fresh virtual environment of the system python3, the package
# installed there with `pip install ./python` (offline: --no-index), and
# test_lmc.py run from outside the checkout against the installed package.
# Usage: test_python.sh SOURCE_DIR BUILD_DIR [SANITIZE]
set -euo pipefail
src=$1 build=$2 san=${3:-}
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/venv"
cmake --install "$build" --prefix "$tmp/venv" >/dev/null
LMC_BUILD_DIR=/nonexistent "$tmp/venv/bin/python" -m pip install --no-index --quiet \
  --disable-pip-version-check "$src/python"
if [ -n "$san" ]; then
  # An instrumented liblmc needs the sanitizer runtime loaded first; the
  # interpreter's own allocations are not ours to leak-check.
  export LD_PRELOAD=$(cc -print-file-name=libasan.so)
  export ASAN_OPTIONS=detect_leaks=0
fi
cd "$tmp"
LMC_SOURCE_DIR=$src "$tmp/venv/bin/python" "$src/tests/python/test_lmc.py" 2>&1
