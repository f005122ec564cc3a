#!/usr/bin/env bash
# vm.sh — boot a real Linux kernel under QEMU with an emulated memory topology and run a
# command inside it, with the host's root (read-only) as the guest's root.
#
#   vm.sh image                         build (or reuse) the guest kernel + initramfs
#   vm.sh topologies                    list the topologies
#   vm.sh run TOPOLOGY WORKDIR CMD...   boot TOPOLOGY, run CMD in WORKDIR inside the guest,
#                                       exit with CMD's status; console in WORKDIR/console.log
#   To run a ctest label inside a guest, use the build directory as WORKDIR (it becomes
#   writable there):  vm.sh run two-socket-hbm "$PWD/build" ctest -L unit
#
# WORKDIR is shared read-write with the guest at the same path. The guest has its own /tmp:
# host paths under /tmp named in CMD (and in $HETMEM_VM_KEEP, colon-separated) are bound
# back into it, so a build tree under /tmp works too. The guest kernel's .debs come from
# `scripts/setup.sh --vm` ($HETMEM_VM_CACHE, default ~/.cache/hetmem-vm). HETMEM_VM_KERNEL picks
# it: 6.12 (the default: the LTS, linux-image-6.12 from bookworm-backports) or 7 (the newest
# 7.x of trixie-backports: linux-binary and linux-modules). Exit status 125 (with the reason and
# the console's tail on stderr) when the VM could not start or finish.
# Recipe: ../shared/docs/vm-recipe.md (TCG; KVM hung nested).
set -euo pipefail
# Caches live under $HOME; find it from the password database when the environment lacks it.
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
here=$(cd "$(dirname "$0")" && pwd)
cache=${HETMEM_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hetmem-vm}
timeout_s=${HETMEM_VM_TIMEOUT:-300}
die() { echo "vm.sh: $*" >&2; exit 125; }

