#!/bin/sh
# guest-run.sh — what runs inside each VM (one boot per topology, many checks per boot).
# Usage: guest-run.sh HETMEM PLACE_CHECK GATHER TOPOLOGY   (cwd = the shared work directory)
# Writes topo.json, topo.txt, place.txt and vm-TOPOLOGY.tar.gz; exits non-zero if a step failed.
hetmem=$1 place=$2 gather=$3 topo=$4
rc=0
case "$topo" in
  pmem-kmem)  # NVDIMM -> devdax namespace -> system RAM through kmem: a CPU-less PMEM node
    ndctl create-namespace -f -e namespace0.0 -m devdax -a 2M > ndctl.txt 2>&1 || { echo "ndctl failed:"; cat ndctl.txt; rc=1; }
    echo offline > /sys/devices/system/memory/auto_online_blocks
    daxctl reconfigure-device --mode=system-ram dax0.0 > daxctl.txt 2>&1 || { echo "daxctl failed:"; cat daxctl.txt; rc=1; }
    ;;
esac
"$hetmem" topo --json --no-hwloc > topo.json || { echo "hetmem topo --json failed"; rc=1; }
"$hetmem" topo --explain > topo.txt 2>&1 || { echo "hetmem topo --explain failed"; rc=1; }
"$place" > place.txt 2>&1 || { echo "place_check failed"; rc=1; }
"$gather" "vm-$topo" . > /dev/null || { echo "gather failed"; rc=1; }
exit $rc
