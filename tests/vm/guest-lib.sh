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