# --- topologies: QEMU arguments -----------------------------------------------------------------
# Latencies in ns, bandwidths per initiator-target pair (QEMU wants every pair when hmat=on).
lb() {  # lb INITIATOR TARGET LATENCY_NS BANDWIDTH
  echo "-numa hmat-lb,initiator=$1,target=$2,hierarchy=memory,data-type=access-latency,latency=$3" \
       "-numa hmat-lb,initiator=$1,target=$2,hierarchy=memory,data-type=access-bandwidth,bandwidth=$4"
}
mem() {  # mem ID SIZE
  echo "-object memory-backend-ram,size=$2,id=m$1"
}
topology_args() {
  case "$1" in
    ddr-hbm-slow)  # one socket: DDR with CPUs, CPU-less HBM (4x bandwidth, a bit slower), CPU-less slow memory
      echo "-machine pc,hmat=on -m 1536M -smp 2,sockets=1,cores=2"
      mem 0 512M; mem 1 512M; mem 2 512M
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1,memdev=m1,initiator=0 -numa node,nodeid=2,memdev=m2,initiator=0"
      echo "-numa dist,src=0,dst=1,val=12 -numa dist,src=0,dst=2,val=30 -numa dist,src=1,dst=2,val=32"
      lb 0 0 100 100G; lb 0 1 120 400G; lb 0 2 300 20G
      ;;
    two-socket-hbm)  # two sockets, each with DDR + a CPU-less local HBM node (Xeon Max flat mode)
      echo "-machine pc,hmat=on -m 2G -smp 4,sockets=2,cores=2"
      mem 0 640M; mem 1 640M; mem 2 384M; mem 3 384M
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1,memdev=m1,cpus=2-3"
      echo "-numa node,nodeid=2,memdev=m2,initiator=0 -numa node,nodeid=3,memdev=m3,initiator=1"
      echo "-numa dist,src=0,dst=1,val=21 -numa dist,src=0,dst=2,val=13 -numa dist,src=0,dst=3,val=23"
      echo "-numa dist,src=1,dst=2,val=23 -numa dist,src=1,dst=3,val=13 -numa dist,src=2,dst=3,val=23"
      lb 0 0 100 100G; lb 0 1 200 50G; lb 0 2 110 400G; lb 0 3 220 50G
      lb 1 0 200 50G; lb 1 1 100 100G; lb 1 2 220 50G; lb 1 3 110 400G
      ;;
    slit-only)  # no HMAT at all: two sockets and a far CPU-less node, SLIT distances only
      echo "-machine pc -m 1536M -smp 4,sockets=2,cores=2"
      mem 0 512M; mem 1 512M; mem 2 512M
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1,memdev=m1,cpus=2-3 -numa node,nodeid=2,memdev=m2"
      echo "-numa dist,src=0,dst=1,val=21 -numa dist,src=0,dst=2,val=40 -numa dist,src=1,dst=2,val=40"
      ;;
    memside-cache)  # 2LM-like: a small DDR node with CPUs and a large slow node behind a memory-side cache
      echo "-machine pc,hmat=on -m 1536M -smp 2,sockets=1,cores=2"
      mem 0 512M; mem 1 1G
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1,memdev=m1,initiator=0"
      echo "-numa dist,src=0,dst=1,val=17"
      lb 0 0 100 100G; lb 0 1 250 40G
      echo "-numa hmat-cache,node-id=1,size=256M,level=1,associativity=direct,policy=write-back,line=64"
      ;;
    pmem-kmem)  # DDR + an emulated NVDIMM, turned into a dax kmem node by guest-run.sh (Optane-like PMEM tier)
      # nvdimm0 becomes the kmem node; nvdimm1 (devdax) and nvdimm2 (fsdax) stay outside NUMA.
      echo "-machine pc,nvdimm=on -m 1G,slots=4,maxmem=4G -smp 2,sockets=1,cores=2"
      mem 0 1G
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1"
      echo "-object memory-backend-file,id=nv0,share=on,mem-path=$2/nvdimm0.img,size=1G,pmem=on"
      echo "-device nvdimm,memdev=nv0,id=nvdimm0,node=1"
      echo "-object memory-backend-file,id=nv1,share=on,mem-path=$2/nvdimm1.img,size=256M,pmem=on"
      echo "-device nvdimm,memdev=nv1,id=nvdimm1,node=1"
      echo "-object memory-backend-file,id=nv2,share=on,mem-path=$2/nvdimm2.img,size=256M,pmem=on"
      echo "-device nvdimm,memdev=nv2,id=nvdimm2,node=1"
      ;;
    ddr-cxl)  # DDR with the CPUs and a CPU-less CXL-like expander, large enough for the preload's 1 GiB workloads
      echo "-machine pc,hmat=on -m 4G -smp 2,sockets=1,cores=2"
      mem 0 2G; mem 1 2G
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1,memdev=m1,initiator=0"
      echo "-numa dist,src=0,dst=1,val=20"
      lb 0 0 100 100G; lb 0 1 250 30G
      ;;
    tiering)  # automatic tiering: a 1 GiB DDR node with the CPUs (the fast tier) and a 3 GiB CPU-less CXL-like node
      echo "-machine pc,hmat=on -m 4G -smp 2,sockets=1,cores=2"
      mem 0 1G; mem 1 3G
      echo "-numa node,nodeid=0,memdev=m0,cpus=0-1 -numa node,nodeid=1,memdev=m1,initiator=0"
      echo "-numa dist,src=0,dst=1,val=20"
      lb 0 0 100 100G; lb 0 1 250 30G
      ;;
    *) return 1 ;;
  esac
}
topologies="ddr-hbm-slow two-socket-hbm slit-only memside-cache pmem-kmem ddr-cxl tiering"

# --- guest image --------------------------------------------------------------------------------
guest_kernel=${HETMEM_VM_KERNEL:-6.12}
# The modules the guest loads (9p for the host's root and the work folder, NVDIMM and dax for
# the pmem topologies, ext4 for fsdax), each after those it depends on (the .ko's own
# `depends=`); one that the kernel has built in, or lacks, is left out. crc32c's provider is a
# soft dependency of ext4 that `depends=` does not name: its module under either name.
guest_modules=(netfs 9pnet 9pnet_virtio 9p libnvdimm nfit nd_btt nd_pmem device_dax dax_pmem kmem
               crc32c_generic crc32c-cryptoapi ext4)
