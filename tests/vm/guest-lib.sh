# guest-lib.sh — shared by the guest scripts (sourced): results, pages per node from the
# kernel, and NUMA balancing held off while a test needs pages to stay where they were put.

fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# node_kib PID NODE: KiB of PID's pages on NODE, straight from the kernel's numa_maps
# (anonymous and file pages alike, in each mapping's page size).
node_kib() {
  awk -v n="N$2" '{ ps = 4; for (i = 1; i <= NF; i++) if ($i ~ /^kernelpagesize_kB=/) { split($i, kv, "="); ps = kv[2] }
                    for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == n) s += kv[2] * ps } } END { print s + 0 }' \
      "/proc/$1/numa_maps"
}

# Automatic NUMA balancing moves pages written from node 0's CPUs back to node 0 (it did, once,
# 8704 of 65536 pages between a move and its check): off while such tests run, restored after.
balancing_off() {
  balancing=$(cat /proc/sys/kernel/numa_balancing 2> /dev/null)
  echo "kernel.numa_balancing: ${balancing:-absent}; 0 for these tests"
  [ -n "$balancing" ] && echo 0 > /proc/sys/kernel/numa_balancing
}
balancing_restore() {
  [ -n "${balancing:-}" ] && echo "$balancing" > /proc/sys/kernel/numa_balancing
}

# reached NAME N: seconds until GUPS's hot set N (1 or 2) was 90% in the fast tier, from
# NAME.txt (hetmem_gups's output), or "never".
reached() {
  python3 - "$1.txt" "$2" << 'PY'
import re, sys
t = open(sys.argv[1], errors="replace").read()
m = re.search(r"90% of hot set 1 in the fast tier after (\S+)( s)?, of hot set 2 after (\S+)", t)
print("never" if not m else (m.group(1) if sys.argv[2] == "1" else m.group(3)))
PY
}
