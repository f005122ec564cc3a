#!/bin/bash
# migrate-guest.sh — runs inside the ddr-cxl VM (node 0: DDR with the CPUs, node 1: a CPU-less
# CXL-like expander): hetmem's page migration, each result checked by the kernel.
# Usage: migrate-guest.sh BUILD_DIR   (cwd = the work dir)
build=$1
hetmem="$build/src/cli/hetmem"
check="$build/tests/hetmem_vm_migrate_check"
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"

balancing_off

echo "== API: 256 MiB to node 1 under two writers, and back"
"$check" move || fails=$((fails + 1))
echo "== API: transparent huge pages move whole"
cat /sys/kernel/mm/transparent_hugepage/enabled
"$check" thp || fails=$((fails + 1))

echo "== CLI: hetmem migrate --pid"
coproc HOLD { "$check" hold 128; }
read -r word pid <&"${HOLD[0]}"
if [ "$word" != ready ]; then
  fail "the holding process did not start"
else
  before0=$(node_kib "$pid" 0)
  "$hetmem" migrate --pid "$pid" --to cxl --json > migrate.json 2> migrate.err
  rc=$?
  after1=$(node_kib "$pid" 1)
  moved=$(python3 -c 'import json,sys; print(json.load(open("migrate.json"))["moved"])' 2>/dev/null || echo 0)
  echo "     rc $rc; moved $moved pages; node 1 now $after1 KiB (node 0 had $before0 KiB)"
  [ $rc = 0 ] && [ "$moved" -ge 32768 ] && [ "$after1" -ge 131072 ] &&
    ok "hetmem migrate --to cxl: the process's 128 MiB is on node 1 (numa_maps)" ||
    { fail "hetmem migrate --to cxl"; cat migrate.err; }
  "$hetmem" migrate --pid "$pid" --to ddr --from cxl > back.txt 2>&1
  rc=$?
  cat back.txt
  after0=$(node_kib "$pid" 0) left1=$(node_kib "$pid" 1)
  [ $rc = 0 ] && [ "$left1" -lt 1024 ] && ok "hetmem migrate --to ddr --from cxl: back on node 0 ($after0 KiB)" ||
    fail "hetmem migrate back (node 1 still has $left1 KiB)"
  "$hetmem" migrate --pid "$pid" --to hbm > nohbm.txt 2>&1
  rc=$?
  [ $rc = 2 ] && grep -q "no HBM" nohbm.txt && ok "a tier this machine lacks: exit 2, says so" ||
    { fail "--to hbm on a machine without HBM (rc $rc)"; cat nohbm.txt; }
  # Another user's process: refused plainly (setpriv drops to nobody).
  if command -v setpriv > /dev/null; then
    setpriv --reuid=65534 --regid=65534 --clear-groups "$hetmem" migrate --pid "$pid" --to cxl > denied.txt 2>&1
    rc=$?
    [ $rc = 1 ] && grep -qi "CAP_SYS_NICE\|not permitted" denied.txt && ok "an unprivileged user: exit 1, names the permission" ||
      { fail "unprivileged migrate (rc $rc)"; cat denied.txt; }
  fi
  exec {HOLD[1]}>&-
  wait "$pid" 2> /dev/null
fi
"$hetmem" migrate --pid 999999 --to cxl > nopid.txt 2>&1
[ $? = 1 ] && grep -q "no process 999999" nopid.txt && ok "no such process: exit 1, says so" || { fail "missing pid"; cat nopid.txt; }

echo "== migration throughput"
"$check" speed 1024 5 || fails=$((fails + 1))

balancing_restore
echo "migrate-guest: $fails failure(s)"
[ $fails = 0 ]
