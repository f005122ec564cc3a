#include "hetmem/format.hpp"

#include <cstdio>

namespace hetmem {

std::string format_bytes(std::uint64_t bytes) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return std::to_string(bytes) + " B";
  char buf[48];
  if (v >= 100)
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string format_bandwidth_mbps(std::uint64_t mbps) {
  if (mbps < 1000) return std::to_string(mbps) + " MB/s";
  double g = static_cast<double>(mbps) / 1000.0;
  char buf[48];
  if (g >= 100)
    std::snprintf(buf, sizeof buf, "%.0f GB/s", g);
  else
    std::snprintf(buf, sizeof buf, "%.1f GB/s", g);
  return buf;
}

std::string format_ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, r >= 10 ? "%.0fx" : "%.1fx", r);
  return buf;
}

}  // namespace hetmem
