// root_dir.hpp — the reader's only contact with the OS: root-relative file access.
//
// Contract: every path is relative to the root directory descriptor and is resolved with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) where the kernel offers it (Linux >= 5.6),
// so symlinks — absolute ones included — stay inside the root; ELOOP ends a symlink loop.
// Without openat2 (ENOSYS, or refused by a seccomp filter) plain openat is used. Only regular
// files are read: files are opened non-blocking, and a FIFO or device (which would block or
// stream forever) is refused with EINVAL once its first read comes back empty or full. No call throws except
// std::bad_alloc, which read_snapshot() catches. Every access asks the fault injector first
// (hetmem/sysfs/fault_injection.hpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "hetmem/result.hpp"

namespace hetmem::sysfs::detail {

class root_dir {
 public:
  static result<root_dir> open(const std::string &path);
  root_dir(root_dir &&other) noexcept
      : fd_(other.fd_), link_dir_fd_(other.link_dir_fd_), link_dir_(std::move(other.link_dir_)) {
    other.fd_ = -1;
    other.link_dir_fd_ = -1;
  }
  root_dir &operator=(root_dir &&) = delete;
  root_dir(const root_dir &) = delete;
  ~root_dir();

  // The content of a regular file. ENOENT when absent; EFBIG when larger than `limit` unless
  // `truncate` is set, in which case the first `limit` bytes are returned.
  [[nodiscard]] result<std::string> read(const std::string &rel, std::size_t limit, bool truncate = false) const;
  // Entry names of a directory, without "." and "..", unsorted; E2BIG past `limit` entries.
  [[nodiscard]] result<std::vector<std::string>> list(const std::string &rel, std::size_t limit) const;
  // The target of a symlink, as stored. Not thread-safe (keeps its last directory open).
  [[nodiscard]] result<std::string> read_link(const std::string &rel) const;
  // Whether the path is a directory: false when absent (ENOENT, ENOTDIR); an error when that
  // cannot be told (EACCES, ELOOP, ...).
  [[nodiscard]] result<bool> is_directory(const std::string &rel) const;

 private:
  explicit root_dir(int fd) : fd_(fd) {}
  [[nodiscard]] int open_at(const std::string &rel, int flags) const;  // fd or -errno
  // open_at(rel, flags) as a yes/no: false for ENOENT and ENOTDIR, an error (`what`) otherwise.
  [[nodiscard]] result<bool> check_path(const std::string &rel, int flags, const char *what) const;
  int fd_ = -1;
  mutable int link_dir_fd_ = -1;  // read_link's last directory (O_PATH), kept for the next link
  mutable std::string link_dir_;
};

// When read_regular_file asks fstat whether the file is regular (and how large): `yes` before
// reading; `when_unsure` only when the first read gives nothing or fills the buffer, the other
// first reads ending the file (true of sysfs attributes and regular files; not of procfs, nor of
// cgroupfs files of several records).
enum class stat_first { yes, when_unsure };

// The content of the regular file open on `fd` (closed before returning), as root_dir::read;
// `path` names it to the fault injector.
[[nodiscard]] result<std::string> read_regular_file(int fd, const char *path, std::size_t limit, bool truncate,
                                                    stat_first when);
// strerror's text for `err` (in the C locale); the common ones from a table of glibc's texts.
[[nodiscard]] std::string errno_text(int err);
// That table: glibc's text for the errnos file access meets, nullptr for the others.
[[nodiscard]] const char *common_errno_text(int err) noexcept;

// "sys/bus/dax/devices" + "../../../devices/x" -> "sys/devices/x" (lexical; never climbs above the root).
std::string join_lexically(std::string_view dir, std::string_view target);

}  // namespace hetmem::sysfs::detail
