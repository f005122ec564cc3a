// common.cpp — helpers shared by the subcommands: paths below a captured root, tables, memory tiers.
#include "common.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace hetmem::cli {

std::string under_root(const std::string &root, const std::string &path) {
  if (root.empty() || root == "/") return path.starts_with('/') ? path : "/" + path;
  return root + (path.starts_with('/') ? "" : "/") + path;
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

std::string describe_memory_tiers(const sysfs::snapshot &s) {
  std::string tiers;
  for (const auto &mt : s.memory_tiers)
    tiers += fmt::format("{}tier{}: {} (abstract distance {}-{}{})", tiers.empty() ? "" : ", ", mt.id,
                         mt.nodes.to_string(), mt.first_abstract_distance(), mt.last_abstract_distance(),
                         mt.first_abstract_distance() <= sysfs::memory_tier_dram_distance &&
                                 sysfs::memory_tier_dram_distance <= mt.last_abstract_distance()
                             ? ", DRAM's default"
                             : "");
  return tiers.empty() ? "none" : tiers;
}

}  // namespace hetmem::cli
