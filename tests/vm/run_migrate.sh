#!/usr/bin/env bash
# run_migrate.sh BUILD_DIR SOURCE_DIR — boots the ddr-cxl topology and runs migrate-guest.sh in
# it (page migration: API, CLI and throughput, checked by the kernel).
set -uo pipefail
build=$1 src=$2
work="$build/vm/migrate"
rm -rf "$work"; mkdir -p "$work"
HETMEM_VM_TIMEOUT=${HETMEM_VM_TIMEOUT:-580} "$src/tests/vm/vm.sh" run ddr-cxl "$work" "$src/tests/vm/migrate-guest.sh" "$build" > "$work/migrate.txt" 2>&1
rc=$?
cat "$work/migrate.txt"
if [ "$rc" = 125 ]; then echo "VM test migrate: the VM could not run (see above)"; exit 1; fi
[ "$rc" = 0 ] || { echo "VM test migrate: the guest reported failure (exit $rc)"; exit 1; }
echo "VM test migrate: passed"
