// hetmem/sysfs/reader.hpp — read a sysfs/procfs root into a hetmem::sysfs::snapshot.
//
// Contract:
// - Every access is relative to a directory descriptor on the root (openat2 RESOLVE_IN_ROOT
//   where the kernel has it), so a captured tree behaves exactly like the live system, and an
//   absolute or looping symlink cannot escape it.
// - noexcept: nothing escapes. Allocation failure becomes an ENOMEM error.
// - Bounded: each attribute read is capped (max_attribute_bytes), directories at
//   max_dir_entries, node ids at max_node_id; past a limit there is a diagnostic, never growth.
// - No iostreams, no locale, no global state: safe from a preload library's initialisation
//   once malloc works.
// - Errors: only an unusable root fails the whole read (ENOENT, ENOTDIR, EACCES). Everything
//   else — malformed, truncated, binary or enormous files, symlink loops, ids past the limits —
//   is recorded in snapshot::diagnostics with the file's path, and that datum is not reported.
#pragma once

#include <string>

#include "hetmem/result.hpp"
#include "hetmem/sysfs/model.hpp"

namespace hetmem::sysfs {

struct read_options {
  std::string root = "/";
  read_scope scope = read_scope::everything;
};

// The root to use when none is given: $HETMEM_SYSFS_ROOT if set and non-empty, else "/".
[[nodiscard]] std::string default_root();

[[nodiscard]] result<snapshot> read_snapshot(const read_options &options) noexcept;

// The content of the regular file at `path` (absolute, or relative to the working directory;
// not under any root): for /proc files and configuration files, without iostreams. Errors name
// the path: the errno of open (ENOENT, EACCES, ...), EINVAL when it is not a regular file (a
// FIFO or device would block or never end), EFBIG when larger than `limit` bytes, ENOMEM.
// `not_procfs`: the caller knows the file is no procfs file (a sysfs attribute, a regular file),
// whose first read, when short of the buffer, is the whole file: no fstat then.
[[nodiscard]] result<std::string> read_text_file(const std::string &path, std::size_t limit,
                                                 bool not_procfs = false) noexcept;

}  // namespace hetmem::sysfs
