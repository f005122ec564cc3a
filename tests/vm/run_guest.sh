#!/usr/bin/env bash
# run_guest.sh NAME TOPOLOGY BUILD_DIR SOURCE_DIR — boots TOPOLOGY and runs
# tests/vm/NAME-guest.sh BUILD_DIR in it (vm.preload: programs under the preload; vm.migrate:
# page migration), each result checked by the kernel. Output in BUILD_DIR/vm/NAME/NAME.txt
# (HETMEM_VM_KERNEL=7, the current kernel: BUILD_DIR/vm-7/NAME/NAME.txt).
set -uo pipefail
name=$1 topo=$2 build=$3 src=$4
case "${HETMEM_VM_KERNEL:-6.12}" in
  6.12) work="$build/vm/$name" kernel="" ;;
  *) work="$build/vm-$HETMEM_VM_KERNEL/$name" kernel=" on Linux $HETMEM_VM_KERNEL" ;;
esac
rm -rf "$work"; mkdir -p "$work"
HETMEM_VM_TIMEOUT=${HETMEM_VM_TIMEOUT:-580} "$src/tests/vm/vm.sh" run "$topo" "$work" "$src/tests/vm/$name-guest.sh" "$build" > "$work/$name.txt" 2>&1
rc=$?
cat "$work/$name.txt"
if [ "$rc" = 125 ]; then echo "VM test $name$kernel: the VM could not run (see above)"; exit 1; fi
[ "$rc" = 0 ] || { echo "VM test $name$kernel: the guest reported failure (exit $rc)"; exit 1; }
echo "VM test $name$kernel: passed"
