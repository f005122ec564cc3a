#!/usr/bin/env bash
# The CLI's contract: exit codes (0 ok, 1 unreadable input, 2 usage, 3 --strict with
# diagnostics), messages that name the cause, valid JSON, and on a one-node machine the plain
# statement the README promises. Usage: test_cli.sh HETMEM FIXTURES_DIR [VM_TREES_DIR]
set -u
hetmem=$1 fixtures=$2 trees=${3:-}
fail=0 passed=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() {  # check NAME EXPECTED_RC PATTERN -- command...
  local name=$1 want=$2 pattern=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ]; then echo "FAIL $name: exit $rc, expected $want"; echo "$out" | head -20; fail=$((fail+1)); return; fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" <<<"$out"; then echo "FAIL $name: output lacks /$pattern/"; echo "$out" | head -20; fail=$((fail+1)); return; fi
  echo "ok   $name"; passed=$((passed+1))
}
check "help lists examples"          0 'Examples:'                       -- "$hetmem" topo --help
check "version"                      0 '^hetmem [0-9]+\.[0-9]+'          -- "$hetmem" --version
check "no subcommand is usage"       2 'subcommand'                      -- "$hetmem"
check "unknown option is usage"      2 '--bogus'                         -- "$hetmem" topo --bogus
check "missing root names the path"  1 "cannot open sysfs root '/nonexistent/x'" -- "$hetmem" topo --root /nonexistent/x
check "bad --kind names the token"   1 "'warp'"                          -- "$hetmem" topo --kind 0=warp
check "bad env names the variable"   1 'HETMEM_NODE_KINDS'               -- env HETMEM_NODE_KINDS=0 "$hetmem" topo
check "--cpu without such CPU"       2 'no node lists CPU 99999'         -- "$hetmem" topo --cpu 99999 --no-hwloc
check "live topo"                    0 'Tier order per initiator'        -- "$hetmem" topo
check "live json is valid"           0 '"schema": "hetmem.topo/1"'       -- sh -c "'$hetmem' topo --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d, indent=1))'"
check "HETMEM_SYSFS_ROOT is honoured" 1 "cannot open sysfs root '/nonexistent/y'" -- env HETMEM_SYSFS_ROOT=/nonexistent/y "$hetmem" topo

# This machine: one node, DDR, no HMAT reported: said plainly.
if [ "$(cat /sys/devices/system/node/online 2>/dev/null)" = 0 ] && ! ls /sys/devices/system/node/node0/access* >/dev/null 2>&1; then
  check "one-node machine: DDR"      0 '^0 +DDR '                        -- "$hetmem" topo --no-hwloc
  check "one-node machine: one node" 0 'one memory node'                 -- "$hetmem" topo --no-hwloc
  check "one-node machine: no HMAT"  0 'no HMAT reported'                -- "$hetmem" topo --no-hwloc
fi

# A tree with a malformed file: reported, named, and fatal only under --strict.
mkdir -p "$tmp/t/sys/devices/system/node/node0"
printf '0\n' > "$tmp/t/sys/devices/system/node/online"
printf '0-x\n' > "$tmp/t/sys/devices/system/node/node0/cpulist"
printf 'Node 0 MemTotal: 1024 kB\n' > "$tmp/t/sys/devices/system/node/node0/meminfo"
check "malformed file is named"      0 'node0/cpulist: expected an id'   -- "$hetmem" topo --root "$tmp/t" --no-hwloc
check "--strict fails on it"         3 'strict: 1 file'                  -- "$hetmem" topo --root "$tmp/t" --no-hwloc --strict
# A FIFO where a file should be: hetmem's reader skips it, and the hwloc cross-check must not
# hang on it (hwloc opens files with a blocking open()): the message names the FIFO. Bounded by
# timeout(1), so a hang fails the check (status 124) instead of stalling the suite.
mkdir -p "$tmp/f/sys/devices/system/node/node0" "$tmp/f/sys/devices/system/cpu"
printf '0\n' > "$tmp/f/sys/devices/system/node/online"
printf '0\n' > "$tmp/f/sys/devices/system/node/has_memory"
printf '0\n' > "$tmp/f/sys/devices/system/node/node0/cpulist"
printf 'Node 0 MemTotal: 1048576 kB\n' > "$tmp/f/sys/devices/system/node/node0/meminfo"
mkfifo "$tmp/f/sys/devices/system/cpu/online"
check "a FIFO in the tree: no hang, named" 0 "cross-check unavailable: '.*/sys/devices/system/cpu/online' is a FIFO" -- timeout 60 "$hetmem" topo --root "$tmp/f"
# hetmem gather: names are one plain file name; the tarball is complete or absent.
check "gather: a name with a path is usage" 2 "NAME '../../x': expected one file name" -- "$hetmem" gather ../../x --out "$tmp"
check "gather: a name like an option is usage" 2 '' -- "$hetmem" gather -n --out "$tmp"
mkdir -p "$tmp/g" "$tmp/g2" "$tmp/faketar"
check "gather a tree with a FIFO (skipped)" 0 "gathered snap into $tmp/g/snap.tar.gz" -- timeout 60 "$hetmem" gather snap --root "$tmp/f" --out "$tmp/g"
check "the tarball replays with topo"  0 'one memory node|Tier order' -- sh -c "cd '$tmp/g' && tar -xzf snap.tar.gz && '$hetmem' topo --root snap --no-hwloc"
check "gather leaves the tarball alone" 0 '^snap\.tar\.gz$' -- sh -c "ls -A '$tmp/g' | grep -vx snap"
printf '#!/bin/sh\nexit 3\n' > "$tmp/faketar/tar"; chmod +x "$tmp/faketar/tar"
check "gather, tar failing: named"     1 'tar failed with status 3; nothing was written' -- env PATH="$tmp/faketar:$PATH" "$hetmem" gather snap --root "$tmp/f" --out "$tmp/g2"
check "gather, tar failing: no file"   0 '^0$' -- sh -c "ls -A '$tmp/g2' | wc -l"

