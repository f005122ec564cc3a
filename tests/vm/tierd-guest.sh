#!/bin/bash
# tierd-guest.sh — runs inside the `tiering` VM (node 0: 1 GiB DDR with the CPUs, the fast
# tier; node 1: 3 GiB CPU-less CXL-like memory): `hetmem tierd --cgroup` from outside.
# 1. A cgroup with two GUPS processes in it (tables on node 1, hot sets moved half-way): tierd
#    finds both in cgroup.procs, and both hot sets reach 90% in the fast tier by the kernel's
#    count (move_pages), data intact; tierd stops by itself once the cgroup is empty.
#    Then two processes named with --pid twice: both managed, both promoted, tierd stops when
#    both are gone.
# 2. Real memory pressure beside the kernel's own tiering: a process in a second cgroup kept
#    above its memory.high (no swap: the kernel throttles it, and counts that as a memory
#    stall) while NUMA balancing runs in tiering mode. tierd reads the cgroup's memory.pressure
#    (PSI "some" avg10 past 10%), doubles the free reserve it keeps on the fast tier, says it
#    found the kernel's tiering, and only demotes.
# Usage: tierd-guest.sh BUILD_DIR   (cwd = the work dir)
build=$1
hetmem="$build/src/cli/hetmem"
gups="$build/bench/hetmem_gups"
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"
cg=/sys/fs/cgroup
# await_tierd PID WHEN: tierd must stop by itself within 10 s (else a failure, and it is killed);
# its exit status goes to $trc.
await_tierd() {
  for _ in $(seq 100); do kill -0 "$1" 2> /dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2> /dev/null; then
    fail "tierd did not stop $2"; kill "$1"
  fi
  wait "$1"; trc=$?
}
grep -q memory "$cg/cgroup.controllers" 2> /dev/null && echo +memory > "$cg/cgroup.subtree_control" ||
  { fail "no cgroup v2 memory controller in the guest"; echo "tierd: $fails failure(s)"; exit 1; }
balancing_off
total0=$(sed -n 's/.*MemTotal: *\([0-9]*\).*/\1/p' /sys/devices/system/node/node0/meminfo)

echo "== hetmem tierd --cgroup: two GUPS processes in one cgroup (256 MiB tables on node 1, 32 MiB hot sets)"
mkdir -p "$cg/hetmem-tierd"
# Soft-dirty bits come from write faults after clear_refs (which flushes the TLB itself): no
# --tlb-flush-ms needed, unlike the accessed-bit samplers of vm.tiering.
args=(--size 256M --hot 32M --hot-share 0.9 --seconds 30 --move-at 15 --fast-nodes 0 --start-node 1)
for i in 1 2; do
  sh -c 'echo $$ > /sys/fs/cgroup/hetmem-tierd/cgroup.procs && exec "$@"' sh "$gups" "${args[@]}" --label "g$i" > "g$i.txt" 2>&1 &
  eval "g${i}pid=$!"
done
for _ in $(seq 600); do  # both tables filled and placed on node 1
  grep -q ready g1.txt && grep -q ready g2.txt && break
  sleep 0.1
done
echo "     cgroup.procs: $(tr '\n' ' ' < "$cg/hetmem-tierd/cgroup.procs")"
"$hetmem" tierd --cgroup "$cg/hetmem-tierd" --fast-limit 192M --rate 512M --source soft-dirty --threshold 0.3 --json \
  > tierd.json 2> tierd.err &
tpid=$!
wait "$g1pid"; g1rc=$?
wait "$g2pid"; g2rc=$?
await_tierd "$tpid" "once the cgroup was empty"
for i in 1 2; do grep -a "summary:\|90% of hot set" "g$i.txt" | sed 's/^/     /'; done
[ $g1rc = 0 ] && [ $g2rc = 0 ] && grep -q "checksum ok" g1.txt && grep -q "checksum ok" g2.txt &&
  ok "both GUPS processes ran to the end, data intact (checksums)" || fail "GUPS under tierd --cgroup (exit $g1rc, $g2rc)"
