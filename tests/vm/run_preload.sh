#!/usr/bin/env bash
# run_preload.sh BUILD_DIR SOURCE_DIR — boots the ddr-cxl topology and runs preload-guest.sh in
# it (real programs under libhetmem-preload.so, placement checked by the kernel).
set -uo pipefail
build=$1 src=$2
work="$build/vm/preload"
rm -rf "$work"; mkdir -p "$work"
HETMEM_VM_TIMEOUT=${HETMEM_VM_TIMEOUT:-580} "$src/tests/vm/vm.sh" run ddr-cxl "$work" "$src/tests/vm/preload-guest.sh" "$build" > "$work/preload.txt" 2>&1
rc=$?
cat "$work/preload.txt"
if [ "$rc" = 125 ]; then echo "VM test preload: the VM could not run (see above)"; exit 1; fi
[ "$rc" = 0 ] || { echo "VM test preload: the guest reported failure (exit $rc)"; exit 1; }
echo "VM test preload: passed"
