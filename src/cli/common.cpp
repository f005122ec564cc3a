// common.cpp — file reading shared by the subcommands that look at /proc and /sys directly.
#include "common.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
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

std::string render_table(const std::vector<std::vector<std::string>> &rows, std::size_t right_from) {
  std::vector<std::size_t> width;
  for (const auto &r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto &r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::string pad(width[i] - r[i].size(), ' ');
      line += i >= right_from ? pad + r[i] : r[i] + pad;
      if (i + 1 < r.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace hetmem::cli
