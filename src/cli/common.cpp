// common.cpp — file reading shared by the subcommands that look at /proc and /sys directly.
#include "common.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "hetmem/format.hpp"

namespace hetmem::cli {

std::string under_root(const std::string &root, const std::string &path) {
  if (root.empty() || root == "/") return path.starts_with('/') ? path : "/" + path;
  return root + (path.starts_with('/') ? "" : "/") + path;
}

result<std::string> read_text_file(const std::string &path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return error{errno, path + ": " + std::strerror(errno)};
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return error{e, path + ": " + std::strerror(e)};
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > limit) {
      ::close(fd);
      return error{EFBIG, path + ": larger than " + format_bytes(limit) + "; not read"};
    }
  }
  ::close(fd);
  return out;
}

}  // namespace hetmem::cli
