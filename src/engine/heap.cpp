// heap.cpp — tier selection from the topology, and heaps on tiers.
#include "hetmem/heap.hpp"

#include <algorithm>
#include <cerrno>
#include <map>

#include "hetmem/detail/tier_arena.hpp"
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
      node_set ns;
      for (auto n : g.nodes) ns.insert(n);
      return make_tier(std::string(to_string(kind)) + " (nodes " + ns.to_string() + ")", kind, g.nodes);
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
  node_set ns;
  for (auto n : g.nodes) ns.insert(n);
  return make_tier("rank " + std::to_string(rank) + " for node " + std::to_string(v->node) + " (" +
                       std::string(to_string(g.kind)) + ", nodes " + ns.to_string() + ")",
                   g.kind, g.nodes);
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
  return make_tier("largest: " + std::string(to_string(best->first)) + ", " + format_bytes(best->second.first),
                   best->first, best->second.second);
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
  return make_tier("nodes " + nodes.to_string(), kind, nodes.to_vector());
}

heap::heap(tier t, std::unique_ptr<detail::tier_arena> arena) : tier_(std::move(t)), arena_(std::move(arena)) {}
heap::~heap() = default;

result<std::unique_ptr<heap>> heap::create(const tier &t) {
  auto arena = detail::tier_arena::create(t.where);
  if (!arena) return error{arena.error().code, "heap on " + t.name + ": " + arena.error().message};
  std::unique_ptr<heap> h(new (std::nothrow) heap(t, std::move(arena).value()));
  if (!h) return error{ENOMEM, "out of memory"};
  return h;
}

void *heap::allocate(std::size_t bytes, std::size_t alignment) noexcept { return arena_->allocate(bytes, alignment); }

result<void *> heap::try_allocate(std::size_t bytes, std::size_t alignment) {
  void *p = arena_->allocate(bytes, alignment);
  if (p) return p;
  int err = errno;
  std::string why = arena_->last_error();
  return error{err ? err : ENOMEM, "cannot allocate " + std::to_string(bytes) + " bytes on " + tier_.name +
                                       (why.empty() ? std::string(": out of memory") : ": " + why)};
}

void heap::deallocate(void *p) noexcept { arena_->deallocate(p); }

void *memory_resource::do_allocate(std::size_t bytes, std::size_t alignment) {
  void *p = heap_->allocate(bytes, alignment);
  if (!p) throw std::bad_alloc();
  return p;
}

void memory_resource::do_deallocate(void *p, std::size_t, std::size_t) { heap_->deallocate(p); }

bool memory_resource::do_is_equal(const std::pmr::memory_resource &other) const noexcept {
  const auto *o = dynamic_cast<const memory_resource *>(&other);
  return o && o->heap_ == heap_;
}

}  // namespace hetmem
