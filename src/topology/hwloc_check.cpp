#include "hetmem/hwloc_check.hpp"

#include <hwloc.h>

#include <cstdlib>

namespace hetmem {
namespace {

// hwloc subtype -> kind; nullopt when the subtype says nothing about the kind.
std::optional<memory_kind> kind_of_subtype(const std::string &s) {
  if (s == "DRAM") return memory_kind::ddr;
  if (s == "HBM" || s == "MCDRAM") return memory_kind::hbm;
  if (s == "NVM") return memory_kind::pmem;
  if (s == "CXL-DRAM" || s == "CXL-NVM") return memory_kind::cxl;
  if (s == "GPUMemory") return memory_kind::device;
  return std::nullopt;  // "SPM" (specific-purpose) and anything new
}

class env_guard {
 public:
  env_guard(const char *name, const std::string &value) : name_(name) {
    if (const char *old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~env_guard() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  env_guard(const env_guard &) = delete;
  env_guard &operator=(const env_guard &) = delete;

 private:
  const char *name_;
  std::optional<std::string> old_;
};

}  // namespace

result<hwloc_report> hwloc_view(const std::string &root) {
  hwloc_report report;
  unsigned v = hwloc_get_api_version();
  report.hwloc_version =
      std::to_string(v >> 16) + "." + std::to_string((v >> 8) & 0xff) + "." + std::to_string(v & 0xff);
  // For a captured tree, hwloc must not mix in the host's CPUID (its x86 backend ignores the root).
  std::optional<env_guard> fsroot, components;
  if (!root.empty() && root != "/") {
    fsroot.emplace("HWLOC_FSROOT", root);
    components.emplace("HWLOC_COMPONENTS", "-x86");
  }
  env_guard quiet("HWLOC_HIDE_ERRORS", "2");
  hwloc_topology_t topo = nullptr;
  if (hwloc_topology_init(&topo) != 0) return error{errno ? errno : ENOMEM, "hwloc_topology_init failed"};
  hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
  if (hwloc_topology_load(topo) != 0) {
    int err = errno ? errno : EINVAL;
    hwloc_topology_destroy(topo);
    return error{err, "hwloc could not load the topology of '" + root + "'"};
  }
  int depth = hwloc_get_type_depth(topo, HWLOC_OBJ_NUMANODE);
  unsigned count = depth == HWLOC_TYPE_DEPTH_UNKNOWN ? 0 : hwloc_get_nbobjs_by_depth(topo, depth);
  for (unsigned i = 0; i < count; ++i) {
    hwloc_obj_t o = hwloc_get_obj_by_depth(topo, depth, i);
    report.nodes.push_back({o->os_index, o->subtype ? o->subtype : "", o->attr ? o->attr->numanode.local_memory : 0});
  }
  hwloc_topology_destroy(topo);
  return report;
}

void crosscheck(topology &t, const hwloc_report &report) {
  // hwloc does not list every memory node (it hides GPU memory nodes, and on a gathered
  // tree it lacks CPU files it needs): compare the nodes it lists, and say which it does not.
  std::string missing;
  for (const auto &n : t.nodes) {
    if (!n.has_memory) continue;
    bool found = false;
    for (const auto &hn : report.nodes) found = found || hn.os_index == n.id;
    if (!found) missing += (missing.empty() ? "" : ",") + std::to_string(n.id);
  }
  if (!missing.empty())
    t.notes.push_back("hwloc " + report.hwloc_version + " does not list memory node(s) " + missing +
                      ": no hwloc cross-check for them");
  for (auto &n : t.nodes) {
    if (!n.has_memory) continue;
    const hwloc_node *h = nullptr;
    for (const auto &hn : report.nodes)
      if (hn.os_index == n.id) h = &hn;
    if (!h) continue;  // not a memory node for hwloc either (checked above)
    if (h->subtype.empty()) {
      // hwloc leaves plain DRAM (and 2LM far memory) without a subtype: not a verdict.
      n.reasons.push_back({evidence_source::hwloc, "hwloc: no subtype (plain memory)"});
      continue;
    }
    auto k = kind_of_subtype(h->subtype);
    n.reasons.push_back({evidence_source::hwloc, "hwloc: subtype " + h->subtype});
    if (k && *k != n.kind)
      n.disagreements.push_back("hwloc says " + h->subtype + ", hetmem says " + std::string(to_string(n.kind)));
  }
}

}  // namespace hetmem
