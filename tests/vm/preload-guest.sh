#!/bin/bash
# preload-guest.sh — runs inside the ddr-cxl VM (node 0: DDR with the CPUs, node 1: a CPU-less
# CXL-like expander): real programs under libhetmem-preload.so with policies, each checked by
# the kernel's page counts (HETMEM_REPORT: /proc/PID/numa_maps of hetmem's heap at exit).
# Usage: preload-guest.sh BUILD_DIR   (cwd = the work dir). The guest has no network: redis
# listens on a Unix socket in the guest's own /tmp.
build=$1
preload="$build/src/preload/libhetmem-preload.so"
hetmem="$build/src/cli/hetmem"
workload="$build/tests/hetmem_preload_workload"
lifecycle="$build/tests/hetmem_preload_lifecycle"
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"
# run POLICY CMD...: runs CMD under the preload with HETMEM_POLICY=POLICY; sets rc, out and
# n0/n1 (KiB of hetmem's heap on nodes 0 and 1, by numa_maps, summed over the processes).
run() {
  local policy=$1; shift
  rm -f report
  if [ -n "$policy" ]; then
    HETMEM_POLICY="$policy" HETMEM_REPORT="$PWD/report" LD_PRELOAD="$preload" "$@" > out.txt 2> err.txt
  else
    HETMEM_REPORT="$PWD/report" LD_PRELOAD="$preload" "$@" > out.txt 2> err.txt
  fi
  rc=$?
  out=$(cat out.txt)
  n0=$(heap_kib 0 report) n1=$(heap_kib 1 report)
}
# heap_kib NODE REPORT: KiB of hetmem's heap on NODE, summed over the report's processes.
heap_kib() {
  sed -n 's/.*hetmem heap KiB per node:\([^;]*\);.*/\1/p' "$2" 2>/dev/null |
    awk -v n="N$1" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == n) s += kv[2] } } END { print s + 0 }'
}
show() { echo "     heap: node 0 $n0 KiB, node 1 $n1 KiB"; [ -s err.txt ] && sed 's/^/     stderr: /' err.txt | head -5; }

"$hetmem" topo > topo.txt 2>&1
"$hetmem" run --explain -- /bin/true > explain-default.txt 2>&1
grep -q "local (DDR, nodes 0)" explain-default.txt && grep -q "nodes 1" explain-default.txt && grep -q "last resort" explain-default.txt &&
  ok "default policy: local DDR first, then node 1, then anywhere" || { fail "default policy"; cat explain-default.txt; }

cat > alloc.py <<'PY'
import json
objs = [{"k": i, "v": str(i) * 20} for i in range(300000)]
back = json.loads(json.dumps(objs))
assert back[-1]["v"] == "299999" * 20
blobs = [bytearray(4096) for _ in range(20000)]
print("python ok")
PY
run "bind node 1" /usr/bin/python3 alloc.py
[ $rc = 0 ] && [ "$out" = "python ok" ] && [ "$n1" -gt 20000 ] && [ "$n0" -lt $((n1 / 50)) ] &&
  ok "python3 under 'bind node 1': the kernel has its heap on node 1" || fail "python3 under 'bind node 1' (status $rc, output '$out')"
show

run "node 1" sqlite3 db.sqlite "create table t(a integer primary key, b text); with recursive c(x) as (select 1 union all select x+1 from c where x < 100000) insert into t select x, hex(randomblob(40)) from c; create index tb on t(b); select count(*) from t;"
[ $rc = 0 ] && [ "$out" = 100000 ] && [ "$n1" -gt "$n0" ] &&
  ok "sqlite3 under 'node 1' (a chain of one): its heap on node 1" || fail "sqlite3 under 'node 1'"
show

rm -rf repo && git init -q repo && for i in $(seq 1 100); do echo "line $i" > "repo/f$i.txt"; done
run "interleave node 0, node 1" sh -c 'cd repo && git add . && git -c user.name=t -c user.email=t@t commit -qm init && git gc -q && git log --oneline | wc -l'
[ $rc = 0 ] && [ "$out" = 1 ] && [ "$n0" -gt 0 ] && [ "$n1" -gt 0 ] &&
  ok "git under 'interleave node 0, node 1': pages on both nodes" || fail "git under interleave"
show

