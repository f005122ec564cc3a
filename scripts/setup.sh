#!/usr/bin/env bash
# setup.sh — install every Debian package hetmem's build and tests need, idempotently.
#
# Usage: scripts/setup.sh [--vm]
#   (no flag)  build + unit-test dependencies
#   --vm       also the VM test harness: QEMU, busybox, cpio, and the guest kernels' .debs
#              (linux-image-6.12 from bookworm-backports, and the current kernel of Debian's
#              trixie-backports, 7.x, read through an apt configuration of its own in the cache:
#              the system's sources stay as they are), downloaded into $HETMEM_VM_CACHE,
#              default ~/.cache/hetmem-vm; nothing is installed into /boot
#
# Contract: safe to run any number of times; installs only what is missing; enables
# bookworm-backports (hwloc 2.12, Catch2 v3, the VM guest kernel) and deb-src (jemalloc's
# source, downloaded into $HETMEM_SRC_CACHE, default ~/.cache/hetmem-src) with deb822 sources
# that reuse the mirror and keyring of the system's own Debian source. Uses sudo when not root.
set -euo pipefail
# Caches live under $HOME; find it from the password database when the environment lacks it.
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME

want_vm=0
for arg in "$@"; do
  case "$arg" in
    --vm) want_vm=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
  echo "setup.sh: not root and sudo is missing: cannot install packages" >&2; exit 1; fi

. /etc/os-release
if [ "${ID:-}" != debian ] || [ "${VERSION_CODENAME:-}" != bookworm ]; then
  echo "setup.sh: written for Debian 12 (bookworm); this is ${PRETTY_NAME:-unknown}. Trying anyway." >&2
fi
codename=${VERSION_CODENAME:-bookworm}

# Packages from the main archive, then those that must come from backports.
main_pkgs=(build-essential cmake ninja-build pkg-config git bzip2 tar xz-utils
           libnuma-dev libfmt-dev nlohmann-json3-dev libcli11-dev clang libclang-rt-dev
           clang-format clang-tidy python3
           lld  # the preload's code layout (src/preload/CMakeLists.txt)
           libbenchmark-dev libjemalloc-dev libmemkind-dev  # side-by-side benchmarks
           gdb valgrind strace sqlite3 redis-server redis-tools  # programs the preload tests run under it
           graphviz man-db)  # dot and man: check the DOT and the man page the CLI writes
bpo_pkgs=(libhwloc-dev catch2)
[ "$want_vm" = 1 ] && main_pkgs+=(qemu-system-x86 busybox-static cpio ndctl daxctl e2fsprogs
                                 numactl)  # migspeed: the migration benchmark's mbind baseline
vm_cache=${HETMEM_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hetmem-vm}
guest_kernel_meta=linux-image-6.12-amd64  # backports meta-package; resolved to a concrete version

