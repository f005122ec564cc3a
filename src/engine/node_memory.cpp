#include "hetmem/detail/node_memory.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "hetmem/sysfs/environment.hpp"
#include "hetmem/sysfs/fault_injection.hpp"

namespace hetmem::detail {
namespace {

std::uint64_t field_kb(const char *text, const char *name) noexcept {
  const char *p = std::strstr(text, name);
  if (!p) return 0;
  p += std::strlen(name);
  while (*p == ' ' || *p == '\t') ++p;
  std::uint64_t v = 0;
  while (*p >= '0' && *p <= '9') {
    if (v > (UINT64_MAX - 9) / 10) return UINT64_MAX / 1024;
    v = v * 10 + static_cast<std::uint64_t>(*p++ - '0');
  }
  return v > UINT64_MAX / 1024 ? UINT64_MAX : v * 1024;
}

thread_local char error_buffer[256];

}  // namespace

std::size_t read_text(const char *path, char *buf, std::size_t len) noexcept {
  if (len == 0) return 0;
  buf[0] = '\0';
  using sysfs::detail::file_access;
  using sysfs::detail::injected_fault;
  if (int err = injected_fault(file_access::open_file, path)) {
    errno = err;
    return 0;
  }
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t used = 0;
  while (used + 1 < len) {
    const int injected = injected_fault(file_access::read_file, path);
    if (injected) errno = injected;
    const ssize_t r = injected ? -1 : ::read(fd, buf + used, len - 1 - used);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {  // a failed read loses the whole file: half a meminfo would read as a full node
      const int err = errno;
      ::close(fd);
      buf[0] = '\0';
      errno = err;
      return 0;
    }
    if (r == 0) break;
    used += static_cast<std::size_t>(r);
  }
  ::close(fd);
  buf[used] = '\0';
  return used;
}

text_piece::text_piece(unsigned v) noexcept {
  const auto r = std::to_chars(digits, digits + sizeof digits, v);
  text = std::string_view(digits, static_cast<std::size_t>(r.ptr - digits));
}

bool join_text(char *buf, std::size_t len, std::initializer_list<text_piece> pieces) noexcept {
  if (len == 0) return false;
  std::size_t used = 0;
  for (const text_piece &p : pieces) {
    if (p.text.size() >= len - used) {
      buf[0] = '\0';
      return false;
    }
    std::memcpy(buf + used, p.text.data(), p.text.size());
    used += p.text.size();
  }
  buf[used] = '\0';
  return true;
}

bool read_node_memory(const char *root, unsigned node, node_memory *out) noexcept {
  char path[512];
  if (!join_text(path, sizeof path, {root, "/sys/devices/system/node/node", node, "/meminfo"})) {
    errno = ENAMETOOLONG;
    return false;
  }
  char text[8192];
  if (read_text(path, text, sizeof text) == 0) return false;
  if (!std::strstr(text, "MemTotal:")) {
    errno = EINVAL;
    return false;
  }
  out->total = field_kb(text, "MemTotal:");
  out->free = field_kb(text, "MemFree:");
  out->available = out->free + field_kb(text, "Inactive(file):") + field_kb(text, "SReclaimable:");
  if (out->available > out->total) out->available = out->total;
  return true;
}

void copy_sysfs_root(char *buf, std::size_t len) noexcept {
  buf[0] = '\0';
  const char *r = hetmem::sysfs::environment("HETMEM_SYSFS_ROOT");
  if (r && std::strcmp(r, "/") != 0) (void)join_text(buf, len, {r});  // "" when it does not fit
}

bool is_devdax_device(const char *root, unsigned major, unsigned minor, char *subsystem, std::size_t len) noexcept {
  if (len > 0) subsystem[0] = '\0';
  char path[512];
  if (!join_text(path, sizeof path, {root, "/sys/dev/char/", major, ":", minor, "/subsystem"})) return false;
  char target[512];
  const ssize_t n = ::readlink(path, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  const char *name = std::strrchr(target, '/');
  name = name ? name + 1 : target;
  (void)join_text(subsystem, len, {name});
  return std::strcmp(name, "dax") == 0;
}

const char *thread_error() noexcept { return error_buffer; }

void set_thread_error(const char *fmt, ...) noexcept {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(error_buffer, sizeof error_buffer, fmt, ap);  // NOLINT(clang-analyzer-valist.Uninitialized)
  va_end(ap);
}

const char *format_size(char *buf, std::size_t len, std::uint64_t bytes) noexcept {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  unsigned u = 0;
  while (v >= 1024.0 && u + 1 < sizeof units / sizeof *units) {
    v /= 1024.0;
    ++u;
  }
  if (u == 0)
    std::snprintf(buf, len, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, len, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace hetmem::detail