printf '#include <map>\n#include <string>\nint main(){std::map<int,std::string> m; for(int i=0;i<100;++i) m[i]="x"; return m.size()==100?0:1;}\n' > prog.cpp
run "size>=64K -> node 1; node 0" g++ -O2 prog.cpp -o prog
[ $rc = 0 ] && ./prog && [ "$n1" -gt 0 ] && [ "$n0" -gt 0 ] &&
  ok "g++ under 'size>=64K -> node 1; node 0': large blocks on node 1, the rest on node 0" || fail "g++ with a size rule"
show

if command -v redis-server > /dev/null; then
  HETMEM_POLICY="bind node 1" HETMEM_REPORT="$PWD/redis-report" LD_PRELOAD="$preload" \
    redis-server --port 0 --unixsocket /tmp/hetmem-redis.sock --save "" --appendonly no --dir "$PWD" > redis.log 2>&1 &
  rpid=$!
  up=0
  for _ in $(seq 1 150); do redis-cli -s /tmp/hetmem-redis.sock ping > /dev/null 2>&1 && { up=1; break; }; sleep 0.2; done
  brc=1
  if [ $up = 1 ]; then
    run "" timeout 120 redis-benchmark -s /tmp/hetmem-redis.sock -q -n 3000 -c 4 -d 1024 -t set,get,lpush
    brc=$rc
  fi
  redis-cli -s /tmp/hetmem-redis.sock shutdown nosave > /dev/null 2>&1
  for _ in $(seq 1 50); do kill -0 $rpid 2> /dev/null || break; sleep 0.2; done
  kill -9 $rpid 2> /dev/null; wait $rpid 2> /dev/null
  r0=$(heap_kib 0 redis-report) r1=$(heap_kib 1 redis-report)
  [ $up = 1 ] && [ $brc = 0 ] && [ "$(tr '\r' '\n' < out.txt | grep -c 'requests per second')" -ge 3 ] && [ "$r1" -gt 1000 ] && [ "$r0" -lt "$r1" ] &&
    ok "redis-server under 'bind node 1' with redis-benchmark: the server's heap on node 1 ($r1 KiB)" ||
    { fail "redis-server under 'bind node 1' (up $up, benchmark status $brc, heap node 0 $r0 KiB, node 1 $r1 KiB)"; tail -5 redis.log; tail -3 out.txt; }
else
  fail "redis-server is not installed (scripts/setup.sh installs it)"
fi

# Sizes at the edges of size_t at every entry point, and calloc's zeros, with the tiering engine
# running and allocation sites followed (two tiers here: the site arenas exist, and the sites'
# floor is not the "off" marker), then with sites off.
for t in "source=write-protect" "source=write-protect,sites=off"; do
  rm -f report
  HETMEM_TIERING="$t" HETMEM_EXPLAIN=1 LD_PRELOAD="$preload" "$build/tests/hetmem_preload_edges" > out.txt 2> err.txt
  rc=$?
  sites=$(grep -c "allocation sites: blocks of" err.txt)
  [ $rc = 0 ] && grep -q "^edges: 0 failure(s)" out.txt && grep -q "automatic tiering on" err.txt &&
    { [ "$t" != "source=write-protect" ] || [ "$sites" = 1 ]; } &&
    ok "edge sizes and calloc's zeros with HETMEM_TIERING=$t (sites followed: $sites)" ||
    { fail "edge sizes with HETMEM_TIERING=$t (status $rc)"; grep FAIL out.txt | head; head -5 err.txt; }
done

run "weighted node 0, node 1" "$lifecycle"
[ $rc = 0 ] && ok "the allocator stress (memalign/aligned_alloc, threads, fork) under weighted interleave" ||
  { fail "lifecycle under weighted interleave"; grep FAIL out.txt; }
show

# A ratio policy on a 1 GiB workload: within 1% of the asked split, by the kernel's count.
WORKLOAD_KEEP=1 run "ratio node 0:1, node 1:3" "$workload" 1024
share=$(awk -v a="$n0" -v b="$n1" 'BEGIN { printf "%.4f", (a + b) ? a / (a + b) : 0 }')
ok_ratio=$(awk -v s="$share" 'BEGIN { print (s > 0.24 && s < 0.26) ? 1 : 0 }')
[ $rc = 0 ] && [ "$ok_ratio" = 1 ] &&
  ok "ratio 1:3 on a 1 GiB workload: node 0 holds $share of it (0.25 asked)" || { fail "ratio 1:3: node 0 holds $share"; cat out.txt; }
