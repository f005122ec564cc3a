#!/bin/bash
# cli-guest.sh — runs inside the ddr-cxl VM (node 0: DDR with the CPUs, node 1: a CPU-less
# CXL-like expander): the operator's commands on a real kernel with two tiers — topo pictures,
# doctor, stat of a process and of a cgroup (each number checked against the kernel's own
# numa_maps / memory.numa_stat), and probe against the VM's HMAT.
# Usage: cli-guest.sh BUILD_DIR   (cwd = the work dir)
build=$1
hetmem="$build/src/cli/hetmem"
check="$build/tests/hetmem_vm_migrate_check"
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"
balancing_off  # nothing moves pages behind the test

echo "== hetmem topo --format tree|dot|svg"
LC_ALL=C.UTF-8 "$hetmem" topo --format tree > tree.txt 2>&1
cat tree.txt
grep -qE '^└── rank 1 +node 1 +CXL' tree.txt && ok "tree: node 0's second tier is the CXL node" || fail "tree"
"$hetmem" topo --format svg > topo.svg && python3 -c 'import sys,xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' topo.svg &&
  grep -q 'node 1 CXL' topo.svg && ok "svg: well-formed, shows node 1 CXL" || fail "svg"
"$hetmem" topo --format dot | grep -q 'cpu0 -> mem1 \[label="rank 1' && ok "dot: an edge from node 0's CPUs to node 1, rank 1" || fail "dot"

echo "== hetmem doctor"
"$hetmem" doctor > doctor.txt 2>&1
rc=$?
cat doctor.txt
{ [ $rc = 0 ] || [ $rc = 4 ]; } && grep -q '2 memory nodes: node 0 DDR' doctor.txt &&
  grep -q 'numa_balancing       kernel.numa_balancing = 0: nothing promotes' doctor.txt &&
  ok "doctor: two nodes, NUMA balancing off said with its fix (rc $rc)" || fail "doctor (rc $rc)"
"$hetmem" doctor --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
w = [f for f in d["findings"] if f["status"] == "warn"]
assert all(f["fix"] for f in w), "a warning without a fix"
print("doctor json:", len(d["findings"]), "findings,", len(w), "warnings, each with a fix")' && ok "doctor --json" || fail "doctor --json"

echo "== hetmem stat PID"
# stat_kib FILE NODE: the total hetmem stat --json reports for NODE, in KiB.
stat_kib() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(n["total_bytes"] for n in d["nodes"] if n["node"] == int(sys.argv[2])) // 1024)' "$1" "$2"
}
coproc HOLD { "$check" hold 128; }
read -r word pid <&"${HOLD[0]}"
if [ "$word" != ready ]; then
  fail "the holding process did not start"
else
  "$hetmem" stat "$pid" --json > stat0.json && k0=$(node_kib "$pid" 0) && s0=$(stat_kib stat0.json 0)
  echo "     node 0: numa_maps $k0 KiB, hetmem stat $s0 KiB"
  [ "$s0" -ge 131072 ] && [ "$s0" = "$k0" ] && ok "stat: the 128 MiB on node 0, as numa_maps counts it" || fail "stat on node 0"
  "$hetmem" migrate --pid "$pid" --to cxl --quiet
  "$hetmem" stat "$pid" > stat1.txt; cat stat1.txt
  "$hetmem" stat "$pid" --json > stat1.json && k1=$(node_kib "$pid" 1) && s1=$(stat_kib stat1.json 1)
  echo "     node 1: numa_maps $k1 KiB, hetmem stat $s1 KiB"
  [ "$s1" -ge 131072 ] && [ "$s1" = "$k1" ] && grep -qE '^1 +CXL +1 ' stat1.txt &&
    ok "stat after migrate --to cxl: the 128 MiB on node 1, rank 1 CXL" || fail "stat on node 1"
  "$hetmem" stat "$pid" --watch 0.3 --count 3 --json > watch.jsonl
  [ "$(wc -l < watch.jsonl)" = 3 ] && python3 -c '
