// hetmem/sysfs/fault_injection.hpp — a seam under the sysfs reader through which tests make
// individual file accesses fail (the reader's counterpart of hetmem/detail/os.hpp).
//
// Contract:
// - With no injector installed (the default) nothing changes and each access costs one
//   relaxed atomic load.
// - With one installed, every OS access of the reader asks it first: opening the root
//   (read_snapshot), opening a file, each read() of a file, listing a directory, reading a
//   link, checking that a path is a directory; and read_text_file()'s open and reads.
//   `path` is the path as the reader names it: relative to the root (as in the snapshot's
//   diagnostics), or as given to read_snapshot()/read_text_file().
// - The injector returns 0 to let the access happen, or an errno value, which the reader then
//   sees exactly as if the system call had failed with it (EINTR included: reads retry).
// - The injector may be called from several threads at once and must be thread-safe.
//   set_fault_injector() swaps it atomically and returns the previous one; it is meant for
//   tests, which restore the previous one (scoped_fault_injector does).
#pragma once

namespace hetmem::sysfs::detail {

enum class file_access {
  open_root,   // read_snapshot() opening its root directory
  open_file,   // opening a file to read it
  read_file,   // one read() of an open file
  list_dir,    // opening and listing a directory
  read_link,   // reading a symbolic link
  check_path,  // is a path a directory
};

[[nodiscard]] const char *to_string(file_access a) noexcept;

struct fault_injector {
  // 0: let the access happen; otherwise the errno it fails with.
  int (*inject)(void *context, file_access access, const char *path) noexcept;
  void *context;
};

// Installs `injector` (nullptr: none; it must outlive its use) and returns the previous one.
const fault_injector *set_fault_injector(const fault_injector *injector) noexcept;

// The errno to fail `access` of `path` with, or 0 (always 0 with no injector installed).
[[nodiscard]] int injected_fault(file_access access, const char *path) noexcept;

class scoped_fault_injector {
 public:
  explicit scoped_fault_injector(const fault_injector *injector) noexcept : previous_(set_fault_injector(injector)) {}
  ~scoped_fault_injector() { set_fault_injector(previous_); }
  scoped_fault_injector(const scoped_fault_injector &) = delete;
  scoped_fault_injector &operator=(const scoped_fault_injector &) = delete;

 private:
  const fault_injector *previous_;
};

}  // namespace hetmem::sysfs::detail
