// hetmem/sysfs/environment.hpp — the one way hetmem reads its environment variables.
//
// Contract: environment(name) is the variable's value, or nullptr when it is unset; and always
// nullptr in a process that runs with AT_SECURE (setuid or setgid, file capabilities, an LSM
// transition): a user must not redirect what a privileged program linked with hetmem reads
// (HETMEM_SYSFS_ROOT, HETMEM_POLICY, HETMEM_REPORT, ...). Allocation-free and lock-free, fit for
// the preload's start-up; like getenv, not safe against a concurrent setenv. Every variable
// hetmem reads goes through here (the C compatibility library, being C, calls secure_getenv,
// which is what this is).
#pragma once

#include <cstdlib>

namespace hetmem::sysfs {

[[nodiscard]] inline const char *environment(const char *name) noexcept {
  return secure_getenv(name);  // NOLINT(concurrency-mt-unsafe): see the contract
}

}  // namespace hetmem::sysfs