show

# The default policy does not drive node 0 into reclaim: past its watermark (90%), it spills.
total0=$(sed -n 's/.*MemTotal: *\([0-9]*\).*/\1/p' /sys/devices/system/node/node0/meminfo)
free0=$(sed -n 's/.*MemFree: *\([0-9]*\).*/\1/p' /sys/devices/system/node/node0/meminfo)
want=$(( (free0 + total0 / 4) / 1024 ))  # more than node 0 has free
WORKLOAD_KEEP=1 run "" "$workload" $want
peak_free0=$(sed -n 's/^node 0: MemFree \([0-9]*\).*/\1/p' out.txt)
[ $rc = 0 ] && [ "$n1" -gt 0 ] && [ "${peak_free0:-0}" -gt $((total0 / 25)) ] &&
  ok "default policy, $want MiB (node 0 has $((free0 / 1024)) MiB free): spilled $((n1 / 1024)) MiB to node 1, node 0 kept $((peak_free0 / 1024)) MiB free" ||
  { fail "default policy spill: node 1 $n1 KiB, node 0 free at peak ${peak_free0:-?} KiB"; cat out.txt err.txt; }
show

# The whole VM runs out of memory. With vm.overcommit_memory=2 the kernel refuses memory it
# cannot back (mmap says ENOMEM) instead of letting the OOM killer end someone later: the
# limit is set to what is committed now plus what is available less 256 MiB, so the program
# fills nearly all of the VM, node 0 and then node 1, with every page written.
exhaust="$build/tests/hetmem_preload_exhaust"
oc_mode=$(cat /proc/sys/vm/overcommit_memory) oc_kb=$(cat /proc/sys/vm/overcommit_kbytes) oc_ratio=$(cat /proc/sys/vm/overcommit_ratio)
committed=$(awk '/^Committed_AS:/ { print $2 }' /proc/meminfo)
avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
ooms_before=$(dmesg | grep -c "Out of memory")
echo $((committed + avail - 262144)) > /proc/sys/vm/overcommit_kbytes
echo 2 > /proc/sys/vm/overcommit_memory
echo "vm.overcommit_memory=2, CommitLimit $(awk '/^CommitLimit:/ { print $2 }' /proc/meminfo) kB (MemAvailable was $avail kB)"
run "" "$exhaust" 64 touch
echo "$oc_mode" > /proc/sys/vm/overcommit_memory
if [ "$oc_kb" != 0 ]; then echo "$oc_kb" > /proc/sys/vm/overcommit_kbytes; else echo "$oc_ratio" > /proc/sys/vm/overcommit_ratio; fi
echo "$out" | sed 's/^/     /'
ooms_after=$(dmesg | grep -c "Out of memory")
peak0=$(sed -n 's/^peak:.* N0=\([0-9]*\).*/\1/p' out.txt) peak1=$(sed -n 's/^peak:.* N1=\([0-9]*\).*/\1/p' out.txt)
written=$(sed -n 's/^exhaust: \([0-9]*\) MiB written.*/\1/p' out.txt)
[ $rc = 0 ] && grep -q " 0 failure(s)" out.txt && grep -q " 0 page(s) wrong" out.txt && [ -z "$(cat err.txt)" ] &&
  [ "${written:-0}" -gt $((avail / 1024 * 3 / 4)) ] &&
  ok "the VM's memory exhausted under the default policy: ${written:-0} MiB (of $((avail / 1024)) MiB available) written before ENOMEM from every entry point, every page intact, the memory back after free, nothing on stderr" ||
  { fail "VM memory exhaustion (status $rc, ${written:-?} MiB written)"; cat err.txt; }
[ "${peak0:-0}" -gt 0 ] && [ "${peak1:-0}" -gt 0 ] &&
  ok "at the peak the kernel had $((${peak0:-0} / 1024)) MiB on node 0 and $((${peak1:-0} / 1024)) MiB on node 1 (spilled, then filled)" ||
  fail "at the peak: node 0 ${peak0:-?} KiB, node 1 ${peak1:-?} KiB"
[ "$ooms_after" = "$ooms_before" ] && ok "the OOM killer never ran" || fail "the OOM killer ran ($ooms_before -> $ooms_after)"

echo "preload in the VM: $fails failure(s)"
exit $((fails > 0))
