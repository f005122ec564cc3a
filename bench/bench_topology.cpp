// bench_topology — how long does seeing the memory cost? Target: loading and classifying the
// largest fixture in under 2 ms, so that the preload library can afford it at start-up.
//
// Runs side by side, in one process, on the same trees:
//   hetmem  read_snapshot() + classify()        (what `hetmem topo` does)
//   preload the same with read_scope::placement (what the preload library does at start-up)
//   hwloc   hwloc_topology_init/load/destroy    (HWLOC_FSROOT = the same tree)
//   libnuma node sizes + distance matrix         (live system only: libnuma cannot read a tree)
// and prints the median and the ratio to hetmem. Usage:
//   hetmem_bench_topology [--quick] [--json FILE] [FIXTURES_DIR]
// --json FILE writes every median (schema hetmem.bench.topology/1).
#include <hwloc.h>
#include <numa.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"

namespace {

double median_us(const std::function<void()> &fn, int reps) {
  std::vector<double> t;
  fn();  // warm the page cache and the dentry cache
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    fn();
    auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void hetmem_load(const std::string &root, hetmem::sysfs::read_scope scope = hetmem::sysfs::read_scope::everything) {
  auto snap = hetmem::sysfs::read_snapshot({root, scope});
  if (!snap) std::abort();
  auto topo = hetmem::classify(std::move(snap).value());
  if (!topo || topo->nodes.empty()) std::abort();
}

void hwloc_load(const std::string &root) {
  if (root != "/") {
    setenv("HWLOC_FSROOT", root.c_str(), 1);
    setenv("HWLOC_COMPONENTS", "-x86", 1);  // the host's CPUID does not belong to the tree
  } else {
    unsetenv("HWLOC_FSROOT");
    unsetenv("HWLOC_COMPONENTS");
  }
  hwloc_topology_t t;
  hwloc_topology_init(&t);
  hwloc_topology_set_flags(t, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
  if (hwloc_topology_load(t) != 0) std::abort();
  hwloc_topology_destroy(t);
}

void libnuma_load() {
  int max = numa_max_node();
  long long sum = 0;
  for (int i = 0; i <= max; ++i) {
    long long free_b = 0;
    sum += numa_node_size64(i, &free_b);
    for (int j = 0; j <= max; ++j) sum += numa_distance(i, j);
  }
  if (sum < 0) std::abort();
}

}  // namespace

int main(int argc, char **argv) try {
  bool quick = false;
  std::string fixtures, json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--json" && i + 1 < argc)
      json_path = argv[++i];
    else
      fixtures = a;
  }
  const int reps = quick ? 5 : 200;
  constexpr auto placement = hetmem::sysfs::read_scope::placement;
  nlohmann::ordered_json trees = nlohmann::ordered_json::array();
  std::printf("%-34s %11s %11s %11s %11s %9s %9s\n", "tree", "hetmem us", "preload us", "hwloc us", "libnuma us",
              "hwloc/x", "target");
  double worst = 0;
  std::string worst_name;
  auto row = [&](const std::string &name, const std::string &root, double l) {
    double h = median_us([&] { hetmem_load(root); }, reps);
    double p = median_us([&] { hetmem_load(root, placement); }, reps);
    double w = median_us([&] { hwloc_load(root); }, quick ? 3 : 20);
    char libnuma[32] = "-";
    if (l >= 0) std::snprintf(libnuma, sizeof libnuma, "%.1f", l);
    std::printf("%-34s %11.1f %11.1f %11.1f %11s %8.1fx %9s\n", name.c_str(), h, p, w, libnuma, w / h,
                h < 2000 ? "ok" : "MISSED");
    trees.push_back({{"tree", name},
                     {"hetmem_us", h},
                     {"preload_us", p},
                     {"hwloc_us", w},
                     {"libnuma_us", l >= 0 ? nlohmann::ordered_json(l) : nlohmann::ordered_json(nullptr)}});
    return h;
  };
  if (!fixtures.empty() && std::filesystem::is_directory(fixtures)) {
    std::vector<std::string> names;
    for (const auto &e : std::filesystem::directory_iterator(fixtures))
      if (e.is_directory()) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto &n : names) {
      double h = row(n, fixtures + "/" + n, -1);
      if (h > worst) {
        worst = h;
        worst_name = n;
      }
    }
  } else {
    std::printf("(no fixtures directory given or found: only the live system is measured)\n");
  }
  row("(this machine)", "/", numa_available() >= 0 ? median_us(libnuma_load, reps) : -1);
  if (!worst_name.empty())
    std::printf("\nslowest fixture: %s, %.1f us median (target < 2000 us): %s\n", worst_name.c_str(), worst,
                worst < 2000 ? "met" : "MISSED");
  std::printf(
      "hwloc/x = hwloc's time / hetmem's time (hwloc builds a full CPU+cache+IO tree; hetmem reads only memory "
      "facts); preload = the lighter read of a program's start-up (no hugepage pools, kernel knobs, access0 "
      "where access1 decides)\n");
  if (!json_path.empty()) {
    nlohmann::ordered_json json = {
        {"schema", "hetmem.bench.topology/1"}, {"reps", reps}, {"quick", quick}, {"trees", trees}};
    std::FILE *f = std::fopen(json_path.c_str(), "w");
    if (!f || std::fputs((json.dump(1) + "\n").c_str(), f) < 0 || std::fclose(f) != 0) {
      std::fprintf(stderr, "hetmem_bench_topology: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::printf("results written to %s\n", json_path.c_str());
  }
  return 0;
} catch (const std::exception &e) {  // out of memory, or a JSON value the library refused
  std::fprintf(stderr, "hetmem_bench_topology: %s\n", e.what());
  return 2;
}