if [ -d "$fixtures/power9-v100-gpu-numa" ]; then
  check "--initiator picks ranks"    0 'Ranks as seen from node 8'       -- "$hetmem" topo --root "$fixtures/power9-v100-gpu-numa" --initiator 8 --no-hwloc
  check "--initiator must have CPUs" 2 'node 250 has no CPUs'            -- "$hetmem" topo --root "$fixtures/power9-v100-gpu-numa" --initiator 250
  check "--cpu picks its node"       0 'Ranks as seen from CPU 100'      -- "$hetmem" topo --root "$fixtures/power9-v100-gpu-numa" --cpu 100 --no-hwloc
fi
check "--format tree, ASCII"         0 '^(`|\|)-- rank 0 +node [0-9]+ '   -- env LC_ALL=C "$hetmem" topo --format tree
check "--format tree, UTF-8"         0 '^(└|├)── rank 0 +node [0-9]+ '     -- env LC_ALL=C.UTF-8 "$hetmem" topo --format tree
check "--ascii forces ASCII"         0 '^(`|\|)-- rank 0'                 -- env LC_ALL=C.UTF-8 "$hetmem" topo --format tree --ascii
check "--format unknown is usage"    2 'bogus'                             -- "$hetmem" topo --format bogus
check "--json contradicts tree"      2 'contradict'                        -- "$hetmem" topo --json --format tree
check "--explain is for the table"   2 'not --format svg'                  -- "$hetmem" topo --explain --format svg
check "live svg is XML"              0 'svg ok'                            -- sh -c "'$hetmem' topo --format svg | python3 -c 'import sys,xml.dom.minidom; xml.dom.minidom.parse(sys.stdin); print(\"svg ok\")'"
check "stat of this shell"           0 'By tier: rank 0 '                 -- "$hetmem" stat $$
check "stat json"                    0 '"schema": "hetmem.stat/1"'        -- sh -c "'$hetmem' stat $$ --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"total_bytes\"] > 0; print(json.dumps(d))'"
check "stat watch: JSON lines"       0 '^2$'                              -- sh -c "'$hetmem' stat $$ --watch 0.1 --count 2 --json | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)[\"sample\"] >= 0))'"
check "stat needs a target"          2 'one of the two'                   -- "$hetmem" stat
check "stat: pid or cgroup, not both" 2 'one of the two'                  -- "$hetmem" stat $$ --cgroup /sys/fs/cgroup
check "stat --count needs --watch"   2 'goes with --watch'                -- "$hetmem" stat $$ --count 2
check "stat of no process"           1 'no process 999999999'             -- "$hetmem" stat 999999999
check "stat of no cgroup"            1 'no such cgroup directory'         -- "$hetmem" stat --cgroup /nonexistent/cg
if [ -n "$trees" ] && [ -d "$trees/vm-two-socket-hbm" ]; then
  # A captured machine with a process whose pages sit on HBM (node 2) and DDR (node 0, node 1).
  cp -r "$trees/vm-two-socket-hbm" "$tmp/m"
  mkdir -p "$tmp/m/proc/4242"
  printf 'app\n' > "$tmp/m/proc/4242/comm"
  printf '4242 (a) b) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 2 0 0\n' > "$tmp/m/proc/4242/stat"
  printf '%s\n' '55d1e0a4c000 default file=/usr/bin/app mapped=256 N0=256 kernelpagesize_kB=4' \
    '7f1c2e600000 bind:2 anon=65536 dirty=65536 N2=65536 kernelpagesize_kB=4' \
    '7f1c40000000 interleave:0-1 anon=512 dirty=512 N0=256 N1=256 kernelpagesize_kB=4' > "$tmp/m/proc/4242/numa_maps"
  check "stat on a tree: CPU 2 ranks"  0 'node 1 \(CPU 2, where it last ran\)' -- "$hetmem" stat 4242 --root "$tmp/m"
  check "stat on a tree: by tier"      0 'rank 2 DDR \(node 0\) 2\.0 MiB 0\.8%; rank 3 HBM \(node 2\) 256 MiB 98\.8%' -- "$hetmem" stat 4242 --root "$tmp/m"
  check "stat on a tree: policies"     0 'bind:2 256 MiB; interleave:0-1 2.0 MiB' -- "$hetmem" stat 4242 --root "$tmp/m"
  check "stat on a tree: node 2 anon"  0 '^2 +HBM +3 +256 MiB +0 B +256 MiB +98\.8%' -- "$hetmem" stat 4242 --root "$tmp/m"
  # The kernel's own moves, per node from nodeN/vmstat (whole machine): promoted to node 2,
  # demoted from node 2 by kswapd and directly; node 1 has no counters (an old kernel's file).
  printf 'nr_free_pages 1\npgpromote_success 0\npgpromote_candidate 0\npgdemote_kswapd 0\npgdemote_direct 0\n' \
    > "$tmp/m/sys/devices/system/node/node0/vmstat"
  printf 'nr_free_pages 1\n' > "$tmp/m/sys/devices/system/node/node1/vmstat"
  printf 'pgpromote_success 1500\npgpromote_candidate 4000\npgdemote_kswapd 700\npgdemote_direct 20\npgdemote_khugepaged 3\npgdemote_proactive 2\n' \
    > "$tmp/m/sys/devices/system/node/node2/vmstat"
  check "stat on a tree: the kernel's moves" 0 '^2 +1500 +4000 +725 +700 +20 +5$' -- "$hetmem" stat 4242 --root "$tmp/m"
  check "stat on a tree: a node without the counters is left out" 1 '' -- sh -c "'$hetmem' stat 4242 --root '$tmp/m' | sed -n '/whole machine/,\$p' | grep -E '^1 +[0-9]'"
  cat > "$tmp/moves.py" << 'PY'
