#!/usr/bin/env bash
# Installs lmc into a temporary prefix and checks what a user gets there:
#  - the shared library exports exactly the LMC_API functions of lmc.h
#    (nm -D), with SONAME liblmc.so.<major>;
#  - a C program built with `pkg-config --cflags --libs lmc` and another
#    built through find_package(lmc) both run and greedy-generate the
#    reference ids of models/stories260K;
#  - the installed CLI runs from the prefix.
# Usage: test_install.sh SOURCE_DIR BUILD_DIR C_COMPILER [SANITIZE_FLAGS]
set -euo pipefail
src=$1 build=$2 cc=$3 san=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
prefix=$tmp/prefix
so=$(ls "$prefix"/lib*/liblmc.so 2>/dev/null | head -1)
[ -n "$so" ] || fail "no liblmc.so under $prefix"
libdir=$(dirname "$so")
for f in "$prefix/include/lmc.h" "$libdir/liblmc.a" "$libdir/pkgconfig/lmc.pc" \
         "$libdir/cmake/lmc/lmcConfig.cmake" "$prefix/bin/lmc"; do
  [ -e "$f" ] || fail "$f was not installed"
done
readelf -d "$so" | grep -q 'SONAME.*\[liblmc\.so\.0\]' || fail "SONAME is not liblmc.so.0"

# Exports: exactly the functions lmc.h declares with LMC_API.
nm -D --defined-only "$so" | awk '$2 ~ /^[TWDBRV]$/ {print $3}' | sort -u >"$tmp/exported"
grep -o '^LMC_API [^(]*(' "$src/include/lmc.h" | sed -E 's/.*[ *](lmc_[a-z0-9_]+)\($/\1/' |
  sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || fail "no LMC_API declarations found in lmc.h"
if ! diff -u "$tmp/declared" "$tmp/exported" >"$tmp/diff"; then
  cat "$tmp/diff" >&2
  fail "exported symbols differ from lmc.h's LMC_API functions (- declared only, + exported only)"
fi
echo "exports: $(wc -l <"$tmp/exported") functions, all declared LMC_API in lmc.h"

want=$(tr -d ' \n' <"$src/models/stories260K/golden_greedy_from_bos.json" |
  sed -E 's/.*"greedy_ids":\[([0-9,]*)\].*/\1/' | cut -d, -f1-16)

# pkg-config consumer.
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046
"$cc" $san -o "$tmp/pc_consumer" "$src/tests/install/consumer.c" \
  $(pkg-config --cflags --libs lmc) -Wl,-rpath,"$libdir"
got=$("$tmp/pc_consumer" "$src/models/stories260K")
[ "$got" = "$want" ] || fail "pkg-config consumer generated $got, reference $want"
echo "pkg-config consumer: $got"

# find_package consumer.
mkdir "$tmp/cm"
cp "$src/tests/install/consumer.c" "$tmp/cm/"
cp "$src/tests/install/consumer_cmake.txt" "$tmp/cm/CMakeLists.txt"
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
got=$("$tmp/cm/build/consumer" "$src/models/stories260K")
[ "$got" = "$want" ] || fail "find_package consumer generated $got, reference $want"
echo "find_package consumer: $got"

# The installed CLI finds the installed library.
"$prefix/bin/lmc" --version | grep -q '^lmc 0\.' || fail "installed lmc --version"
used=$(ldd "$prefix/bin/lmc" | sed -n 's/.*liblmc\.so\.0 => \([^ ]*\) .*/\1/p')
[ -n "$used" ] && [ "$(readlink -f "$used")" = "$(readlink -f "$libdir/liblmc.so.0")" ] ||
  fail "installed lmc loads '${used}', not $libdir/liblmc.so.0"
echo "PASS"
