#!/bin/sh
# guest-run.sh — what runs inside each VM (one boot per topology, many checks per boot).
# Usage: guest-run.sh HETMEM PLACE_CHECK POLICY_CHECK TOPOLOGY EXAMPLE [TREE]  (cwd = the work dir)
# Writes topo.json, topo.txt, place.txt, policy.txt, example.txt and TREE.tar.gz (the gathered
# tree; TREE is vm-TOPOLOGY unless given); exits non-zero if a step failed.
hetmem=$1 place=$2 policy=$3 topo=$4 example=$5 tree=${6:-vm-$4}
rc=0
case "$topo" in
  pmem-kmem)  # NVDIMM -> devdax namespace -> system RAM through kmem: a CPU-less PMEM node
    ndctl create-namespace -f -e namespace0.0 -m devdax -a 2M > ndctl.txt 2>&1 || { echo "ndctl failed:"; cat ndctl.txt; rc=1; }
    echo offline > /sys/devices/system/memory/auto_online_blocks
    daxctl reconfigure-device --mode=system-ram dax0.0 > daxctl.txt 2>&1 || { echo "daxctl failed:"; cat daxctl.txt; rc=1; }
    # Two more NVDIMMs that stay persistent memory outside the NUMA nodes: a devdax namespace,
    # and an fsdax namespace with ext4 mounted -o dax (file-backed tiers, checked below).
    ndctl create-namespace -f -e namespace1.0 -m devdax -a 2M >> ndctl.txt 2>&1 || { echo "ndctl devdax failed:"; cat ndctl.txt; rc=1; }
    ndctl create-namespace -f -e namespace2.0 -m fsdax >> ndctl.txt 2>&1 || { echo "ndctl fsdax failed:"; cat ndctl.txt; rc=1; }
    mkdir -p fsdax
    { mkfs.ext4 -q -F -b 4096 /dev/pmem2 && mount -t ext4 -o dax /dev/pmem2 fsdax && chmod 1777 fsdax; } > mkfs.txt 2>&1 ||
      { echo "ext4 -o dax on /dev/pmem2 failed:"; cat mkfs.txt; rc=1; }
    ;;
esac
# A small hugetlb pool on every node (for the hugetlb tiers policy_check tries).
for n in /sys/devices/system/node/node*/hugepages/hugepages-2048kB/nr_hugepages; do echo 12 > "$n" 2>/dev/null; done
"$hetmem" topo --json --no-hwloc > topo.json || { echo "hetmem topo --json failed"; rc=1; }
"$hetmem" topo --explain > topo.txt 2>&1 || { echo "hetmem topo --explain failed"; rc=1; }
"$place" > place.txt 2>&1 || { echo "place_check failed"; rc=1; }
"$hetmem" gather "$tree" --out . > /dev/null || { echo "hetmem gather failed"; rc=1; }
"$policy" > policy.txt 2>&1 || { echo "policy_check failed"; rc=1; }
"$example" > example.txt 2>&1 || { echo "containers_on_tiers example failed"; rc=1; }
if [ "$topo" = pmem-kmem ]; then
  "$policy" --file-tiers /dev/dax1.0 "$PWD/fsdax" >> policy.txt 2>&1 || { echo "file-backed tiers failed"; rc=1; }
  umount fsdax 2>/dev/null
fi
# A cgroup v2 cpuset that excludes node 1: hetmem must refuse it and the kernel keep pages off it.
cg=/sys/fs/cgroup
if [ -r /sys/devices/system/node/node1/meminfo ] && echo +cpuset > $cg/cgroup.subtree_control 2>/dev/null; then
  mkdir -p $cg/hetmem-cpuset && echo 0 > $cg/hetmem-cpuset/cpuset.mems &&
    sh -c 'echo $$ > /sys/fs/cgroup/hetmem-cpuset/cgroup.procs && exec "$0" --excluded 1' "$policy" >> policy.txt 2>&1 ||
    { echo "policy_check in a cpuset excluding node 1 failed"; rc=1; }
else
  echo "FAIL cgroup v2 cpuset controller not available in the guest" >> policy.txt; rc=1
fi
exit $rc
