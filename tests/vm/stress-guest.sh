#!/bin/bash
# stress-guest.sh — runs inside the ddr-cxl VM (node 0: DDR with the CPUs, node 1: CPU-less
# CXL-like memory): the checksummed stress program (4 threads, mixed sizes from 24 B to 4 MiB,
# realloc growth, blocks freed by other threads, every byte checked before it is freed) under
# the preload for a bounded time, while its pages move under it: the preload's own tiering
# engine (HETMEM_TIERING, a fast tier limited to 64 MiB, so it must demote) and
# `hetmem migrate` from outside moving all of its memory to the other node, again and again
# (each move of the whole heap takes seconds under TCG).
# Reports operations, bytes verified, corruptions (target: zero) and pages moved.
# Usage: stress-guest.sh BUILD_DIR   (cwd = the work dir)
build=$1
hetmem="$build/src/cli/hetmem"
preload="$build/src/preload/libhetmem-preload.so"
stress="$build/tests/hetmem_preload_stress"
seconds=${HETMEM_STRESS_SECONDS:-60}
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"
balancing_off

echo "== stress (4 threads) for $seconds s under the preload, with the tiering engine and hetmem migrate moving pages"
HETMEM_TIERING="fast-limit=64M,rate=128M,interval=0.5" HETMEM_EXPLAIN=1 LD_PRELOAD="$preload" \
  "$stress" "$seconds" 4 > stress.txt 2> stress.err &
spid=$!
sleep 1
moved=0 flips=0 partial=0
while kill -0 "$spid" 2> /dev/null; do
  if [ $((flips % 2)) = 0 ]; then to=cxl; else to=ddr; fi
  "$hetmem" migrate --pid "$spid" --to "$to" --json > migrate.json 2> migrate.err
  mrc=$?
  if [ $mrc = 0 ] || [ $mrc = 4 ]; then  # 4: some pages busy (being written or freed): expected here
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["moved"])' migrate.json 2> /dev/null || echo 0)
    moved=$((moved + n)); flips=$((flips + 1)); [ $mrc = 4 ] && partial=$((partial + 1))
  fi
  sleep 1
done
wait "$spid"
rc=$?
cat stress.txt
grep -a "^hetmem: automatic tiering\|^stress:" stress.err | sed 's/^/     /'
echo "     hetmem migrate: $flips moves, $moved pages moved ($partial with some pages busy)"
grep -q " 0 corruption(s), 0 failed allocation(s)" stress.txt && [ $rc = 0 ] &&
  ok "stress: no corruption and no failed allocation while pages moved" || fail "stress (exit $rc)"
[ "$flips" -ge 2 ] && [ "$moved" -gt 0 ] &&
  ok "hetmem migrate moved the live heap $flips times ($moved pages)" || fail "the migrations did not happen ($flips, $moved pages)"
grep -q "automatic tiering on" stress.err && ok "the preload's tiering engine ran beside it" ||
  fail "the tiering engine did not start"

balancing_restore
echo "stress-guest: $fails failure(s)"
[ $fails = 0 ]