import json, sys
for m in json.load(sys.stdin)["kernel_moves"]:
    print(m["node"], m["pgpromote_success"], m["pgdemote_kswapd"] + m["pgdemote_direct"] + m["pgdemote_other"])
PY
  check "stat json: the kernel's moves" 0 '^2 1500 725$' -- sh -c "'$hetmem' stat 4242 --root '$tmp/m' --json | python3 '$tmp/moves.py'"
  check "stat --watch: each count's change"   0 '^2 +1500 \(\+0\) +4000 \(\+0\) +725 \(\+0\)' -- "$hetmem" stat 4242 --root "$tmp/m" --watch 0.1 --count 2
  rm "$tmp/m/sys/devices/system/node/node1/vmstat"; mkdir "$tmp/m/sys/devices/system/node/node1/vmstat"
  check "stat: an unreadable vmstat is named"  0 'Not counted: node1/vmstat: ' -- "$hetmem" stat 4242 --root "$tmp/m"
  printf 'pgpromote_success x\n' > "$tmp/m/sys/devices/system/node/node2/vmstat"
  check "stat: a malformed vmstat is named"   0 'Not counted: node2/vmstat: line 1: ' -- "$hetmem" stat 4242 --root "$tmp/m"
  check "stat: ... and the rest is shown"     0 'By tier: '                           -- "$hetmem" stat 4242 --root "$tmp/m"
  # Weighted interleave beside HMAT's bandwidths (nodes 2 and 3 are HBM, 4x DDR here; the
  # tree's demotion warning makes the status 4).
  wi="$tmp/m/sys/kernel/mm/mempolicy/weighted_interleave"
  printf '3\n' > "$wi/node0"; printf '1\n' | tee "$wi/node1" "$wi/node2" "$wi/node3" > /dev/null
  check "doctor: weights against HMAT, apart"  4 '^note +weighted_interleave .*shares of the pages 50%/17%/17%/17%, of HMAT.s bandwidth 10%/10%/40%/40%: they differ' -- "$hetmem" doctor --root "$tmp/m"
  printf '4\n' | tee "$wi/node2" "$wi/node3" > /dev/null; printf '1\n' > "$wi/node0"
  check "doctor: weights against HMAT, agreeing" 4 '^ok +weighted_interleave .*: they agree' -- "$hetmem" doctor --root "$tmp/m"
  printf 'oops\n' >> "$tmp/m/proc/4242/numa_maps"
  check "stat: malformed numa_maps"    1 'numa_maps: line 4: expected a hex address' -- "$hetmem" stat 4242 --root "$tmp/m"
