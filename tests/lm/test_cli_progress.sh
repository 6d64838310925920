#!/usr/bin/env bash
# Progress bars: drawn on stderr when it is a terminal (run under script(1)
# for a pseudo-terminal), absent when stderr is a pipe or file; the CLI
# lists only commands it has.
# Usage: test_cli_progress.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
lmc=$build/tools/lmc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cmd="$lmc perplexity -m $src/models/stories260K -f $src/tests/golden/perplexity/tinystories_style.txt --context 64 --stride 32"

script -qec "$cmd" /dev/null >"$tmp/tty" </dev/null || fail "perplexity under a terminal failed"
grep -q 'load .*\[#\{30\}\] 100%' "$tmp/tty" || { cat "$tmp/tty"; fail "no finished load bar on a terminal"; }
grep -q 'perplexity .*\[#\{30\}\] 100%' "$tmp/tty" || fail "no finished perplexity bar on a terminal"
grep -q '^perplexity 3\.11' "$tmp/tty" || fail "no result line"

$cmd >"$tmp/out" 2>"$tmp/err" || fail "perplexity failed"
[ ! -s "$tmp/err" ] || { cat "$tmp/err"; fail "stderr not a terminal, yet something was drawn"; }
grep -q '^perplexity 3\.11' "$tmp/out" || fail "no result line"

# Only commands that exist are listed, and each listed one answers --help.
"$lmc" --help >"$tmp/help"
cmds=$(sed -n 's/^  \([a-z]*\) .*/\1/p' "$tmp/help")
[ -n "$cmds" ] || fail "no commands listed"
for c in $cmds; do
  "$lmc" "$c" --help >/dev/null 2>&1 || fail "listed command '$c' does not answer --help"
done
for gone in fuse bench; do
  if grep -q "^  $gone " "$tmp/help"; then fail "'$gone' is listed but does not exist"; fi
done
echo PASS
