// tier.cpp — choosing tiers from the topology.
#include "hetmem/tier.hpp"

#include <algorithm>
#include <cerrno>
#include <map>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/format.hpp"

namespace hetmem {
namespace {

const initiator_view *view_for(const topology &t, const initiator_view *from) {
  if (from) return from;
  if (const auto *v = t.initiator_for_calling_thread()) return v;
  return t.initiators.empty() ? nullptr : &t.initiators.front();
}

tier make_tier(std::string name, memory_kind kind, const std::vector<std::uint32_t> &nodes) {
  tier out;
  out.name = std::move(name);
  out.kind = kind;
  out.where.mode = policy_mode::bind;
  for (auto n : nodes) out.where.nodes.insert(n);
  return out;
}

std::string group_name(const tier_group &g) {
  node_set ns;
  for (auto n : g.nodes) ns.insert(n);
  return std::string(to_string(g.kind)) + " (nodes " + ns.to_string() + ")";
}

// The other groups of `v`, in its rank order (best first), without those overlapping `taken`;
// device memory is never a fallback (it belongs to its device).
std::vector<tier> following(const initiator_view &v, const node_set &taken) {
  std::vector<tier> out;
  for (const auto &g : v.tiers) {
    if (g.kind == memory_kind::device) continue;
    if (std::any_of(g.nodes.begin(), g.nodes.end(), [&](auto n) { return taken.contains(n); })) continue;
    out.push_back(make_tier(group_name(g), g.kind, g.nodes));
  }
  return out;
}

std::string kinds_present(const topology &t) {
  std::string s;
  for (const auto &n : t.nodes)
    if (n.has_memory) s += (s.empty() ? "" : ", ") + std::to_string(n.id) + "=" + std::string(to_string(n.kind));
  return s.empty() ? "no memory nodes" : "nodes " + s;
}

}  // namespace

result<tier> tier_by_kind(const topology &t, memory_kind kind, const initiator_view *from) {
  const initiator_view *v = view_for(t, from);
  if (!v) return error{ENOENT, "no initiator (no node lists CPUs) to rank tiers for"};
  for (const auto &g : v->tiers)
    if (g.kind == kind) {
      tier out = make_tier(group_name(g), kind, g.nodes);
      out.next = following(*v, out.where.nodes);
      return out;
    }
  return error{ENOENT, "no " + std::string(to_string(kind)) + " memory on this machine (" + kinds_present(t) + ")"};
}

result<tier> tier_by_rank(const topology &t, std::uint32_t rank, const initiator_view *from) {
  const initiator_view *v = view_for(t, from);
  if (!v) return error{ENOENT, "no initiator (no node lists CPUs) to rank tiers for"};
  if (rank >= v->tiers.size())
    return error{ERANGE, "rank " + std::to_string(rank) + " does not exist: node " + std::to_string(v->node) + " has " +
                             std::to_string(v->tiers.size()) + " tier(s)"};
  const auto &g = v->tiers[rank];
  tier out = make_tier("rank " + std::to_string(rank) + " for node " + std::to_string(v->node) + ": " + group_name(g),
                       g.kind, g.nodes);
  out.next = following(*v, out.where.nodes);
  return out;
}

result<tier> fastest_tier(const topology &t) { return tier_by_rank(t, 0); }

tier softened(tier t) {
  if (t.file || t.where.mode != policy_mode::bind) return t;
  if (t.where.nodes.count() == 1) {
    t.where.mode = policy_mode::preferred;
  } else {
    auto k = probe_kernel_policy_support();
    if (k && k->preferred_many) t.where.mode = policy_mode::preferred_many;
  }
  return t;
}

result<tier> largest_tier(const topology &t) {
  std::map<memory_kind, std::pair<std::uint64_t, std::vector<std::uint32_t>>> by_kind;
  for (const auto &n : t.nodes) {
    if (!n.has_memory || n.kind == memory_kind::device || !n.allowed) continue;
    auto &e = by_kind[n.kind];
    e.first += n.capacity_bytes.value_or(0);
    e.second.push_back(n.id);
  }
  if (by_kind.empty()) return error{ENOENT, "no allocatable memory node (" + kinds_present(t) + ")"};
  auto best = std::max_element(by_kind.begin(), by_kind.end(),
                               [](const auto &a, const auto &b) { return a.second.first < b.second.first; });
  tier out = make_tier("largest: " + std::string(to_string(best->first)) + ", " + format_bytes(best->second.first),
                       best->first, best->second.second);
  if (const auto *v = view_for(t, nullptr)) out.next = following(*v, out.where.nodes);
  return out;
}

result<tier> tier_of_nodes(const topology &t, const node_set &nodes) {
  if (nodes.empty()) return error{EINVAL, "tier_of_nodes: no nodes given"};
  memory_kind kind = memory_kind::unknown;
  bool first = true;
  for (auto id : nodes.to_vector()) {
    const node_info *n = t.find(id);
    if (!n || !n->has_memory)
      return error{EINVAL,
                   "node " + std::to_string(id) + " is not a memory node of this machine (" + kinds_present(t) + ")"};
    if (first)
      kind = n->kind;
    else if (kind != n->kind)
      kind = memory_kind::unknown;  // mixed kinds
    first = false;
  }
  tier out = make_tier("nodes " + nodes.to_string(), kind, nodes.to_vector());
  if (const auto *v = view_for(t, nullptr)) out.next = following(*v, nodes);
  return out;
}

result<tier> file_tier(const std::string &path, std::uint64_t max_bytes) {
  if (max_bytes == 0) return error{EINVAL, "file tier on " + path + ": max_bytes is 0"};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return error{err, "file tier on " + path + ": " + detail::error_text(err)};
  }
  const bool device = S_ISCHR(st.st_mode);
  if (!device && !S_ISDIR(st.st_mode))
    return error{EINVAL, "file tier on " + path + ": neither a devdax device nor a directory"};
  if (device) {
    char root[4096], subsystem[64];
    detail::copy_sysfs_root(root, sizeof root);
    if (!detail::is_devdax_device(root, major(st.st_rdev), minor(st.st_rdev), subsystem, sizeof subsystem))
      return error{ENODEV,
                   "file tier on " + path + ": a character device that is not devdax (" +
                       (subsystem[0] ? "its subsystem is '" + std::string(subsystem) + "'"
                                     : "no /sys/dev/char/" + std::to_string(major(st.st_rdev)) + ":" +
                                           std::to_string(minor(st.st_rdev)) + "/subsystem") +
                       "); a file tier takes a devdax device (/dev/daxX.Y) or a directory on a DAX file system"};
  }
  if (::access(path.c_str(), R_OK | W_OK | (device ? 0 : X_OK)) != 0) {
    const int err = errno;
    return error{err, "file tier on " + path + ": " + detail::error_text(err)};
  }
  tier out;
  out.kind = memory_kind::pmem;
  out.where.mode = policy_mode::default_policy;
  out.file = file_backing{path, max_bytes};
  out.name = std::string("PMEM ") + (device ? "devdax " : "file in ") + path + " (max " + format_bytes(max_bytes) + ")";
  return out;
}

}  // namespace hetmem