fi
check "doctor help lists checks"    0 'Checks:'                          -- "$hetmem" doctor --help
check "doctor runs (0 or 4)"         0 '(warning|note)s?\.$'             -- sh -c "'$hetmem' doctor; r=\$?; [ \$r = 0 ] || [ \$r = 4 ]"
check "doctor json"                  0 '"schema": "hetmem.doctor/1"'      -- sh -c "'$hetmem' doctor --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert all(f[\"status\"] in (\"ok\",\"note\",\"warn\") for f in d[\"findings\"]); print(json.dumps(d, indent=1))'"
[ -n "$trees" ] && check "doctor: warnings exit 4" 4 'warn +demotion'  -- "$hetmem" doctor --root "$trees/vm-pmem-kmem"
check "doctor: bad root"             1 "cannot open sysfs root '/nonexistent/z'" -- "$hetmem" doctor --root /nonexistent/z
check "tierd help lists examples"   0 'Examples:'                       -- "$hetmem" tierd --help
check "tierd needs processes"        2 'name the processes'              -- "$hetmem" tierd
check "tierd bad rate names it"      2 'rate=fast'                       -- "$hetmem" tierd --pid 1 --rate fast
check "migrate --rate 0 is refused"   2 '--rate 0: expected MiB/s, above 0'  -- "$hetmem" migrate --pid $$ --to local --rate 0
check "migrate --rate 1e400 refused"  2 '--rate inf: expected MiB/s'       -- "$hetmem" migrate --pid $$ --to local --rate 1e400
check "migrate --rate -5 refused"     2 '--rate -5: expected MiB/s'        -- "$hetmem" migrate --pid $$ --to local --rate -5
check "tierd bad source names it"    2 'auto, damon, soft-dirty, write-protect or perf' -- "$hetmem" tierd --pid 1 --source pebs
check "tierd: write-protect is in-process" 2 'only the process that runs the engine' -- "$hetmem" tierd --pid 1 --source write-protect
if [ "$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)" = 1 ]; then
  check "tierd on one tier says so"  1 'one memory tier'                 -- "$hetmem" tierd --pid $$ --duration 1
fi
# probe: measures this machine (small and short here); what it saves, topo takes as evidence.
check "probe help explains"          0 'pointer chain'                    -- "$hetmem" probe --help
check "probe json"                   0 'probe ok'                         -- sh -c "'$hetmem' probe --size 8M --time 0.01 --json --save '$tmp/probe' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"schema\"] == \"hetmem.probe/1\"; n=d[\"nodes\"]; assert n and all(x[\"placed_fraction\"] >= 0.99 and x[\"latency_ns\"] > 0 and x[\"read_mbps\"] > 0 for x in n), n; assert d[\"saved\"]; print(\"probe ok\")'"
check "probe saved a report"         0 '^hetmem-probe 1$'                 -- cat "$tmp/probe"
check "topo takes the probe"         0 '\[probe\] measured from node'     -- "$hetmem" topo --probe "$tmp/probe" --explain --no-hwloc
check "topo json shows it"           0 '"origin": '                       -- "$hetmem" topo --probe "$tmp/probe" --json --no-hwloc
check "probe table"                  0 'NODE +KIND +LATENCY'             -- "$hetmem" probe --size 4M --time 0.01 --latency-only
check "probe --progress draws a bar" 0 '\] 100% node [0-9]+: done'        -- "$hetmem" probe --size 4M --time 0.01 --latency-only --progress
check "probe: missing probe file"    1 'cannot read the probe file /nonexistent/p' -- "$hetmem" topo --probe /nonexistent/p
printf 'hetmem-probe 1\ninitiator zero\n' > "$tmp/badprobe"
check "probe: bad file names line"   1 'line 2: initiator .zero.'         -- "$hetmem" topo --probe "$tmp/badprobe"
check "probe: HETMEM_PROBE bad: note" 0 'HETMEM_PROBE: probe file'        -- env HETMEM_PROBE="$tmp/badprobe" "$hetmem" topo --no-hwloc
check "probe: --size too small"      2 "--size '1K': give 2M to 256G"     -- "$hetmem" probe --size 1K
check "probe: bad --nodes"           2 "--nodes 'x'"                      -- "$hetmem" probe --nodes x
check "probe: not a memory node"     2 'node 4000 is not a memory node'   -- "$hetmem" probe --nodes 4000
check "probe: no such initiator"     2 'node 4000 is not an initiator'    -- "$hetmem" probe --initiator 4000
check "probe: both only-flags"       2 'exclude each other'               -- "$hetmem" probe --latency-only --bandwidth-only
check "probe: --save fails plainly"  1 'cannot write /nonexistent/d/p'    -- "$hetmem" probe --size 4M --time 0.01 --save /nonexistent/d/p
echo "cli: $passed passed, $fail failed"
[ "$fail" = 0 ]
