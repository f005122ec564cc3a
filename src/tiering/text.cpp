// text.cpp — see text.hpp.
#include "text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/placement.hpp"

namespace hetmem::tiering_detail {

bool read_text(const std::string &path, std::string &out) {
  char buf[4096];
  errno = 0;
  const std::size_t n = detail::read_text(path.c_str(), buf, sizeof buf);
  if (n == 0 && errno != 0) return false;
  out.assign(buf, n);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return true;
}

bool read_u64(const std::string &path, std::uint64_t &v) {
  std::string s;
  if (!read_text(path, s) || s.empty()) return false;
  char *end = nullptr;
  errno = 0;
  v = std::strtoull(s.c_str(), &end, 10);
  return errno == 0 && end != s.c_str();
}

result<void> write_file(const std::string &path, const std::string &value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return error{err, "cannot open " + path + " for writing: " + detail::error_text(err)};
  }
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int err = n < 0 ? errno : EIO;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    return error{err, "writing '" + value + "' to " + path + " failed: " + detail::error_text(err)};
  return {};
}

}  // namespace hetmem::tiering_detail
