#include "root_dir.hpp"

#include "hetmem/sysfs/fault_injection.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>

namespace hetmem::sysfs::detail {

const char *common_errno_text(int err) noexcept {
  // glibc's own English texts (a unit test compares them with strerrordesc_np).
  switch (err) {
    case ENOENT:
      return "No such file or directory";
    case ENOTDIR:
      return "Not a directory";
    case EISDIR:
      return "Is a directory";
    case EACCES:
      return "Permission denied";
    case EPERM:
      return "Operation not permitted";
    case EIO:
      return "Input/output error";
    case ENOMEM:
      return "Cannot allocate memory";
    case EINVAL:
      return "Invalid argument";
    case ELOOP:
      return "Too many levels of symbolic links";
    case ENAMETOOLONG:
      return "File name too long";
    case ENODEV:
      return "No such device";
    case ENXIO:
      return "No such device or address";
    case EAGAIN:
      return "Resource temporarily unavailable";
    case EBUSY:
      return "Device or resource busy";
    case EFBIG:
      return "File too large";
    case EMFILE:
      return "Too many open files";
    case ENFILE:
      return "Too many open files in system";
    case EINTR:
      return "Interrupted system call";
    case EOPNOTSUPP:
      return "Operation not supported";
    case ENOSYS:
      return "Function not implemented";
    default:
      return nullptr;
  }
}

std::string errno_text(int err) {
  // The errnos sysfs reads meet come from the table: a directory the kernel does not have is
  // an everyday answer at start-up (the preload's), and strerror's locale lookup and message
  // tables would cost every process two more 64 KiB windows of libc's pages.
  if (const char *common = common_errno_text(err)) return common;
  char buf[128];
  // GNU strerror_r returns the message pointer.
  const char *msg = strerror_r(err, buf, sizeof buf);
  return msg ? msg : "unknown error";
}

namespace {

std::atomic<bool> openat2_unavailable{false};
std::atomic<const fault_injector *> installed_injector{nullptr};

error os_error(int err, const std::string &what) { return error{err, what + ": " + errno_text(err)}; }

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

// Layout of the kernel's struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name.
constexpr std::size_t dirent_reclen_offset = 16;
constexpr std::size_t dirent_name_offset = 19;

}  // namespace

const char *to_string(file_access a) noexcept {
  switch (a) {
    case file_access::open_root:
      return "open_root";
    case file_access::open_file:
      return "open_file";
    case file_access::read_file:
      return "read_file";
    case file_access::list_dir:
      return "list_dir";
    case file_access::read_link:
      return "read_link";
    case file_access::check_path:
      return "check_path";
  }
  return "?";
}

const fault_injector *set_fault_injector(const fault_injector *injector) noexcept {
  return installed_injector.exchange(injector, std::memory_order_acq_rel);
}

int injected_fault(file_access access, const char *path) noexcept {
  const fault_injector *f = installed_injector.load(std::memory_order_acquire);
  return f ? f->inject(f->context, access, path) : 0;
}

result<root_dir> root_dir::open(const std::string &path) {
  const char *p = path.empty() ? "/" : path.c_str();
  if (int err = injected_fault(file_access::open_root, p))
    return os_error(err, "cannot open sysfs root '" + path + "'");
  int fd = ::open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return os_error(errno, "cannot open sysfs root '" + path + "'");
  return root_dir(fd);
}

root_dir::~root_dir() {
  if (fd_ >= 0) ::close(fd_);
  if (link_dir_fd_ >= 0) ::close(link_dir_fd_);
}

int root_dir::open_at(const std::string &rel, int flags) const {
  const char *p = rel.empty() ? "." : rel.c_str();
  if (!openat2_unavailable.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, fd_, p, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != ENOSYS && errno != EPERM) return -errno;
    openat2_unavailable.store(true, std::memory_order_relaxed);
  }
  int fd = ::openat(fd_, p, flags | O_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

result<std::string> root_dir::read(const std::string &rel, std::size_t limit, bool truncate) const {
  if (int err = injected_fault(file_access::open_file, rel.c_str())) return os_error(err, "cannot open");
  int fd = open_at(rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return os_error(-fd, "cannot open");
  // procfs and cgroupfs report size 0 and may end a read short of their end (a seq_file of
  // several records, /proc/cpuinfo or cgroup.procs, stops at the record that does not fit its
  // page): their files are stat-ed and read to EOF. A sysfs attribute (one value, at most a
  // page) or a captured tree's file gives all it has in one read.
  const bool to_eof = rel.compare(0, 5, "proc/") == 0 || rel.compare(0, 14, "sys/fs/cgroup/") == 0;
  return read_regular_file(fd, rel.c_str(), limit, truncate, to_eof ? stat_first::yes : stat_first::when_unsure);
}

result<std::string> read_regular_file(int fd, const char *path, std::size_t limit, bool truncate, stat_first when) {
  fd_guard guard{fd};
  // A file reporting at most a page that gives less than was asked has been read whole: a sysfs
  // attribute (its text is at most a page and comes in one read) or a small file of a captured
  // tree. No read for the EOF then. procfs reports size 0: read until EOF.
  bool whole_in_one_read = false;
  bool stated = false;
  auto check_regular = [&]() -> std::optional<error> {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return os_error(errno, "cannot stat");
    if (!S_ISREG(st.st_mode)) return error{EINVAL, "not a regular file"};
    whole_in_one_read = st.st_size > 0 && st.st_size <= 4096;
    stated = true;
    return std::nullopt;
  };
  if (when == stat_first::yes) {
    if (auto e = check_regular()) return *e;
  } else {
    // No fstat while the first read is short of the buffer and gives something: that read is
    // the whole file. A FIFO (empty or EAGAIN, being non-blocking) or a device (fills the
    // buffer) is told apart by the fstat its first read then asks for.
    whole_in_one_read = true;
  }
  std::string out;
  out.resize(limit + 1 < 4096 ? limit + 1 : 4096);
  std::size_t used = 0;
  while (true) {
    if (used == out.size()) {
      if (out.size() > limit) break;
      out.resize(out.size() * 2 > limit + 1 ? limit + 1 : out.size() * 2);
    }
    const int injected = injected_fault(file_access::read_file, path);
    if (injected) errno = injected;
    ssize_t n = injected ? -1 : ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (!stated)
        if (auto e = check_regular()) return *e;
      return os_error(err, "read failed");
    }
    const std::size_t asked = out.size() - used;
    if (!stated && (n == 0 || static_cast<std::size_t>(n) == asked)) {
      if (auto e = check_regular()) return *e;
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
    if (whole_in_one_read && static_cast<std::size_t>(n) < asked) break;
  }
  if (used > limit) {
    if (!truncate) return error{EFBIG, "file is larger than " + std::to_string(limit) + " bytes"};
    used = limit;
  }
  out.resize(used);
  return out;
}

result<std::vector<std::string>> root_dir::list(const std::string &rel, std::size_t limit) const {
  if (int err = injected_fault(file_access::list_dir, rel.c_str())) return os_error(err, "cannot open directory");
  int fd = open_at(rel, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return os_error(-fd, "cannot open directory");
  fd_guard guard{fd};
  std::vector<std::string> names;
  alignas(8) char buf[8192];
  while (true) {
    long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "cannot list directory");
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      unsigned short reclen = 0;
      std::memcpy(&reclen, buf + off + dirent_reclen_offset, sizeof reclen);
      const char *name = buf + off + dirent_name_offset;
      off += reclen;
      if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
      if (names.size() >= limit) return error{E2BIG, "directory has more than " + std::to_string(limit) + " entries"};
      names.emplace_back(name);
    }
  }
  return names;
}

result<std::string> root_dir::read_link(const std::string &rel) const {
  auto slash = rel.rfind('/');
  std::string dir = slash == std::string::npos ? std::string() : rel.substr(0, slash);
  std::string base = slash == std::string::npos ? rel : rel.substr(slash + 1);
  if (int err = injected_fault(file_access::read_link, rel.c_str())) return os_error(err, "cannot read link");
  // The directory stays open for the next link in it (the links of sys/bus/dax/devices are read
  // one after the other): two system calls fewer per link.
  if (link_dir_fd_ < 0 || link_dir_ != dir) {
    if (link_dir_fd_ >= 0) ::close(link_dir_fd_);
    link_dir_fd_ = -1;
    int dfd = open_at(dir, O_PATH | O_DIRECTORY);
    if (dfd < 0) return os_error(-dfd, "cannot open directory");
    link_dir_fd_ = dfd;
    link_dir_ = dir;
  }
  char buf[4096];
  ssize_t n = ::readlinkat(link_dir_fd_, base.c_str(), buf, sizeof buf);
  if (n < 0) return os_error(errno, "cannot read link");
  if (static_cast<std::size_t>(n) >= sizeof buf) return error{ENAMETOOLONG, "link target is too long"};
  return std::string(buf, static_cast<std::size_t>(n));
}

result<bool> root_dir::check_path(const std::string &rel, int flags, const char *what) const {
  int fd = -injected_fault(file_access::check_path, rel.c_str());
  if (fd == 0) fd = open_at(rel, flags);
  if (fd == -ENOENT || fd == -ENOTDIR) return false;
  if (fd < 0) return os_error(-fd, what);
  ::close(fd);
  return true;
}

result<bool> root_dir::is_directory(const std::string &rel) const {
  return check_path(rel, O_PATH | O_DIRECTORY, "cannot open directory");
}

std::string join_lexically(std::string_view dir, std::string_view target) {
  std::vector<std::string_view> parts;
  auto push = [&parts](std::string_view path) {
    while (!path.empty()) {
      auto slash = path.find('/');
      std::string_view part = path.substr(0, slash);
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!part.empty() && part != ".") {
        parts.push_back(part);
      }
      if (slash == std::string_view::npos) break;
      path.remove_prefix(slash + 1);
    }
  };
  if (target.empty() || target.front() != '/') push(dir);
  push(target);
  std::string out;
  for (auto p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out;
}

}  // namespace hetmem::sysfs::detail

namespace hetmem::sysfs {

result<std::string> read_text_file(const std::string &path, std::size_t limit, bool not_procfs) noexcept {
  try {
    const int injected = detail::injected_fault(detail::file_access::open_file, path.c_str());
    const int fd = injected ? -1 : ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      const int err = injected ? injected : errno;
      return error{err, path + ": " + detail::errno_text(err)};
    }
    auto r = detail::read_regular_file(fd, path.c_str(), limit, false,
                                       not_procfs ? detail::stat_first::when_unsure : detail::stat_first::yes);
    if (!r) return error{r.error().code, path + ": " + r.error().message};
    return r;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, path + ": out of memory"};
  }
}

}  // namespace hetmem::sysfs
