// tree.hpp — builds throwaway sysfs/procfs trees for tests, and finds the shared fixtures.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>

namespace hetmem::test {

class temp_tree {
 public:
  temp_tree() {
    std::random_device rd;
    root_ = std::filesystem::temp_directory_path() /
            ("hetmem-tree-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(root_);
  }
  ~temp_tree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  temp_tree(const temp_tree &) = delete;
  temp_tree &operator=(const temp_tree &) = delete;

  [[nodiscard]] std::string root() const { return root_.string(); }

  temp_tree &file(const std::string &rel, const std::string &content) {
    auto p = root_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return *this;
  }
  temp_tree &dir(const std::string &rel) {
    std::filesystem::create_directories(root_ / rel);
    return *this;
  }
  temp_tree &link(const std::string &rel, const std::string &target) {
    auto p = root_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::filesystem::create_symlink(target, p);
    return *this;
  }
  temp_tree &remove(const std::string &rel) {
    std::filesystem::remove(root_ / rel);
    return *this;
  }
  temp_tree &fifo(const std::string &rel) {
    auto p = root_ / rel;
    std::filesystem::create_directories(p.parent_path());
    ::mkfifo(p.c_str(), 0600);
    return *this;
  }

  // A NUMA node with memory (kB) and CPUs ("" for CPU-less) and a distance row.
  temp_tree &node(unsigned id, unsigned long long mem_kb, const std::string &cpus, const std::string &distance) {
    const std::string d = "sys/devices/system/node/node" + std::to_string(id);
    file(d + "/cpulist", cpus + "\n");
    file(d + "/meminfo", "Node " + std::to_string(id) + " MemTotal:       " + std::to_string(mem_kb) + " kB\nNode " +
                             std::to_string(id) + " MemFree:        " + std::to_string(mem_kb / 2) + " kB\n");
    file(d + "/distance", distance + "\n");
    return *this;
  }
  // HMAT access class Y of target node T, local to initiators (e.g. {0}).
  temp_tree &hmat(unsigned target, int cls, const std::string &initiator_nodes, unsigned lat, unsigned bw) {
    const std::string d =
        "sys/devices/system/node/node" + std::to_string(target) + "/access" + std::to_string(cls) + "/initiators";
    dir(d);
    std::string rest = initiator_nodes;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      link(d + "/node" + rest.substr(0, comma), "../../../node" + rest.substr(0, comma));
      if (comma == std::string::npos) break;
      rest = rest.substr(comma + 1);
    }
    file(d + "/read_latency", std::to_string(lat) + "\n");
    file(d + "/write_latency", std::to_string(lat) + "\n");
    file(d + "/read_bandwidth", std::to_string(bw) + "\n");
    file(d + "/write_bandwidth", std::to_string(bw) + "\n");
    return *this;
  }
  temp_tree &masks(const std::string &online, const std::string &has_cpu) {
    file("sys/devices/system/node/possible", online + "\n");
    file("sys/devices/system/node/online", online + "\n");
    file("sys/devices/system/node/has_cpu", has_cpu + "\n");
    file("sys/devices/system/node/has_memory", online + "\n");
    return *this;
  }

 private:
  std::filesystem::path root_;
};

// An initiator's tier order as "2 > 0 > 1,3" (nodes of one rank joined by commas).
template <class Topology>
std::string tier_order(const Topology &t, std::uint32_t initiator) {
  std::string s;
  for (const auto &g : t.initiator(initiator)->tiers) {
    s += s.empty() ? "" : " > ";
    for (std::size_t i = 0; i < g.nodes.size(); ++i) s += (i ? "," : "") + std::to_string(g.nodes[i]);
  }
  return s;
}

// The unpacked real-machine fixtures (../shared/fixtures/hwloc), or nullopt with the reason.
inline std::optional<std::string> fixtures_dir(std::string &why) {
  const char *env = std::getenv("HETMEM_TEST_FIXTURES");
  if (!env || !*env) {
    why = "HETMEM_TEST_FIXTURES is not set (run the tests through ctest)";
    return std::nullopt;
  }
  if (!std::filesystem::is_directory(env)) {
    why = std::string("fixtures not available: ") + env +
          " does not exist because ../shared/fixtures/hwloc was not found next to the repository";
    return std::nullopt;
  }
  return std::string(env);
}

}  // namespace hetmem::test
