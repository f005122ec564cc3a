#!/bin/bash
# preload-order.sh [BUILD_DIR] — writes src/preload/preload.order, the layout of the preload's code.
#
# The list holds the functions of libhetmem-preload.so that programs run through, hottest first:
# start-up (topology, policy, jemalloc's arenas), malloc and free, threads starting and
# exiting, the C++ operators, fork and exec. The preload links them first and together
# (lld's --symbol-ordering-file, see src/preload/CMakeLists.txt), so that the pages a program
# touches are few and adjacent: the kernel maps a library's file pages 64 KiB, or a whole
# folio, at a time, and a touched page stays counted in the program's RSS.
#
# It runs each workload under valgrind's callgrind with the build's preload and sums the
# instructions per function. Run it after changes to start-up or to the malloc paths; a
# stale list is never wrong, only less tight (names no longer defined are skipped).
# Needs valgrind (scripts/setup.sh installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build/ci}
preload=$build/src/preload/libhetmem-preload.so
bench=$build/bench/hetmem_bench_preload
out=$here/src/preload/preload.order
for f in "$preload" "$bench"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "preload-order.sh: $f is missing: build first" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "preload-order.sh: valgrind is missing (scripts/setup.sh installs it)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # run NAME COMMAND...: one callgrind profile of COMMAND under the preload
  local name=$1
  shift
  # valgrind's own messages (e.g. that it does not know openat2, which the reader then does
  # without) go to a log, shown only when the run fails.
  if ! LD_PRELOAD=$preload valgrind -q --tool=callgrind --demangle=no --trace-children=no \
    --soname-synonyms=somalloc=nouserintercepts --log-file="$tmp/$name.log" \
    --callgrind-out-file="$tmp/$name.out" "$@" >/dev/null; then
    echo "preload-order.sh: $name failed under callgrind:" >&2
    cat "$tmp/$name.log" >&2
    exit 1
  fi
}
run true /bin/true
run shell /bin/sh -c 'echo x | cat >/dev/null'
for w in malloc-free-pairs larson-churn producer-consumer mixed-sizes realloc-growth small-objects; do
  run "$w" "$bench" --workload "$w" --quick
done

# callgrind_annotate: "IR (PCT)  FILE:FUNCTION [OBJECT]" per function; keep the preload's.
for f in "$tmp"/*.out; do
  callgrind_annotate --threshold=100 "$f" 2>/dev/null
done | awk -v so="$(basename "$preload")" '
  index($0, "[") && index($0, so "]") {
    ir = $1; gsub(",", "", ir)
    line = $0; sub(/ \[[^]]*\]$/, "", line)
    n = split(line, parts, ":"); fn = parts[n]   # mangled names hold no colon
    if (fn != "" && fn !~ /^0x/) total[fn] += ir
  }
  END { for (fn in total) printf "%d %s\n", total[fn], fn }' | sort -k1,1nr -k2,2 | cut -d' ' -f2 > "$tmp/order"

{
  echo "# The preload's code layout: its functions that programs run through, hottest first."
  echo "# Made by scripts/preload-order.sh (callgrind over start-up and the bench workloads); see there."
  cat "$tmp/order"
} > "$out"
echo "preload-order.sh: $(grep -vc '^#' "$out") functions written to $out"
