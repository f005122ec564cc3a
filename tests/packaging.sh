#!/usr/bin/env bash
# packaging.sh BUILD_DIR SOURCE_DIR MODE — install hetmem from BUILD_DIR into a temporary
# prefix and build a consumer against it (MODE = package | pkgconfig | subdirectory).
set -euo pipefail
build=$1 src=$2 mode=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
case "$mode" in
  package)
    cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
    test -x "$tmp/prefix/bin/hetmem"
    # The installed CLI finds the installed preload (no build tree, no HETMEM_PRELOAD).
    out=$(HETMEM_PRELOAD= HETMEM_REPORT=stderr "$tmp/prefix/bin/hetmem" run --explain -- python3 -c 'print("ran")' 2>&1)
    grep -q "under $tmp/prefix/lib.*/libhetmem-preload.so" <<<"$out" && grep -q "^ran$" <<<"$out" &&
      grep -q "hetmem report: pid" <<<"$out" || { echo "installed hetmem run failed:"; echo "$out"; exit 1; }
    cmake -S "$src/tests/consumer" -B "$tmp/b" "${gen[@]}" -DMODE=package -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
    cmake --build "$tmp/b" >/dev/null
    ;;
  pkgconfig)
    cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
    export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib64/pkgconfig"
    mkdir -p "$tmp/b"
    # shellcheck disable=SC2046
    c++ -std=c++20 "$src/tests/consumer/main.cpp" -o "$tmp/b/consumer" $(pkg-config --cflags --libs hetmem)
    # A program written for memkind's hbwmalloc, relinked against hetmem without changes.
    # shellcheck disable=SC2046
    cc "$src/examples/hbw_stream.c" -o "$tmp/b/hbw_stream" $(pkg-config --cflags --libs hetmem-hbwmalloc)
    LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/b/hbw_stream" | grep -q "realloc kept the data: yes"
    # And memkind's C++ hbw::allocator, from the installed <hbw_allocator.h>.
    # shellcheck disable=SC2046
    c++ -std=c++20 "$src/tests/c/test_hbw_allocator.cpp" -I"$src/tests/c" -o "$tmp/b/hbw_allocator" \
      $(pkg-config --cflags --libs hetmem-hbwmalloc)
    LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/b/hbw_allocator" | grep -q "all checks passed"
    ;;
  subdirectory)
    cmake -S "$src/tests/consumer" -B "$tmp/b" "${gen[@]}" -DMODE=subdirectory -DHETMEM_SOURCE_DIR="$src" >/dev/null
    cmake --build "$tmp/b" >/dev/null
    ;;
  *) echo "packaging.sh: unknown mode $mode" >&2; exit 2 ;;
esac
"$tmp/b/consumer"
echo "packaging ($mode): consumer built and ran"
