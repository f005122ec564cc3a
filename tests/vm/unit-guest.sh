#!/bin/bash
# unit-guest.sh — runs inside the `tiering` VM (node 0: DDR with the CPUs; node 1: CPU-less
# memory): the unit tests that need what this development machine's kernel lacks, soft-dirty
# bits (CONFIG_MEM_SOFT_DIRTY, which Debian's kernels have). Here they skip on the host; in the
# guest a skip is a failure.
# Usage: unit-guest.sh BUILD_DIR (cwd = the work dir)
build=$1
# shellcheck source=guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"
balancing_off
tests="$build/tests/hetmem_unit_tests"
"$tests" "*soft-dirty*" --reporter compact > unit.txt 2>&1
rc=$?
sed 's/^/     /' unit.txt | tail -40
if grep -qi "skipped" unit.txt; then
  fail "a soft-dirty unit test skipped in a kernel that has soft-dirty bits"
elif [ $rc = 0 ]; then
  ok "the soft-dirty unit tests pass in a kernel with soft-dirty bits: $(grep -E "^(All tests passed|Passed|test cases)" unit.txt | tail -1)"
else
  fail "the soft-dirty unit tests (exit $rc)"
fi
echo "unit: $fails failure(s)"
[ $fails = 0 ]
