#!/bin/sh
# hetmem-gather.sh — snapshot the sysfs/procfs files hetmem reads into a tarball, so that a
# machine (or VM) can be replayed anywhere with `hetmem topo --root DIR`.
#
# Usage: hetmem-gather.sh [--root DIR] NAME OUT_DIR
#   writes OUT_DIR/NAME.tar.gz, which unpacks to NAME/{sys,proc,...}
# Collected: node masks and nodeN/{cpulist,cpumap,meminfo,distance,accessY,memory_side_cache,
# hugepages}, memory tiers, /sys/kernel/mm/{numa,mempolicy}, dax devices (with the device
# paths their links point to), the cpuset of this process, numa_balancing, cpuinfo, meminfo,
# cmdline, NVIDIA numa_status. Symlinks are kept as links; write-only files are skipped.
# POSIX sh + coreutils only, so it also runs inside minimal guests.
set -eu
root=/
if [ "${1:-}" = --root ]; then root=$2; shift 2; fi
[ $# -eq 2 ] || { echo "usage: hetmem-gather.sh [--root DIR] NAME OUT_DIR" >&2; exit 2; }
name=$1 out=$2
root=$(cd "$root" && pwd)
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
dst="$stage/$name"

copy() {  # copy REL: one file or link, relative to the root
  src="$root/$1"
  [ -e "$src" ] || [ -L "$src" ] || return 0
  mkdir -p "$dst/$(dirname "$1")"
  if [ -L "$src" ]; then
    ln -sfn "$(readlink "$src")" "$dst/$1"
  elif [ -f "$src" ] && [ -r "$src" ]; then
    cat "$src" > "$dst/$1" 2>/dev/null || rm -f "$dst/$1"
  fi
}
tree() {  # tree REL [MAXDEPTH]: files and links below a directory, not following links
  [ -d "$root/$1" ] || return 0
  (cd "$root" && find "$1" -maxdepth "${2:-8}" \( -type f -o -type l \) ! -name uevent ! -path '*/power/*' \
     ! -name subsystem ! -name driver_override 2>/dev/null) | while read -r f; do copy "$f"; done
}

n=sys/devices/system/node
for f in possible online has_cpu has_memory has_normal_memory has_generic_initiator has_high_memory; do copy "$n/$f"; done
for d in "$root/$n"/node[0-9]*; do
  [ -d "$d" ] || continue
  r="$n/$(basename "$d")"
  for f in cpulist cpumap meminfo distance; do copy "$r/$f"; done
  tree "$r/access0"; tree "$r/access1"; tree "$r/memory_side_cache"; tree "$r/hugepages"
done
copy sys/devices/system/cpu/online
copy sys/devices/system/cpu/possible
tree sys/devices/virtual/memory_tiering 2
copy sys/kernel/mm/numa/demotion_enabled
tree sys/kernel/mm/mempolicy
copy sys/kernel/mm/transparent_hugepage/enabled
for l in "$root"/sys/bus/dax/devices/*; do
  [ -L "$l" ] || continue
  rel=sys/bus/dax/devices/$(basename "$l")
  copy "$rel"
  target=$(cd "$l" && pwd -P); target=${target#"$root"/}
  for f in target_node numa_node size resource align state driver; do copy "$target/$f"; done
done
for l in "$root"/sys/bus/dax/drivers/*/dax*; do [ -L "$l" ] && copy "${l#"$root"/}"; done
tree proc/driver/nvidia/gpus 2
for f in cpuinfo meminfo cmdline version self/cgroup self/status sys/kernel/numa_balancing; do copy "proc/$f"; done
# The cpuset of this process: its cgroup v2 directory and every ancestor's cpuset.mems.effective.
cg=$(sed -n 's/^0:://p' "$root/proc/self/cgroup" 2>/dev/null || true)
while [ -n "$cg" ]; do
  copy "sys/fs/cgroup${cg%/}/cpuset.mems.effective"
  [ "$cg" = / ] && break
  cg=$(dirname "$cg")
done
mkdir -p "$out"
tar -C "$stage" -czf "$out/$name.tar.gz" "$name"
echo "gathered $name into $out/$name.tar.gz"