import json, sys
rows = [json.loads(l) for l in open("watch.jsonl")]
assert [r["sample"] for r in rows] == [0, 1, 2]
assert rows[2]["elapsed_s"] >= 0.5' && ok "stat --watch 0.3 --count 3: three JSON lines, in time" || fail "stat --watch"

  echo "== hetmem stat --cgroup"
  # A second holder started inside a fresh cgroup, so its 64 MiB is charged there; then moved
  # to node 1 (a page's charge moves with it). The kernel's memory.numa_stat is the reference.
  cg=/sys/fs/cgroup
  if grep -q memory "$cg/cgroup.controllers" 2> /dev/null && echo +memory > "$cg/cgroup.subtree_control" 2> /dev/null &&
     mkdir -p "$cg/hetmem-stat"; then
    coproc CGHOLD { sh -c 'echo $$ > /sys/fs/cgroup/hetmem-stat/cgroup.procs && exec "$0" hold 64' "$check"; }
    read -r word2 pid2 <&"${CGHOLD[0]}"
    cg_anon_kib() {  # cg_anon_kib NODE: the cgroup's anon bytes on NODE per memory.numa_stat, in KiB
      awk -v n="N$1" '$1 == "anon" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == n) print int(kv[2] / 1024) } }' \
        "$cg/hetmem-stat/memory.numa_stat"
    }
    stat_cg_kib() {  # stat_cg_kib NODE: what hetmem stat --cgroup --json says, in KiB
      "$hetmem" stat --cgroup "$cg/hetmem-stat" --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(n["anon_bytes"] for n in d["nodes"] if n["node"] == int(sys.argv[1])) // 1024)' "$1"
    }
    if [ "$word2" = ready ]; then
      "$hetmem" stat --cgroup "$cg/hetmem-stat"
      a0=$(cg_anon_kib 0) s0=$(stat_cg_kib 0)
      echo "     cgroup anon on node 0: memory.numa_stat $a0 KiB, hetmem stat $s0 KiB"
      [ "${a0:-0}" -ge 65536 ] && [ "$s0" = "$a0" ] && ok "stat --cgroup: the 64 MiB charged on node 0, as memory.numa_stat says" ||
        fail "stat --cgroup on node 0"
      "$hetmem" migrate --pid "$pid2" --to cxl --quiet
      a1=$(cg_anon_kib 1) s1=$(stat_cg_kib 1)
      echo "     after migrate --to cxl: memory.numa_stat $a1 KiB on node 1, hetmem stat $s1 KiB"
      [ "${a1:-0}" -ge 65536 ] && [ "$s1" = "$a1" ] && ok "stat --cgroup after the move: on node 1, as memory.numa_stat says" ||
        fail "stat --cgroup on node 1"
      exec {CGHOLD[1]}>&-
      wait "$pid2" 2> /dev/null
    else
      fail "the holder in a cgroup did not start"
    fi
    rmdir "$cg/hetmem-stat" 2> /dev/null
  else
    echo "     (no cgroup v2 memory controller here: skipped)"
  fi
  exec {HOLD[1]}>&-
  wait "$pid" 2> /dev/null
  "$hetmem" stat "$pid" > gone.txt 2>&1
  [ $? = 1 ] && grep -q "no process $pid" gone.txt && ok "stat of an ended process: exit 1, says so" || fail "stat of an ended process"
fi
if command -v setpriv > /dev/null; then
  setpriv --reuid=65534 --regid=65534 --clear-groups "$hetmem" stat 1 > denied.txt 2>&1
  rc=$?
  [ $rc = 1 ] && grep -q "CAP_SYS_PTRACE" denied.txt && ok "an unprivileged user's stat of pid 1: exit 1, names the permission" ||
    { fail "unprivileged stat (rc $rc)"; cat denied.txt; }
fi

echo "== hetmem probe"
# An emulator runs every node at one speed, while this VM's HMAT claims node 1 has 2.5x the
# latency and 0.3x the bandwidth of node 0: the probe must measure both nodes (buffers placed
# as move_pages confirms) and flag node 1 (exit 4); the classifier then takes the saved report.
"$hetmem" probe --size 32M --time 0.1 --json --save probe.txt > probe.json 2> probe.err
rc=$?
cat probe.txt probe.err
python3 - << 'EOF' && [ $rc = 4 ] && ok "probe: both nodes measured where the kernel put them; node 1 disagrees with HMAT (exit $rc)" ||
import json
d = json.load(open("probe.json"))
nodes = {n["node"]: n for n in d["nodes"]}
assert set(nodes) == {0, 1}, nodes.keys()
for n in nodes.values():
    assert n["placed_fraction"] >= 0.99 and n["latency_ns"] > 0 and n["read_mbps"] > 0 and n["write_mbps"] > 0, n
assert d["reference"] == 0
one = nodes[1]
assert abs(one["hmat"]["latency_ratio"] - 2.5) < 0.01 and abs(one["hmat"]["read_ratio"] - 0.3) < 0.01, one["hmat"]
# Node 1's ratios are off HMAT's; node 0 (the reference) can only share an order flag, which
# emulator noise in the latencies (25% apart) can raise.
assert any("by HMAT" in f for f in one["flags"]), one["flags"]
assert all("order of nodes" in f for f in nodes[0]["flags"]), nodes[0]["flags"]
print("     node 1: latency %.2fx, read %.2fx as measured; flags: %s" % (one["latency_ratio"], one["read_ratio"], one["flags"]))
EOF
  fail "probe (rc $rc)"
"$hetmem" probe --size 32M --time 0.05 > probe-table.txt 2>&1
rc=$?
cat probe-table.txt
[ $rc = 4 ] && grep -qE '^1 +CXL .*DISAGREES$' probe-table.txt && grep -qE '^  node 1: (latency|read bandwidth) [0-9.]+x node 0.s as measured' probe-table.txt &&
  ok "probe's table: node 1 marked, the disagreement spelled out" || fail "probe's table (rc $rc)"
"$hetmem" topo --probe probe.txt --explain --no-hwloc > topo-probe.txt 2>&1
grep -A3 '^  node 1:' topo-probe.txt
grep -q '\[probe\] measured from node 0 (probe.txt): latency' topo-probe.txt &&
  grep -q 'Measured performance: probe.txt, from node 0' topo-probe.txt &&
  ok "topo --probe: the measurement is evidence for the nodes" || fail "topo --probe"
HETMEM_PROBE=probe.txt "$hetmem" topo --json --no-hwloc |
  python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["probe"]["origin"] == "HETMEM_PROBE=probe.txt"; assert all(n["measured"] for n in d["nodes"])' &&
  ok "HETMEM_PROBE: the same report, from the environment" || fail "HETMEM_PROBE"

balancing_restore
echo "cli-guest: $fails failure(s)"
[ $fails = 0 ]