[ $trc = 0 ] && [ ! -s tierd.err ] || { fail "hetmem tierd --cgroup (exit $trc)"; cat tierd.err; }
python3 - tierd.json << 'PY' > tierd.check
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ivs = [r for r in rows if "interval" in r]
print("intervals", len(ivs), "max_processes", max((r["processes"] for r in ivs), default=0),
      "promoted", max((r["pages_promoted"] for r in ivs), default=0),  # cumulative
      "reserve", ivs[-1]["fast_reserve_bytes"] if ivs else 0)
PY
read -r _ nint _ nproc _ promoted _ reserve < tierd.check
echo "     tierd: $nint intervals, up to $nproc processes, $promoted pages promoted, reserve $((reserve >> 20)) MiB"
[ "${nproc:-0}" = 2 ] && [ "${promoted:-0}" -gt 0 ] &&
  ok "tierd --cgroup managed both processes of the cgroup and promoted $promoted pages" ||
  fail "tierd --cgroup: $nproc processes, $promoted pages promoted"
for i in 1 2; do
  a=$(reached "g$i" 1) b=$(reached "g$i" 2)
  [ "$a" != never ] && [ "$b" != never ] && ok "process $i: both hot sets reached 90% in the fast tier ($a s, $b s)" ||
    { fail "process $i: a hot set never reached 90% in the fast tier ($a, $b)"; grep -a "t=" "g$i.txt" | cut -c1-160 | sed 's/^/     /'; }
done
# No pressure here: the reserve is 5% of node 0.
want=$((total0 * 1024 / 20))
python3 -c "import sys; sys.exit(0 if abs($reserve - $want) <= $want * 0.01 else 1)" &&
  ok "without memory pressure the reserve is 5% of node 0 ($((reserve >> 20)) MiB)" || fail "reserve $reserve, expected about $want"
rmdir "$cg/hetmem-tierd" 2> /dev/null

echo "== hetmem tierd --pid A --pid B: two processes named explicitly (128 MiB tables, 8 MiB hot sets)"
# Small tables take updates fast enough that, at 90%, their cold part is written all over in
# every window too (everything hot, nothing to choose): 99% of the updates go to the hot set.
args=(--size 128M --hot 8M --hot-share 0.99 --seconds 16 --move-at 8 --fast-nodes 0 --start-node 1)
for i in 3 4; do
  "$gups" "${args[@]}" --label "g$i" > "g$i.txt" 2>&1 &
  eval "g${i}pid=$!"
done
for _ in $(seq 600); do
  grep -q ready g3.txt && grep -q ready g4.txt && break
  sleep 0.1
done
# --max-overhead 0: the soft-dirty source clears every interval, whatever it costs, as before it
# held itself to a share. Here (TCG) a fault costs 3-20 us and GUPS writes every page of both
# tables each interval (11-40% of its time per clear by the source's estimate): held to 5% or
# 25% it clears every 2-4 s, and in 16 s a hot set's edge chunk stayed out (87.5%, two runs).
# This part checks --pid management; the share itself is checked by vm.unit and vm.tiering.
"$hetmem" tierd --pid "$g3pid" --pid "$g4pid" --rate 512M --source soft-dirty --threshold 0.3 --max-overhead 0 \
  --json > tierd-pids.json 2> tierd-pids.err &
tpid=$!
wait "$g3pid"; g3rc=$?
wait "$g4pid"; g4rc=$?
await_tierd "$tpid" "once both processes were gone"
for i in 3 4; do grep -a "summary:" "g$i.txt" | sed 's/^/     /'; done
python3 - tierd-pids.json << 'PY' > tierd-pids.check
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ivs = [r for r in rows if "interval" in r]
print(len(ivs), max((r["processes"] for r in ivs), default=0), max((r["pages_promoted"] for r in ivs), default=0))
PY
read -r nint nproc promoted < tierd-pids.check
echo "     tierd --pid x2: $nint intervals, up to $nproc processes, $promoted pages promoted"
[ $g3rc = 0 ] && [ $g4rc = 0 ] && grep -q "checksum ok" g3.txt && grep -q "checksum ok" g4.txt &&
  ok "both processes named with --pid ran to the end, data intact" || fail "GUPS under tierd --pid x2 (exit $g3rc, $g4rc)"
