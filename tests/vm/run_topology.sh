#!/usr/bin/env bash
# run_topology.sh TOPOLOGY BUILD_DIR SOURCE_DIR — one VM test: boot the topology once, run
# hetmem topo, the placement check (mbind + move_pages, verified by the kernel) and the gather
# inside it, then check the classification on the host. Fails loudly when the VM cannot run.
# HETMEM_VM_SAVE_TREES=1 copies the gathered tree to SOURCE_DIR/tests/trees/ (to refresh the
# committed fixtures). HETMEM_VM_KERNEL=7 boots the current kernel (tests/vm/vm.sh): its work
# folder is BUILD_DIR/vm-7/TOPOLOGY and its tree vm7-TOPOLOGY.
set -uo pipefail
topo=$1 build=$2 src=$3
case "${HETMEM_VM_KERNEL:-6.12}" in
  6.12) work="$build/vm/$topo" tree="vm-$topo" kernel="" ;;
  *) work="$build/vm-$HETMEM_VM_KERNEL/$topo" tree="vm$HETMEM_VM_KERNEL-$topo" kernel=" on Linux $HETMEM_VM_KERNEL" ;;
esac
rm -rf "$work"; mkdir -p "$work"
"$src/tests/vm/vm.sh" run "$topo" "$work" "$src/tests/vm/guest-run.sh" "$build/src/cli/hetmem" \
  "$build/tests/hetmem_vm_place_check" "$build/tests/hetmem_vm_policy_check" "$topo" \
  "$build/examples/hetmem_example_containers_on_tiers" "$tree"
rc=$?
rm -f "$work"/*.img  # emulated NVDIMM backing files
for f in topo.txt place.txt policy.txt example.txt; do [ -f "$work/$f" ] && { echo "--- $f"; cat "$work/$f"; }; done
if [ "$rc" = 125 ]; then echo "VM test $topo$kernel: the VM could not run (see above)"; exit 1; fi
[ "$rc" = 0 ] || { echo "VM test $topo$kernel: the guest reported failure (exit $rc)"; exit 1; }
python3 "$src/tests/vm/check_topology.py" "$topo" "$work/topo.json" "$work/example.txt" || exit 1
if [ "${HETMEM_VM_SAVE_TREES:-0}" = 1 ]; then
  cp "$work/$tree.tar.gz" "$src/tests/trees/" && echo "saved tests/trees/$tree.tar.gz"
fi
echo "VM test $topo$kernel: passed"