# module_text KO: the module's uncompressed bytes.
module_text() {
  case "$1" in *.xz) xz -dc "$1" ;; *.zst) zstd -qdc "$1" ;; *) cat "$1" ;; esac
}
# add_module MODDIR NAME OUT ORDERFILE: NAME and what it depends on, uncompressed into OUT, in
# load order (dependencies first) in ORDERFILE.
add_module() {
  local moddir=$1 name=$2 out=$3 order=$4 ko dep
  grep -qx "$name" "$order" 2>/dev/null && return 0
  ko=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" \) -print -quit)
  [ -n "$ko" ] || ko=$(find "$moddir/kernel" \( -name "${name//_/-}.ko*" -o -name "${name//-/_}.ko*" \) -print -quit)
  [ -n "$ko" ] || return 0  # built in, or not in this kernel
  for dep in $(module_text "$ko" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$moddir" "$dep" "$out" "$order"
  done
  module_text "$ko" > "$out/$name.ko"
  echo "$name" >> "$order"
}
build_image() {
  local debs=() img vmlinuz moddir
  case "$guest_kernel" in
    6.12)
      debs=("$(ls "$cache"/linux-image-6.12*.deb 2>/dev/null | sort -V | tail -1 || true)")
      img="$cache/guest" ;;
    7)
      local bin; bin=$(ls "$cache"/linux-binary-7.*.deb 2>/dev/null | sort -V | tail -1 || true)
      local ver=${bin##*/linux-binary-}; ver=${ver%%_*}
      debs=("$bin" "$(ls "$cache"/linux-modules-"$ver"_*.deb 2>/dev/null | tail -1 || true)")
      img="$cache/guest-7" ;;
    *) die "HETMEM_VM_KERNEL=$guest_kernel: 6.12 or 7" ;;
  esac
  for deb in "${debs[@]}"; do
    [ -n "$deb" ] && [ -f "$deb" ] || die "no $guest_kernel guest kernel in $cache: run scripts/setup.sh --vm"
  done
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: run scripts/setup.sh --vm"
  [ -x /bin/busybox ] || die "/bin/busybox is missing: run scripts/setup.sh --vm"
  local stamp="$img/.stamp" want
  want="$(for d in "${debs[@]}"; do basename "$d"; done | tr '\n' ' ')$(sha1sum "$here/vm.sh" | cut -c1-12)"
  guest_image=$img
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  rm -rf "$img" && mkdir -p "$img/deb" "$img/root"/{bin,dev,proc,sys,host,lib/modules}
  for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$img/deb"; done
  vmlinuz=$({ ls "$img"/deb/boot/vmlinuz-* "$img"/deb/usr/lib/modules/*/vmlinuz 2>/dev/null || true; } | head -1)
  [ -n "$vmlinuz" ] || die "no vmlinuz in ${debs[*]}"
  cp "$vmlinuz" "$img/vmlinuz"
  moddir=$({ ls -d "$img"/deb/lib/modules/* "$img"/deb/usr/lib/modules/* 2>/dev/null || true; } | head -1)
  : > "$img/root/lib/modules/order"
  for m in "${guest_modules[@]}"; do add_module "$moddir" "$m" "$img/root/lib/modules" "$img/root/lib/modules/order"; done
  cp /bin/busybox "$img/root/bin/busybox"
  cat > "$img/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
work=$(sed -n 's/.*hetmem\.work=\([^ ]*\).*/\1/p' /proc/cmdline)
keep=$(sed -n 's/.*hetmem\.keep=\([^ ]*\).*/\1/p' /proc/cmdline)
o=trans=virtio,version=9p2000.L,msize=512000
if mount -t 9p -o $o,ro host /host; then
  mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
  # The guest gets its own /tmp; host paths under /tmp that the command needs are bound back.
  mkdir -p /oldtmp && mount --bind /host/tmp /oldtmp
  mount -t tmpfs tmp /host/tmp; mount -t tmpfs run /host/run
  for p in $(echo "$keep" | tr ':' ' '); do mkdir -p "/host$p" && mount --bind "/oldtmp${p#/tmp}" "/host$p"; done
  mkdir -p "/host$work" 2>/dev/null; mount -t 9p -o $o,rw work "/host$work" || echo "HETMEM-VM-EXIT 125 (work mount failed)"
  mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null
  echo; echo HETMEM-VM-START
  chroot /host /bin/sh -c "cd '$work' && exec /bin/sh ./run.sh"
  echo "HETMEM-VM-EXIT $?"
else
  echo "HETMEM-VM-EXIT 125 (9p mount failed)"
fi
poweroff -f
INIT
  chmod +x "$img/root/init"
  (cd "$img/root" && find . | cpio -o -H newc --quiet | gzip -1 > "$img/initramfs.gz")
  rm -rf "$img/deb"
  echo "$want" > "$stamp"
}

# --- run ----------------------------------------------------------------------------------------
run() {
  local topo=$1 work=$2; shift 2
  mkdir -p "$work"; work=$(cd "$work" && pwd)
  local args; args=$(topology_args "$topo" "$work") || die "unknown topology '$topo' (known: $topologies)"
  case "$work" in /run/*) die "WORKDIR $work is under /run, which the guest hides";; esac
  # Host directories under /tmp that the command names (the guest has its own /tmp).
  local keep="" a
  for a in "$@"; do
    case "$a" in /tmp/*) [ -d "$a" ] || a=$(dirname "$a"); keep="${keep:+$keep:}$a" ;; esac
  done
  [ -z "${HETMEM_VM_KEEP:-}" ] || keep="${keep:+$keep:}$HETMEM_VM_KEEP"
  build_image
  { echo '#!/bin/sh'; echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp'
    printf '%q ' "$@"; echo; } > "$work/run.sh"
  local log="$work/console.log" rc=0 attempt
  # A guest kernel that panics while booting, before the command started, is booted once more:
  # under TCG this 6.12 kernel now and then hits an int3 oops in early boot (patching code on
  # one CPU while the other runs it). Nothing of the test has run, so a second boot is safe.
  # A guest that has not started the command within $boot_timeout_s (a boot takes 10-30 s under
  # TCG) hangs in early boot: seen once in 14 boots of Linux 7.3, silent after SeaBIOS. It is
  # stopped and booted once more, as a panic is.
  local boot_timeout_s=${HETMEM_VM_BOOT_TIMEOUT:-150} hung=0
  for attempt in 1 2; do
    rc=0
    # shellcheck disable=SC2086
    timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -nographic -no-reboot -nodefaults -serial stdio \
      -kernel "$guest_image/vmlinuz" -initrd "$guest_image/initramfs.gz" \
      -append "console=ttyS0 quiet panic=-1 hetmem.work=$work${keep:+ hetmem.keep=$keep}" \
      -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
      -virtfs "local,path=$work,mount_tag=work,security_model=none,multidevs=remap" \
      $args > "$log" 2>&1 < /dev/null &
    local qemu_pid=$! waited=0
    hung=0
    # Until the command starts; from then on the overall timeout alone.
    while kill -0 "$qemu_pid" 2>/dev/null && ! grep -aq 'HETMEM-VM-START' "$log"; do
      if [ "$waited" -ge "$boot_timeout_s" ]; then hung=1; kill "$qemu_pid" 2>/dev/null; break; fi
      sleep 1; waited=$((waited + 1))
    done
    wait "$qemu_pid" || rc=$?
    tr -d '\r' < "$log" > "$log.tmp" && mv "$log.tmp" "$log"
    if [ "$attempt" = 1 ] && ! grep -aq 'HETMEM-VM-START$' "$log" && grep -aq 'Kernel panic' "$log"; then
      mv "$log" "$work/console.boot-panic.log"
      echo "vm.sh: the $topo guest kernel panicked while booting, before the test started ($(grep -a -m1 -o 'Oops: [^[]*' "$work/console.boot-panic.log" || echo 'see console.boot-panic.log')); booting it again" >&2
      continue
    fi
    if [ "$attempt" = 1 ] && [ "$hung" = 1 ]; then
      mv "$log" "$work/console.boot-hang.log"
      echo "vm.sh: the $topo guest had not started the test ${boot_timeout_s}s after it was launched (a hang in early boot; console in console.boot-hang.log); booting it again" >&2
      continue
    fi
    break
  done
  local marker; marker=$(grep -a -m1 '^HETMEM-VM-EXIT ' "$log" || true)
  if [ -z "$marker" ]; then
    if [ "$hung" = 1 ]; then
      echo "vm.sh: the $topo guest had not started the test ${boot_timeout_s}s after it was launched, twice; console tail:" >&2
    else
      echo "vm.sh: the $topo VM did not finish (qemu exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${timeout_s}s")); console tail:" >&2
    fi
    tail -25 "$log" >&2
    exit 125
  fi
  sed -n '/HETMEM-VM-START$/,/^HETMEM-VM-EXIT /p' "$log" | sed '1d;$d'
  local grc; grc=$(awk '{print $2}' <<<"$marker")
  exit "$grc"
}

case "${1:-}" in
  image) build_image; echo "guest image: $guest_image" ;;
  topologies) echo "$topologies" ;;
  run) shift; [ $# -ge 3 ] || die "usage: vm.sh run TOPOLOGY WORKDIR CMD..."; run "$@" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
