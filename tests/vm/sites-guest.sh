#!/bin/bash
# sites-guest.sh — runs inside the `tiering` VM (node 0: 1 GiB DDR with the CPUs, the fast
# tier; node 1: 3 GiB CPU-less CXL-like memory): the allocator's knowledge (HETMEM_TIERING's
# `sites`). hetmem_preload_sites allocates a 64 MiB block from each of two call sites every
# second: one site's blocks are written all the time, the other's only when filled (and grown
# with realloc from half their size, which must keep their site). With sites
# on, once the engine has seen the cold site's blocks long enough, that site's new blocks are
# placed on node 1 at allocation, while the hot site's stay on node 0; with sites off (the
# control) every new block lands on node 0 first, and the engine, held to a fast tier of 320 MiB,
# has to demote the cold ones. Where pages are is the kernel's word (move_pages, in the program).
# Usage: sites-guest.sh BUILD_DIR (cwd = the work dir)
build=$1
preload="$build/src/preload/libhetmem-preload.so"
prog="$build/tests/hetmem_preload_sites"
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"
balancing_off
args=(--rounds 14 --block 64M --keep 3 --cold-keep 6 --round-ms 1000 --fast-node 0)
# pct NAME WHICH: a percentage from NAME.txt's summary line ("cold-last", "hot-live").
pct() {
  python3 - "$1.txt" "$2" << 'PY'
import re, sys
t = open(sys.argv[1], errors="replace").read()
m = re.search(r"summary: new cold blocks on the fast node: rounds 1-4 (\S+)%, last 4 rounds (\S+)%; new hot blocks: "
              r"rounds 1-4 (\S+)%, last 4 rounds (\S+)%; live hot blocks at the end of the last 4 rounds (\S+)%", t)
print(-1 if not m else {"cold-last": m.group(2), "hot-live": m.group(5)}[sys.argv[2]])
PY
}
run_one() {  # LABEL TIERING-SETTINGS
  HETMEM_TIERING="$2" HETMEM_EXPLAIN=1 HETMEM_REPORT=stderr LD_PRELOAD="$preload" "$prog" "${args[@]}" > "$1.txt" 2>&1
  rc=$?
  grep -a "^round\|summary:\|allocation sites\|automatic tiering\|hetmem report: .*tiering\|hetmem report: .*site" "$1.txt" |
    sed 's/^/     /'
}

echo "== sites off (the control)"
sync; echo 3 > /proc/sys/vm/drop_caches
# max-overhead=0: every chunk scanned each interval whatever a write fault costs under TCG (the
# source's cost limit has unit tests and hetmem_bench_tiering; here the decisions are tested).
run_one off "source=write-protect,max-overhead=0,fast-limit=320M,sites=off"
[ $rc = 0 ] && grep -q "data intact" off.txt && ok "sites off: the program ran, data intact" || fail "sites off (exit $rc)"

echo "== sites on (the default)"
sync; echo 3 > /proc/sys/vm/drop_caches
run_one on "source=write-protect,max-overhead=0,fast-limit=320M"
[ $rc = 0 ] && grep -q "data intact" on.txt && ok "sites on: the program ran, data intact" || fail "sites on (exit $rc)"
grep -q "allocation sites: blocks of 1.0 MiB and up are followed by call site" on.txt &&
  ok "sites on: the preload says blocks are followed by call site" || fail "sites on: no 'followed by call site' line"
cold_on=$(pct on cold-last) hot_on=$(pct on hot-live) cold_off=$(pct off cold-last) hot_off=$(pct off hot-live)
echo "     new cold blocks on node 0 in the last 4 rounds: sites on ${cold_on}%, off ${cold_off}%"
echo "     live hot blocks on node 0 at the end of the last 4 rounds: sites on ${hot_on}%, off ${hot_off}%"
python3 -c "import sys; sys.exit(0 if 0 <= float('$cold_on') <= 10 else 1)" &&
  ok "sites on: the cold site's new blocks are placed on node 1 at allocation (${cold_on}% on node 0)" ||
  fail "sites on: the cold site's new blocks are ${cold_on}% on node 0 (want at most 10%)"
python3 -c "import sys; sys.exit(0 if float('$hot_on') >= 90 else 1)" &&
  ok "sites on: the hot site's live blocks stay on node 0 (${hot_on}%)" ||
  fail "sites on: the hot site's live blocks are ${hot_on}% on node 0 (want at least 90%)"
demoted() { sed -n 's/.*hetmem report: .*tiering interval .*demoted \([0-9]*\) pages.*/\1/p' "$1.txt" | tail -1; }
d_on=$(demoted on) d_off=$(demoted off)
echo "     pages the engine demoted: sites on ${d_on:-?}, off ${d_off:-?}"
[ -n "$d_on" ] && [ -n "$d_off" ] && [ "$d_on" -lt "$d_off" ] &&
  ok "sites on: the engine demoted fewer pages (${d_on} against ${d_off})" ||
  fail "sites on: the engine demoted ${d_on:-?} pages, sites off ${d_off:-?}"
grep -aq "hetmem report: .*site allocate_cold.*: cold" on.txt && grep -aq "hetmem report: .*site allocate_hot.*: hot" on.txt &&
  ok "sites on: the report names the cold site and the hot site" || fail "sites on: the report does not name both sites"
balancing_restore
[ "$fails" = 0 ]
