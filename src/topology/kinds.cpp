// kinds.cpp — the names of memory kinds, confidences and evidence sources; node kind overrides
// (HETMEM_NODE_KINDS) parsed; the topology's lookups.
#include <sched.h>

#include <string>
#include <string_view>
#include <vector>

#include "hetmem/sysfs/parse.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

std::string_view to_string(memory_kind kind) noexcept {
  switch (kind) {
    case memory_kind::ddr:
      return "DDR";
    case memory_kind::hbm:
      return "HBM";
    case memory_kind::pmem:
      return "PMEM";
    case memory_kind::cxl:
      return "CXL";
    case memory_kind::device:
      return "device";
    case memory_kind::unknown:
      return "unknown";
    case memory_kind::none:
      return "none";
  }
  return "unknown";
}

std::optional<memory_kind> parse_memory_kind(std::string_view text) noexcept {
  std::string t;
  for (char c : text) t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "ddr" || t == "dram") return memory_kind::ddr;
  if (t == "hbm" || t == "mcdram") return memory_kind::hbm;
  if (t == "pmem" || t == "nvm" || t == "optane") return memory_kind::pmem;
  if (t == "cxl") return memory_kind::cxl;
  if (t == "device" || t == "gpu") return memory_kind::device;
  if (t == "unknown") return memory_kind::unknown;
  return std::nullopt;
}

std::string_view to_string(confidence c) noexcept {
  switch (c) {
    case confidence::high:
      return "high";
    case confidence::medium:
      return "medium";
    case confidence::low:
      return "low";
  }
  return "low";
}

std::string_view to_string(evidence_source s) noexcept {
  switch (s) {
    case evidence_source::user_override:
      return "override";
    case evidence_source::dax_kmem:
      return "dax";
    case evidence_source::probe:
      return "probe";
    case evidence_source::nvidia_numa:
      return "nvidia";
    case evidence_source::hmat_access1:
      return "hmat-access1";
    case evidence_source::hmat_access0:
      return "hmat-access0";
    case evidence_source::memory_side_cache:
      return "memory-side-cache";
    case evidence_source::memory_tiers:
      return "memory-tiers";
    case evidence_source::hwloc:
      return "hwloc";
    case evidence_source::slit:
      return "slit";
    case evidence_source::topology:
      return "topology";
    case evidence_source::cpu_model:
      return "cpu-model";
  }
  return "topology";
}

result<std::vector<kind_override>> parse_kind_overrides(std::string_view text) {
  std::vector<kind_override> out;
  std::size_t pos = 0;
  auto at = [&](std::size_t p) { return " (at offset " + std::to_string(p) + " of '" + std::string(text) + "')"; };
  if (text.size() > 4096) return error{E2BIG, "node kind overrides are longer than 4096 characters"};
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    std::string_view item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    item = sysfs::trim(item);
    if (!item.empty()) {
      auto eq = item.find('=');
      if (eq == std::string_view::npos) eq = item.find(':');
      if (eq == std::string_view::npos)
        return error{EINVAL, "node kind override '" + std::string(item) + "' is not NODE=KIND" + at(pos)};
      auto node = sysfs::parse_uint64(item.substr(0, eq));
      if (!node || *node > sysfs::max_node_id)
        return error{EINVAL, "'" + std::string(item.substr(0, eq)) + "' is not a node id (0-" +
                                 std::to_string(sysfs::max_node_id) + ")" + at(pos)};
      auto kind = parse_memory_kind(sysfs::trim(item.substr(eq + 1)));
      if (!kind)
        return error{EINVAL, "'" + std::string(item.substr(eq + 1)) +
                                 "' is not a memory kind (ddr, hbm, pmem, cxl, device, unknown)" + at(pos)};
      out.push_back({static_cast<std::uint32_t>(*node), *kind});
    }
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

const node_info *topology::find(std::uint32_t node) const noexcept {
  for (const auto &n : nodes)
    if (n.id == node) return &n;
  return nullptr;
}

const initiator_view *topology::initiator(std::uint32_t node) const noexcept {
  for (const auto &i : initiators)
    if (i.node == node) return &i;
  return nullptr;
}

const initiator_view *topology::initiator_for_cpu(std::uint32_t cpu) const noexcept {
  for (const auto &i : initiators)
    if (i.cpus.contains(cpu)) return &i;
  return nullptr;
}

const initiator_view *topology::initiator_for_calling_thread() const noexcept {
  if (root != "/") return nullptr;
  int cpu = sched_getcpu();
  if (cpu < 0) return nullptr;
  return initiator_for_cpu(static_cast<std::uint32_t>(cpu));
}

}  // namespace hetmem