# tierd stops by itself, status 0, when every process it was given is gone.
[ $trc = 0 ] && [ ! -s tierd-pids.err ] || { fail "hetmem tierd --pid x2 (exit $trc)"; cat tierd-pids.err; }
[ "${nproc:-0}" = 2 ] && [ "${promoted:-0}" -gt 0 ] &&
  ok "tierd --pid A --pid B managed both and promoted $promoted pages" || fail "tierd --pid x2: $nproc processes, $promoted promoted"
for i in 3 4; do
  a=$(reached "g$i" 1)
  [ "$a" != never ] && ok "process $i (--pid): its first hot set reached 90% in the fast tier ($a s)" ||
    fail "process $i (--pid): the hot set never reached 90% in the fast tier"
done

echo "== memory pressure in a cgroup (memory.high below what it holds), with NUMA balancing in tiering mode"
mkdir -p "$cg/hetmem-pressure"
echo 96M > "$cg/hetmem-pressure/memory.high"
sh -c 'echo $$ > /sys/fs/cgroup/hetmem-pressure/cgroup.procs && exec python3 -c "
import time
keep = bytearray(128 << 20)             # above memory.high, and no swap to go to
end = time.time() + 40
while time.time() < end:
    x = bytearray(8 << 20); del x     # every new page is charged over the limit: throttled
"' > hog.txt 2>&1 &
hog=$!
sleep 3
echo 2 > /proc/sys/kernel/numa_balancing
echo "     kernel.numa_balancing=$(cat /proc/sys/kernel/numa_balancing); $cg/hetmem-pressure/memory.pressure: $(head -1 "$cg/hetmem-pressure/memory.pressure")"
"$hetmem" tierd --cgroup "$cg/hetmem-pressure" --source soft-dirty --duration 12 --json > pressure.json 2> pressure.err
prc=$?
echo 0 > /proc/sys/kernel/numa_balancing
kill "$hog" 2> /dev/null; wait "$hog" 2> /dev/null
head -1 pressure.json | cut -c1-300 | sed 's/^/     /'
python3 - pressure.json << 'PY' > pressure.check
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
head = rows[0] if rows and "schema" in rows[0] else {}
ivs = [r for r in rows if "interval" in r]
psi = max((r["psi_some_avg10"] for r in ivs), default=0)
reserve = max((r["fast_reserve_bytes"] for r in ivs), default=0)
print(len(ivs), f"{psi:.1f}", reserve, max((r["pages_promoted"] for r in ivs), default=0),
      int(bool(head.get("promoting"))), int(any("demotes only" in n for n in head.get("kernel", []))))
PY
read -r nint psi reserve promoted promoting noted < pressure.check
echo "     tierd: $nint intervals, PSI some avg10 up to $psi%, reserve up to $((reserve >> 20)) MiB, $promoted pages promoted"
[ $prc = 0 ] && [ ! -s pressure.err ] || { fail "hetmem tierd on the pressured cgroup (exit $prc)"; cat pressure.err; }
python3 -c "import sys; sys.exit(0 if float('${psi:-0}') > 10 else 1)" &&
  ok "tierd read the cgroup's memory.pressure under real pressure (some avg10 $psi%)" || fail "PSI some avg10 only ${psi:-?}%"
want=$((total0 * 1024 / 10))
python3 -c "import sys; sys.exit(0 if abs(${reserve:-0} - $want) <= $want * 0.01 else 1)" &&
  ok "under that pressure the fast tier's reserve doubled to 10% of node 0 ($((reserve >> 20)) MiB)" ||
  fail "reserve under pressure ${reserve:-?}, expected about $want"
[ "$noted" = 1 ] && [ "$promoting" = 0 ] && [ "${promoted:-1}" = 0 ] &&
  ok "NUMA balancing's tiering mode detected live: tierd said so and only demoted (0 pages promoted)" ||
  fail "coexistence with numa_balancing=2: noted $noted, promoting $promoting, $promoted promoted"
rmdir "$cg/hetmem-pressure" 2> /dev/null

balancing_restore
echo "tierd: $fails failure(s)"
[ $fails = 0 ]