# --- apt sources: backports (hwloc 2.12, Catch2 3, guest kernel) and deb-src (jemalloc) ----------
# add_source TYPES SUITE FILE: a deb822 source reusing the mirror and keyring of the main
# Debian source (when it is a deb822 file).
add_source() {
  local uri=http://deb.debian.org/debian keyring=/usr/share/keyrings/debian-archive-keyring.gpg u k
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    u=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    k=$(awk '/^Signed-By:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    [ -n "$u" ] && uri=$u
    [ -n "$k" ] && keyring=$k
  fi
  printf 'Types: %s\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' "$1" "$uri" "$2" "$keyring" \
    | "${SUDO[@]}" tee "/etc/apt/sources.list.d/$3" >/dev/null
  echo "setup.sh: enabled $1 $2 ($uri)"
  added_source=1
}
added_source=0
if ! grep -rqsE "^(Suites:.*[[:space:]]|deb .*[[:space:]])${codename}-backports([[:space:]]|$)" \
       /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
  add_source deb "${codename}-backports" hetmem-backports.sources
fi
src_cache=${HETMEM_SRC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hetmem-src}
if ! grep -rqsE "^(Types:.*deb-src|deb-src )" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
  add_source deb-src "$codename" hetmem-deb-src.sources
fi
fetch_jemalloc_source() {
  if ls "$src_cache"/jemalloc_5.3.0*.orig.tar.* >/dev/null 2>&1; then return 0; fi
  mkdir -p "$src_cache"
  if ! (cd "$src_cache" && apt-get source --download-only -q jemalloc >/dev/null 2>&1); then
    "${SUDO[@]}" apt-get update -q
    (cd "$src_cache" && apt-get source --download-only -q jemalloc >/dev/null)
  fi
  echo "setup.sh: jemalloc source in $src_cache"
}

# --- what is missing ---------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing_main=() missing_bpo=()
for p in "${main_pkgs[@]}"; do installed "$p" || missing_main+=("$p"); done
for p in "${bpo_pkgs[@]}"; do
  # Must be the backports version: hwloc >= 2.12 and Catch2 >= 3.
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
  if [ -z "$v" ] || ! installed "$p" || ! dpkg --compare-versions "$v" ge "$([ "$p" = catch2 ] && echo 3 || echo 2.12)"; then
    missing_bpo+=("$p")
  fi
done

# The guest kernel for the VM tests: a .deb in the cache, fetched once.
fetch_guest_kernel() {
  [ "$want_vm" = 1 ] || return 0
  if ls "$vm_cache"/linux-image-6.12*.deb >/dev/null 2>&1; then return 0; fi
  local pkg
  pkg=$(apt-cache depends "$guest_kernel_meta" 2>/dev/null | awk '/Depends: linux-image-6\.12/{print $2; exit}')
  if [ -z "$pkg" ]; then
    "${SUDO[@]}" apt-get update -q
    pkg=$(apt-cache depends "$guest_kernel_meta" | awk '/Depends: linux-image-6\.12/{print $2; exit}')
  fi
  [ -n "$pkg" ] || { echo "setup.sh: cannot resolve $guest_kernel_meta (is ${codename}-backports reachable?)" >&2; exit 1; }
  mkdir -p "$vm_cache"
  echo "setup.sh: downloading guest kernel $pkg into $vm_cache"
  (cd "$vm_cache" && apt-get download -q "$pkg")
}

# The current guest kernel: trixie-backports' linux-image-amd64 (7.x), whose image package
# names two others, the kernel (linux-binary-VERSION) and its modules (linux-modules-VERSION).
# apt reads trixie-backports through a sources list, state and cache of its own under the VM
# cache, so this bookworm system never sees that suite.
fetch_current_guest_kernel() {
  [ "$want_vm" = 1 ] || return 0
  if ls "$vm_cache"/linux-binary-7.*.deb >/dev/null 2>&1 && ls "$vm_cache"/linux-modules-7.*.deb >/dev/null 2>&1; then
    return 0
  fi
  local dir="$vm_cache/apt-trixie-backports"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "deb http://deb.debian.org/debian trixie-backports main" > "$dir/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
                  -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o APT::Architecture=amd64
                  -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -q >/dev/null ||
    { echo "setup.sh: cannot read trixie-backports (for the current guest kernel)" >&2; exit 1; }
  local image binary modules
  image=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-7\./{print $2; exit}')
  [ -n "$image" ] || { echo "setup.sh: trixie-backports' linux-image-amd64 names no 7.x kernel" >&2; exit 1; }
  binary=$(apt-cache "${apt_opts[@]}" depends "$image" | awk '/Depends: linux-binary-/{print $2; exit}')
  modules=$(apt-cache "${apt_opts[@]}" depends "$image" | awk '/Depends: linux-modules-/{print $2; exit}')
  [ -n "$binary" ] && [ -n "$modules" ] ||
    { echo "setup.sh: cannot find the kernel and modules packages of $image" >&2; exit 1; }
  echo "setup.sh: downloading guest kernel $binary and $modules into $vm_cache"
  (cd "$vm_cache" && apt-get "${apt_opts[@]}" download -q "$binary" "$modules")
}

if [ ${#missing_main[@]} -eq 0 ] && [ ${#missing_bpo[@]} -eq 0 ] && [ "$added_source" = 0 ]; then
  fetch_jemalloc_source
  fetch_guest_kernel
  fetch_current_guest_kernel
  echo "setup.sh: all packages present"
  exit 0
fi

stamp=/var/lib/apt/lists
if [ "$added_source" = 1 ] || [ -z "$(ls -A $stamp 2>/dev/null | grep -v -e lock -e partial)" ] \
   || ! apt-cache policy libhwloc-dev 2>/dev/null | grep -q backports; then
  "${SUDO[@]}" apt-get update -q
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing_main[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing_main[*]}"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing_main[@]}"
fi
if [ ${#missing_bpo[@]} -gt 0 ]; then
  echo "setup.sh: installing from ${codename}-backports: ${missing_bpo[*]}"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends -t "${codename}-backports" "${missing_bpo[@]}"
fi
fetch_jemalloc_source
fetch_guest_kernel
fetch_current_guest_kernel
echo "setup.sh: done"
