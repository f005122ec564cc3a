// hetmem_c.cpp — the C API over the C++ engine. Nothing here throws across the boundary.
#include "hetmem/hetmem.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/heap.hpp"
#include "hetmem/migrate.hpp"
#include "hetmem/reservation.hpp"

struct hetmem_heap {
  std::unique_ptr<hetmem::heap> h;
};
struct hetmem_reservation {
  std::unique_ptr<hetmem::reservation> r;
};

namespace {

using hetmem::memory_kind;

// A C enum may hold any int; loading an out-of-range value as the C++ enum is undefined, so
// values from callers are read as the int they are.
template <class E>
int raw(const E &e) noexcept {
  static_assert(sizeof(E) == sizeof(int));
  int v = 0;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// A C array of node ids as a set (empty for NULL).
hetmem::node_set nodes_of(const unsigned *nodes, size_t count) {
  hetmem::node_set ns;
  for (size_t i = 0; nodes && i < count; ++i) ns.insert(nodes[i]);
  return ns;
}

int fail(int err, const std::string &message) noexcept {
  hetmem::detail::set_thread_error("%s", message.c_str());
  return -(err ? err : EINVAL);
}

// The topology, read once. A failure is kept and reported to every caller.
const hetmem::result<hetmem::topology> &topo() {
  static const hetmem::result<hetmem::topology> t = hetmem::load_topology();
  return t;
}

memory_kind to_kind(int k) {
  switch (k) {
    case HETMEM_KIND_DDR:
      return memory_kind::ddr;
    case HETMEM_KIND_HBM:
      return memory_kind::hbm;
    case HETMEM_KIND_PMEM:
      return memory_kind::pmem;
    case HETMEM_KIND_CXL:
      return memory_kind::cxl;
    case HETMEM_KIND_DEVICE:
      return memory_kind::device;
    default:
      return memory_kind::unknown;
  }
}

hetmem_kind_t from_kind(memory_kind k) {
  switch (k) {
    case memory_kind::ddr:
      return HETMEM_KIND_DDR;
    case memory_kind::hbm:
      return HETMEM_KIND_HBM;
    case memory_kind::pmem:
      return HETMEM_KIND_PMEM;
    case memory_kind::cxl:
      return HETMEM_KIND_CXL;
    case memory_kind::device:
      return HETMEM_KIND_DEVICE;
    default:
      return HETMEM_KIND_UNKNOWN;
  }
}

hetmem::heap_options options_of(const hetmem_heap_options_t *o) {
  hetmem::heap_options out;
  if (o) {
    out.when_full = raw(o->when_full) == HETMEM_ON_FULL_NEXT_TIER ? hetmem::on_full::next_tier : hetmem::on_full::fail;
    out.fill_limit_percent = o->fill_limit_percent == 0 ? 100 : o->fill_limit_percent;
  }
  return out;
}

template <class Choose>
int create(Choose choose, const hetmem_heap_options_t *options, hetmem_heap_t **out) noexcept {
  if (!out) return fail(EINVAL, "hetmem_heap_create: out is NULL");
  *out = nullptr;
  try {
    const auto &t = topo();
    if (!t) return fail(t.error().code, "cannot read the topology: " + t.error().message);
    hetmem::result<hetmem::tier> tier = choose(*t);
    if (!tier) return fail(tier.error().code, tier.error().message);
    if (options && raw(options->when_full) != HETMEM_ON_FULL_FAIL &&
        raw(options->when_full) != HETMEM_ON_FULL_NEXT_TIER)
      return fail(EINVAL, "when_full must be HETMEM_ON_FULL_FAIL or HETMEM_ON_FULL_NEXT_TIER");
    if (options && (raw(options->huge_pages) < HETMEM_THP_DEFAULT || raw(options->huge_pages) > HETMEM_THP_ALWAYS))
      return fail(EINVAL, "huge_pages must be HETMEM_THP_DEFAULT, HETMEM_THP_NEVER or HETMEM_THP_ALWAYS");
    if (options && options->interleave) {
      tier->where.mode = hetmem::policy_mode::interleave;
      tier->next.clear();
    }
    const int thp = options ? raw(options->huge_pages) : HETMEM_THP_DEFAULT;
    if (thp == HETMEM_THP_NEVER) tier->where.thp = hetmem::huge_pages::never;
    if (thp == HETMEM_THP_ALWAYS) tier->where.thp = hetmem::huge_pages::always;
    if (options && options->interleave) tier->name += ", interleaved";
    if (thp == HETMEM_THP_ALWAYS) tier->name += ", huge pages";
    if (thp == HETMEM_THP_NEVER) tier->name += ", no huge pages";
    auto h = hetmem::heap::create(*tier, options_of(options));
    if (!h) return fail(h.error().code, h.error().message);
    *out = new hetmem_heap{std::move(h).value()};
    return 0;
  } catch (const std::bad_alloc &) {
    return fail(ENOMEM, "out of memory");
  } catch (...) {
    return fail(EINVAL, "unexpected error creating a heap");
  }
}

template <class Choose>
int migrate_to(Choose choose, int pid, const void *ptr, size_t len, const unsigned *from_nodes, size_t from_count,
               hetmem_migration_report_t *report) noexcept {
  if (report) *report = hetmem_migration_report_t{};
  if (pid < 0) return fail(EINVAL, "hetmem_migrate: pid " + std::to_string(pid) + " is not a process");
  if (from_count > 0 && !from_nodes) return fail(EINVAL, "hetmem_migrate: from_nodes is NULL");
  try {
    const auto &t = topo();
    if (!t) return fail(t.error().code, "cannot read the topology: " + t.error().message);
    hetmem::result<hetmem::tier> tier = choose(*t);
    if (!tier) return fail(tier.error().code, tier.error().message);
    hetmem::migration_options o;
    o.pid = pid;
    o.only_from = nodes_of(from_nodes, from_count);
    auto r = hetmem::migrate(ptr, len, *tier, o);
    if (!r) return fail(r.error().code, r.error().message);
    if (report) {
      report->pages = r->pages;
      report->not_present = r->not_present;
      report->already_there = r->already_there;
      report->not_selected = r->not_selected;
      report->moved = r->moved;
      report->busy = r->busy;
      report->no_memory = r->no_memory;
      report->shared = r->shared;
      report->other_failed = r->other_failed;
      report->first_error = r->first_error;
      report->seconds = r->seconds;
    }
    return 0;
  } catch (const std::bad_alloc &) {
    return fail(ENOMEM, "out of memory");
  } catch (...) {
    return fail(EINVAL, "unexpected error migrating pages");
  }
}

}  // namespace

extern "C" {

int hetmem_heap_create_kind(hetmem_kind_t kind, const hetmem_heap_options_t *options, hetmem_heap_t **out) {
  const int k = raw(kind);
  if (k < HETMEM_KIND_DDR || k > HETMEM_KIND_DEVICE)
    return fail(EINVAL, "hetmem_heap_create_kind: kind " + std::to_string(k) + " is not a kind");
  return create([&](const hetmem::topology &t) { return hetmem::tier_by_kind(t, to_kind(k)); }, options, out);
}

int hetmem_heap_create_rank(unsigned rank, const hetmem_heap_options_t *options, hetmem_heap_t **out) {
  return create([&](const hetmem::topology &t) { return hetmem::tier_by_rank(t, rank); }, options, out);
}

int hetmem_heap_create_largest(const hetmem_heap_options_t *options, hetmem_heap_t **out) {
  return create([&](const hetmem::topology &t) { return hetmem::largest_tier(t); }, options, out);
}

int hetmem_heap_create_nodes(const unsigned *nodes, size_t count, const hetmem_heap_options_t *options,
                             hetmem_heap_t **out) {
  if (!nodes || count == 0) return fail(EINVAL, "hetmem_heap_create_nodes: no nodes given");
  return create([&](const hetmem::topology &t) { return hetmem::tier_of_nodes(t, nodes_of(nodes, count)); }, options,
                out);
}

int hetmem_heap_create_file(const char *path, uint64_t max_bytes, const hetmem_heap_options_t *options,
                            hetmem_heap_t **out) {
  if (!path) return fail(EINVAL, "hetmem_heap_create_file: path is NULL");
  return create([&](const hetmem::topology &) { return hetmem::file_tier(path, max_bytes); }, options, out);
}

void hetmem_heap_destroy(hetmem_heap_t *heap) { delete heap; }

int hetmem_migrate_kind(int pid, const void *ptr, size_t len, hetmem_kind_t kind, const unsigned *from_nodes,
                        size_t from_count, hetmem_migration_report_t *report) {
  const int k = raw(kind);
  if (k < HETMEM_KIND_DDR || k > HETMEM_KIND_DEVICE)
    return fail(EINVAL, "hetmem_migrate_kind: kind " + std::to_string(k) + " is not a kind");
  return migrate_to([&](const hetmem::topology &t) { return hetmem::tier_by_kind(t, to_kind(k)); }, pid, ptr, len,
                    from_nodes, from_count, report);
}

int hetmem_migrate_nodes(int pid, const void *ptr, size_t len, const unsigned *nodes, size_t count,
                         const unsigned *from_nodes, size_t from_count, hetmem_migration_report_t *report) {
  if (!nodes || count == 0) return fail(EINVAL, "hetmem_migrate_nodes: no nodes given");
  return migrate_to([&](const hetmem::topology &t) { return hetmem::tier_of_nodes(t, nodes_of(nodes, count)); }, pid,
                    ptr, len, from_nodes, from_count, report);
}

const char *hetmem_heap_name(const hetmem_heap_t *heap) { return heap ? heap->h->get_tier().name.c_str() : ""; }
hetmem_kind_t hetmem_heap_kind(const hetmem_heap_t *heap) {
  return heap ? from_kind(heap->h->get_tier().kind) : HETMEM_KIND_UNKNOWN;
}

void *hetmem_malloc(hetmem_heap_t *heap, size_t size) {
  if (!heap) {
    errno = EINVAL;
    return nullptr;
  }
  return heap->h->allocate(size);
}

void *hetmem_calloc(hetmem_heap_t *heap, size_t count, size_t size) {
  if (!heap) {
    errno = EINVAL;
    return nullptr;
  }
  return heap->h->allocate_zeroed(count, size);
}

void *hetmem_realloc(hetmem_heap_t *heap, void *ptr, size_t size) {
  if (!heap) {
    errno = EINVAL;
    return nullptr;
  }
  return heap->h->reallocate(ptr, size);
}

int hetmem_posix_memalign(hetmem_heap_t *heap, void **out, size_t alignment, size_t size) {
  if (!heap || !out) return EINVAL;
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) {
    hetmem::detail::set_thread_error("alignment %zu is not a power of two multiple of sizeof(void *)", alignment);
    return EINVAL;
  }
  void *p = heap->h->allocate(size, alignment);
  if (!p) return errno == EINVAL ? EINVAL : ENOMEM;
  *out = p;
  return 0;
}

void hetmem_free(void *ptr) { hetmem::deallocate(ptr); }
size_t hetmem_usable_size(const void *ptr) { return hetmem::usable_size(ptr); }

int hetmem_tier_of(const void *ptr, hetmem_kind_t *kind, char *name, size_t name_len) {
  const hetmem::tier *t = hetmem::tier_of(ptr);
  if (!t) return fail(ENOENT, "hetmem did not allocate this pointer");
  if (kind) *kind = from_kind(t->kind);
  if (name && name_len) std::snprintf(name, name_len, "%s", t->name.c_str());
  return 0;
}

int hetmem_where(const void *ptr, size_t len, size_t *pages_per_node, size_t max_nodes, size_t *not_present) {
  try {
    auto w = hetmem::where(ptr, len);
    if (!w) return fail(w.error().code, w.error().message);
    for (size_t i = 0; pages_per_node && i < max_nodes; ++i) pages_per_node[i] = 0;
    for (auto [node, n] : w->per_node)
      if (pages_per_node && node < max_nodes) pages_per_node[node] = n;
    if (not_present) *not_present = w->not_present;
    return 0;
  } catch (...) {
    return fail(ENOMEM, "out of memory");
  }
}

int hetmem_heap_stats(const hetmem_heap_t *heap, hetmem_tier_stats_t *out, size_t max, size_t *count) {
  if (!heap) return fail(EINVAL, "hetmem_heap_stats: heap is NULL");
  try {
    auto st = heap->h->stats();
    if (count) *count = st.size();
    for (size_t i = 0; out && i < st.size() && i < max; ++i) {
      hetmem_tier_stats_t &o = out[i];
      std::snprintf(o.tier, sizeof o.tier, "%s", st[i].tier.c_str());
      o.fill_limit_percent = st[i].fill_limit_percent;
      o.allocated_bytes = st[i].allocated_bytes;
      o.cached_bytes = st[i].cached_bytes;
      o.mapped_bytes = st[i].mapped_bytes;
      o.resident_bytes = st[i].resident_bytes;
      o.refused_extents = st[i].refused_extents;
      o.capacity_bytes = st[i].capacity_bytes;
      o.free_bytes = st[i].free_bytes;
      o.available_bytes = st[i].available_bytes;
    }
    return 0;
  } catch (...) {
    return fail(ENOMEM, "out of memory");
  }
}

uint64_t hetmem_heap_fallbacks(const hetmem_heap_t *heap) { return heap ? heap->h->fallbacks() : 0; }

int hetmem_reservation_create(const hetmem_heap_t *heap, size_t bytes, hetmem_reservation_t **out) {
  if (!heap || !out) return fail(EINVAL, "hetmem_reservation_create: heap or out is NULL");
  *out = nullptr;
  try {
    auto r = hetmem::reservation::create(heap->h->get_tier(), bytes);
    if (!r) return fail(r.error().code, r.error().message);
    *out = new hetmem_reservation{std::move(r).value()};
    return 0;
  } catch (...) {
    return fail(ENOMEM, "out of memory");
  }
}

void *hetmem_reservation_malloc(hetmem_reservation_t *r, size_t size) {
  if (!r) {
    errno = EINVAL;
    return nullptr;
  }
  return r->r->allocate(size);
}

void hetmem_reservation_destroy(hetmem_reservation_t *r) { delete r; }

int hetmem_nodes_of_kind(hetmem_kind_t kind, unsigned *nodes, size_t max, size_t *count) {
  try {
    const auto &t = topo();
    if (!t) return fail(t.error().code, "cannot read the topology: " + t.error().message);
    size_t n = 0;
    for (const auto &node : t->nodes)
      if (node.has_memory && node.allowed && node.kind == to_kind(raw(kind))) {
        if (nodes && n < max) nodes[n] = node.id;
        ++n;
      }
    if (count) *count = n;
    return 0;
  } catch (...) {
    return fail(ENOMEM, "out of memory");
  }
}

const char *hetmem_last_error(void) { return hetmem::last_error(); }

const char *hetmem_kind_name(hetmem_kind_t kind) {
  static const char *const names[] = {"unknown", "DDR", "HBM", "PMEM", "CXL", "device"};
  const auto i = static_cast<unsigned>(raw(kind));
  return i < sizeof names / sizeof *names ? names[i] : "unknown";
}

}  // extern "C"
