// placement.cpp — mmap/mbind/get_mempolicy/move_pages with validation and errors that name
// the cause. Linux ABI constants are spelled out here so that no libnuma is needed.
#include "hetmem/placement.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "hetmem/detail/os.hpp"

namespace hetmem {
namespace detail {
namespace {

void *sys_mmap(void *addr, std::size_t len, int prot, int flags, int fd, long off) {
  return ::mmap(addr, len, prot, flags, fd, off);
}
int sys_munmap(void *addr, std::size_t len) { return ::munmap(addr, len); }
long sys_mbind(void *addr, unsigned long len, int mode, const unsigned long *mask, unsigned long maxnode,
               unsigned flags) {
  return ::syscall(SYS_mbind, addr, len, mode, mask, maxnode, flags);
}
long sys_get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode, void *addr, unsigned long flags) {
  return ::syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, flags);
}
long sys_move_pages(int pid, unsigned long count, void **pages, const int *nodes, int *status, int flags) {
  return ::syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
}

int sys_madvise(void *addr, std::size_t len, int advice) { return ::madvise(addr, len, advice); }

const os_calls system_calls{sys_mmap, sys_munmap, sys_mbind, sys_get_mempolicy, sys_move_pages, sys_madvise};
std::atomic<const os_calls *> current{&system_calls};

}  // namespace

const os_calls &system_os_calls() noexcept { return system_calls; }
const os_calls &os() noexcept { return *current.load(std::memory_order_acquire); }
const os_calls *set_os_calls(const os_calls *calls) noexcept {
  return current.exchange(calls ? calls : &system_calls, std::memory_order_acq_rel);
}

}  // namespace detail

namespace {

// Linux ABI (include/uapi/linux/mempolicy.h).
constexpr int mpol_default = 0, mpol_preferred = 1, mpol_bind = 2, mpol_interleave = 3, mpol_preferred_many = 5,
              mpol_weighted_interleave = 6;
constexpr unsigned mpol_mf_strict = 1u << 0, mpol_mf_move = 1u << 1;
constexpr unsigned long mpol_f_mems_allowed = 1ul << 2;

constexpr std::size_t mask_bits = 1024;  // >= any kernel's MAX_NUMNODES
constexpr std::size_t word_bits = sizeof(unsigned long) * 8;
using node_mask = std::array<unsigned long, mask_bits / word_bits>;
constexpr unsigned long mask_maxnode = mask_bits + 1;  // the kernel's off-by-one convention
constexpr std::size_t move_batch = 4096;               // pages per move_pages call

std::size_t page_size() noexcept {
  static const std::size_t p = [] {
    long v = ::sysconf(_SC_PAGESIZE);
    return v > 0 ? static_cast<std::size_t>(v) : std::size_t{4096};
  }();
  return p;
}

std::string errno_text(int err) {
  char buf[128];
  return strerror_r(err, buf, sizeof buf);
}

std::string hex(const void *p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

node_mask to_mask(const node_set &nodes) {
  node_mask m{};
  for (auto [lo, hi] : nodes.ranges())
    for (std::uint64_t n = lo; n <= hi && n < mask_bits; ++n) m[n / word_bits] |= 1ul << (n % word_bits);
  return m;
}

node_set from_mask(const node_mask &m) {
  node_set s;
  for (std::size_t n = 0; n < mask_bits; ++n)
    if (m[n / word_bits] & (1ul << (n % word_bits))) s.insert(static_cast<std::uint32_t>(n));
  return s;
}

int kernel_mode(policy_mode m) {
  switch (m) {
    case policy_mode::default_policy:
      return mpol_default;
    case policy_mode::bind:
      return mpol_bind;
    case policy_mode::preferred:
      return mpol_preferred;
    case policy_mode::preferred_many:
      return mpol_preferred_many;
    case policy_mode::interleave:
      return mpol_interleave;
    case policy_mode::weighted_interleave:
      return mpol_weighted_interleave;
  }
  return mpol_default;
}

// [addr, addr+bytes) must be page aligned and must not wrap.
result<std::size_t> checked_range(const void *addr, std::size_t bytes, const char *what) {
  const std::size_t ps = page_size();
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  if (addr == nullptr || a % ps != 0)
    return error{EINVAL, std::string(what) + ": address " + hex(addr) + " is not page aligned"};
  if (bytes == 0) return error{EINVAL, std::string(what) + ": empty range"};
  if (bytes > UINTPTR_MAX - a - (ps - 1)) return error{EINVAL, std::string(what) + ": range wraps around"};
  return (bytes + ps - 1) / ps;
}

struct probe_state {
  std::once_flag once;
  result<kernel_policy_support> value{error{EAGAIN, "not probed"}};
};
probe_state &probe() {
  static probe_state s;
  return s;
}

result<node_set> read_mems_allowed() {
  node_mask m{};
  if (detail::os().get_mempolicy(nullptr, m.data(), mask_maxnode, nullptr, mpol_f_mems_allowed) != 0) {
    int err = errno;
    return error{err, "get_mempolicy(MPOL_F_MEMS_ALLOWED) failed: " + errno_text(err)};
  }
  node_set s = from_mask(m);
  if (s.empty()) return error{EPERM, "this process may not allocate on any node (empty mems_allowed)"};
  return s;
}

// Which optional modes the kernel takes: tried once on a scratch page bound to an allowed node.
result<kernel_policy_support> do_probe() {
  const auto &os = detail::os();
  kernel_policy_support k;
  auto allowed = read_mems_allowed();
  if (!allowed) return allowed.error();
  void *page = os.mmap(nullptr, page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    int err = errno;
    return error{err, "mmap of a probe page failed: " + errno_text(err)};
  }
  node_set first;
  first.insert(allowed->first());
  node_mask fm = to_mask(first);
  k.preferred_many = os.mbind(page, page_size(), mpol_preferred_many, fm.data(), mask_maxnode, 0) == 0;
  k.weighted_interleave = os.mbind(page, page_size(), mpol_weighted_interleave, fm.data(), mask_maxnode, 0) == 0;
  os.munmap(page, page_size());
  return k;
}

// Weighted interleave by chunks: consecutive runs of pages bound (preferred) to each node in
// proportion to its weight, the pattern repeated over the range. Runs are scaled up so that
// at most ~4096 mbind calls are made, whatever the size. Allocation-free (the allocator's
// extent hooks call it): returns 0, or an errno value with `*failed_node` and `*failed_at` set.
int emulate_weighted(void *addr, std::size_t pages, const std::uint32_t *nodes, const std::uint8_t *weights,
                     std::size_t count, unsigned flags, std::uint32_t *failed_node, void **failed_at) noexcept {
  const auto &os = detail::os();
  const std::size_t ps = page_size();
  std::size_t sum = 0;
  for (std::size_t i = 0; i < count; ++i) sum += weights[i];
  if (count == 0 || sum == 0) return EINVAL;
  const std::size_t max_calls = 4096;
  const std::size_t cycles_allowed = std::max<std::size_t>(1, max_calls / count);
  const std::size_t unit = std::max<std::size_t>(1, (pages + sum * cycles_allowed - 1) / (sum * cycles_allowed));
  std::size_t done = 0;
  while (done < pages) {
    for (std::size_t i = 0; i < count && done < pages; ++i) {
      const std::size_t run = std::min(pages - done, unit * weights[i]);
      node_mask m{};
      m[nodes[i] / word_bits] = 1UL << (nodes[i] % word_bits);
      char *p = static_cast<char *>(addr) + done * ps;
      if (os.mbind(p, run * ps, mpol_preferred, m.data(), mask_maxnode, flags) != 0) {
        *failed_node = nodes[i];
        *failed_at = p;
        return errno;
      }
      done += run;
    }
  }
  return 0;
}

}  // namespace

const char *to_string(policy_mode m) noexcept {
  switch (m) {
    case policy_mode::default_policy:
      return "default";
    case policy_mode::bind:
      return "bind";
    case policy_mode::preferred:
      return "preferred";
    case policy_mode::preferred_many:
      return "preferred-many";
    case policy_mode::interleave:
      return "interleave";
    case policy_mode::weighted_interleave:
      return "weighted-interleave";
  }
  return "default";
}

std::size_t page_census::on(std::uint32_t node) const noexcept {
  for (auto [n, count] : per_node)
    if (n == node) return count;
  return 0;
}

result<kernel_policy_support> probe_kernel_policy_support() {
  auto &s = probe();
  try {
    std::call_once(s.once, [&] { s.value = do_probe(); });
    if (!s.value) return s.value;
    kernel_policy_support k = *s.value;
    // The cpuset can change while the process runs: read it every time.
    auto allowed = read_mems_allowed();
    if (!allowed) return allowed.error();
    k.mems_allowed = std::move(allowed).value();
    return k;
  } catch (...) {
    return error{ENOMEM, "out of memory"};
  }
}

result<void *> map_anonymous(std::size_t bytes, std::size_t alignment) {
  const auto &os = detail::os();
  const std::size_t ps = page_size();
  if (bytes == 0) return error{EINVAL, "map_anonymous: zero bytes"};
  if (alignment != 0 && (alignment & (alignment - 1)) != 0)
    return error{EINVAL, "map_anonymous: alignment " + std::to_string(alignment) + " is not a power of two"};
  if (alignment < ps) alignment = ps;
  if (bytes > SIZE_MAX - alignment - ps)
    return error{ENOMEM, "map_anonymous: " + std::to_string(bytes) + " bytes is too large"};
  const std::size_t len = (bytes + ps - 1) / ps * ps;
  const std::size_t span = alignment > ps ? len + alignment : len;
  void *p = os.mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    return error{err, "mmap of " + std::to_string(len) + " bytes failed: " + errno_text(err)};
  }
  if (span == len) return p;
  // Trim the over-mapping to the requested alignment.
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (base + alignment - 1) & ~(static_cast<std::uintptr_t>(alignment) - 1);
  if (aligned > base) os.munmap(p, aligned - base);
  const std::uintptr_t end = base + span, used_end = aligned + len;
  if (end > used_end) os.munmap(reinterpret_cast<void *>(used_end), end - used_end);
  return reinterpret_cast<void *>(aligned);
}

result<void> unmap(void *addr, std::size_t bytes) {
  auto pages = checked_range(addr, bytes, "unmap");
  if (!pages) return pages.error();
  if (detail::os().munmap(addr, *pages * page_size()) != 0) {
    int err = errno;
    return error{err, "munmap at " + hex(addr) + " failed: " + errno_text(err)};
  }
  return {};
}

result<void> place(void *addr, std::size_t bytes, const placement &p) {
  try {
    auto pages = checked_range(addr, bytes, "place");
    if (!pages) return pages.error();
    const std::string what =
        std::string(to_string(p.mode)) + " to nodes " + (p.nodes.empty() ? "(none)" : p.nodes.to_string());
    if (p.mode != policy_mode::default_policy && p.nodes.empty())
      return error{EINVAL, std::string(to_string(p.mode)) + " needs at least one node"};
    if (p.mode == policy_mode::preferred && p.nodes.count() != 1)
      return error{EINVAL, "preferred takes exactly one node, not " + p.nodes.to_string() + " (use preferred-many)"};
    if (!p.nodes.empty() && p.nodes.last() >= mask_bits)
      return error{ERANGE, "node " + std::to_string(p.nodes.last()) + " is beyond the largest node id " +
                               std::to_string(mask_bits - 1)};
    auto k = probe_kernel_policy_support();
    if (!k) return k.error();
    if (!p.nodes.empty()) {
      node_set outside;
      for (auto [lo, hi] : p.nodes.ranges())
        for (std::uint64_t n = lo; n <= hi; ++n)
          if (!k->mems_allowed.contains(static_cast<std::uint32_t>(n))) outside.insert(static_cast<std::uint32_t>(n));
      if (!outside.empty())
        return error{EINVAL, what + ": node(s) " + outside.to_string() +
                                 " are not allowed to this process (cpuset mems " + k->mems_allowed.to_string() + ")"};
    }
    if (p.mode == policy_mode::preferred_many && !k->preferred_many)
      return error{EOPNOTSUPP, "preferred-many needs Linux 5.15 or later"};
    unsigned flags = (p.move_existing ? mpol_mf_move : 0u) | (p.strict ? mpol_mf_strict : 0u);
    const std::size_t len = *pages * page_size();
    if (p.thp != huge_pages::system_default && p.thp != huge_pages::hugetlb_2m) {
      int advice = p.thp == huge_pages::never ? MADV_NOHUGEPAGE : MADV_HUGEPAGE;
      if (detail::os().madvise(addr, len, advice) != 0) {
        int err = errno;
        return error{err, std::string("madvise(") + (p.thp == huge_pages::never ? "MADV_NOHUGEPAGE" : "MADV_HUGEPAGE") +
                              ") at " + hex(addr) + ": " + errno_text(err)};
      }
    }
    if (p.mode == policy_mode::weighted_interleave) {
      std::vector<std::uint32_t> nodes = p.nodes.to_vector();
      if (!p.weights.empty() && p.weights.size() != nodes.size())
        return error{EINVAL, "weighted interleave: " + std::to_string(p.weights.size()) + " weights for " +
                                 std::to_string(nodes.size()) + " nodes"};
      for (auto w : p.weights)
        if (w == 0) return error{EINVAL, "weighted interleave: a weight of 0 (weights are 1-255)"};
      // The kernel's weights are system-wide (sysfs); per-range weights need the emulation.
      if (k->weighted_interleave && p.weights.empty()) {
        node_mask m = to_mask(p.nodes);
        if (detail::os().mbind(addr, len, mpol_weighted_interleave, m.data(), mask_maxnode, flags) == 0) return {};
        int err = errno;
        return error{
            err, "mbind(" + what + ") on " + std::to_string(len) + " bytes at " + hex(addr) + ": " + errno_text(err)};
      }
      std::vector<std::uint8_t> w = p.weights.empty() ? std::vector<std::uint8_t>(nodes.size(), 1) : p.weights;
      std::uint32_t bad_node = 0;
      void *bad_at = nullptr;
      if (int err = emulate_weighted(addr, *pages, nodes.data(), w.data(), nodes.size(), flags, &bad_node, &bad_at))
        return error{err, "mbind(preferred, node " + std::to_string(bad_node) + ") emulating weighted interleave at " +
                              hex(bad_at) + ": " + errno_text(err)};
      return {};
    }
    node_mask m = to_mask(p.nodes);
    const unsigned long *mask = p.mode == policy_mode::default_policy ? nullptr : m.data();
    if (detail::os().mbind(addr, len, kernel_mode(p.mode), mask, mask ? mask_maxnode : 0, flags) != 0) {
      int err = errno;
      std::string hint = err == EIO && p.strict ? " (existing pages do not conform and could not be moved)" : "";
      return error{err, "mbind(" + what + ") on " + std::to_string(len) + " bytes at " + hex(addr) + ": " +
                            errno_text(err) + hint};
    }
    return {};
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

result<page_census> where(const void *addr_in, std::size_t bytes) {
  try {
    // Any range: widened to the pages it touches (an object need not start on a page).
    const std::size_t ps0 = page_size();
    const auto a = reinterpret_cast<std::uintptr_t>(addr_in);
    if (addr_in == nullptr) return error{EINVAL, "where: null address"};
    if (bytes > UINTPTR_MAX - a - ps0) return error{EINVAL, "where: range wraps around"};
    const std::uintptr_t first = a & ~(ps0 - 1);
    const void *addr = reinterpret_cast<const void *>(first);
    if (bytes != 0) bytes = ((a + bytes + ps0 - 1) & ~(ps0 - 1)) - first;
    auto pages = checked_range(addr, bytes, "where");
    if (!pages) return pages.error();
    const std::size_t ps = page_size();
    page_census c;
    c.pages = *pages;
    std::vector<void *> batch;
    std::vector<int> status;
    std::vector<std::size_t> counts;
    for (std::size_t done = 0; done < *pages;) {
      const std::size_t n = std::min(move_batch, *pages - done);
      batch.resize(n);
      status.assign(n, -ENOENT);
      for (std::size_t i = 0; i < n; ++i)
        batch[i] = const_cast<char *>(static_cast<const char *>(addr)) + (done + i) * ps;
      if (detail::os().move_pages(0, n, batch.data(), nullptr, status.data(), 0) != 0) {
        int err = errno;
        return error{err, "move_pages query at " + hex(batch[0]) + " failed: " + errno_text(err)};
      }
      for (int s : status) {
        if (s < 0) {
          ++c.not_present;
          continue;
        }
        auto node = static_cast<std::size_t>(s);
        if (node >= counts.size()) counts.resize(node + 1, 0);
        ++counts[node];
      }
      done += n;
    }
    for (std::size_t node = 0; node < counts.size(); ++node)
      if (counts[node]) c.per_node.emplace_back(static_cast<std::uint32_t>(node), counts[node]);
    return c;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

result<move_report> move_to(void *addr, std::size_t bytes, std::uint32_t node) {
  try {
    auto pages = checked_range(addr, bytes, "move_to");
    if (!pages) return pages.error();
    auto k = probe_kernel_policy_support();
    if (!k) return k.error();
    if (!k->mems_allowed.contains(node))
      return error{EINVAL, "move_to: node " + std::to_string(node) + " is not allowed to this process (cpuset mems " +
                               k->mems_allowed.to_string() + ")"};
    const std::size_t ps = page_size();
    move_report r;
    std::vector<void *> batch;
    std::vector<int> targets, status;
    for (std::size_t done = 0; done < *pages;) {
      const std::size_t n = std::min(move_batch, *pages - done);
      batch.resize(n);
      targets.assign(n, static_cast<int>(node));
      status.assign(n, -ENOENT);
      for (std::size_t i = 0; i < n; ++i) batch[i] = static_cast<char *>(addr) + (done + i) * ps;
      if (int err = detail::move_pages_confirmed(0, n, batch.data(), targets.data(), status.data()))
        return error{
            err, "move_pages to node " + std::to_string(node) + " at " + hex(batch[0]) + " failed: " + errno_text(err)};
      for (int s : status) {
        if (s == -ENOENT) continue;  // never faulted in: nothing to move
        ++r.requested;
        if (s == static_cast<int>(node)) {
          ++r.moved;
          continue;
        }
        int err = s < 0 ? -s : EIO;
        if (r.first_error == 0) r.first_error = err;
        if (err == EBUSY)
          ++r.busy;
        else if (err == ENOMEM)
          ++r.no_memory;
        else
          ++r.other_failed;
      }
      done += n;
    }
    return r;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

namespace detail {

int move_pages_confirmed(int pid, std::size_t n, void **pages, const int *nodes, int *status) {
  const auto &os = detail::os();
  for (std::size_t i = 0; i < n; ++i) status[i] = -ENOENT;
  if (os.move_pages(pid, n, pages, nodes, status, static_cast<int>(mpol_mf_move)) < 0) return errno;
  std::vector<std::size_t> failed;
  for (std::size_t i = 0; i < n; ++i)
    if (status[i] < 0 && status[i] != -ENOENT) failed.push_back(i);
  if (failed.empty()) return 0;
  std::vector<void *> addrs(failed.size());
  std::vector<int> now(failed.size(), -ENOENT);
  for (std::size_t j = 0; j < failed.size(); ++j) addrs[j] = pages[failed[j]];
  if (os.move_pages(pid, addrs.size(), addrs.data(), nullptr, now.data(), 0) != 0) return 0;  // keep the first answer
  std::vector<void *> retry;
  std::vector<int> retry_nodes;
  std::vector<std::size_t> retry_at;
  for (std::size_t j = 0; j < failed.size(); ++j) {
    const std::size_t i = failed[j];
    if (now[j] == nodes[i]) {
      status[i] = now[j];  // moved with its huge page
    } else if (status[i] == -EBUSY) {
      retry.push_back(pages[i]);
      retry_nodes.push_back(nodes[i]);
      retry_at.push_back(i);
    }
  }
  if (retry.empty()) return 0;
  std::vector<int> st(retry.size(), -ENOENT);
  if (os.move_pages(pid, retry.size(), retry.data(), retry_nodes.data(), st.data(), static_cast<int>(mpol_mf_move)) >=
      0)
    for (std::size_t j = 0; j < retry.size(); ++j) status[retry_at[j]] = st[j];
  return 0;
}

const char *error_text(int err) noexcept {
  const char *d = strerrordesc_np(err);  // thread-safe and allocation-free, unlike strerror
  return d ? d : "unknown error";
}

result<compiled_placement> compile_placement(const placement &p) {
  try {
    // Validate with the real thing on a scratch page: same checks, same messages.
    auto scratch = map_anonymous(page_size());
    if (!scratch) return scratch.error();
    auto ok = place(*scratch, page_size(), p);
    (void)unmap(*scratch, page_size());
    if (!ok) return ok.error();
    compiled_placement c;
    c.source = p;
    c.flags = (p.move_existing ? mpol_mf_move : 0u) | (p.strict ? mpol_mf_strict : 0u);
    if (p.thp != huge_pages::system_default && p.thp != huge_pages::hugetlb_2m)
      c.thp_advice = p.thp == huge_pages::never ? MADV_NOHUGEPAGE : MADV_HUGEPAGE;
    if (p.mode == policy_mode::weighted_interleave) {
      auto k = probe_kernel_policy_support();
      if (!k) return k.error();
      c.emulated = !(k->weighted_interleave && p.weights.empty());
      c.mode = mpol_weighted_interleave;
      if (c.emulated) {
        const auto nodes = p.nodes.to_vector();
        if (nodes.size() > std::size(c.emulated_nodes))
          return error{EINVAL, "weighted interleave over " + std::to_string(nodes.size()) + " nodes: at most " +
                                   std::to_string(std::size(c.emulated_nodes)) + " can be emulated"};
        for (std::size_t i = 0; i < nodes.size(); ++i) {
          c.emulated_nodes[i] = nodes[i];
          c.emulated_weights[i] = p.weights.empty() ? 1 : p.weights[i];
        }
        c.emulated_count = static_cast<unsigned>(nodes.size());
      }
    } else {
      c.mode = kernel_mode(p.mode);
    }
    if (p.mode != policy_mode::default_policy) {
      node_mask m = to_mask(p.nodes);
      static_assert(sizeof m == sizeof c.mask);
      std::memcpy(c.mask, m.data(), sizeof c.mask);
      c.maxnode = mask_maxnode;
    }
    return c;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

int apply_placement(const compiled_placement &c, void *addr, std::size_t bytes, char *why,
                    std::size_t why_len) noexcept {
  if (c.emulated) {
    if (c.thp_advice >= 0) (void)os().madvise(addr, bytes, c.thp_advice);
    std::uint32_t bad_node = 0;
    void *bad_at = nullptr;
    const int err = emulate_weighted(addr, bytes / page_size(), c.emulated_nodes, c.emulated_weights, c.emulated_count,
                                     c.flags, &bad_node, &bad_at);
    if (err)
      std::snprintf(why, why_len, "mbind(preferred, node %u) emulating weighted interleave at %p: %s", bad_node, bad_at,
                    error_text(err));
    return err;
  }
  if (c.thp_advice >= 0 && os().madvise(addr, bytes, c.thp_advice) != 0) {
    int err = errno;
    std::snprintf(why, why_len, "madvise(%s) of %zu bytes at %p: %s",
                  c.thp_advice == MADV_HUGEPAGE ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", bytes, addr, error_text(err));
    return err;
  }
  if (c.mode == mpol_default) return 0;
  if (os().mbind(addr, bytes, c.mode, c.mask, c.maxnode, c.flags) != 0) {
    int err = errno;
    char nodes[64] = "";
    std::size_t used = 0;
    for (std::size_t n = 0; n < mask_bits && used + 8 < sizeof nodes; ++n)
      if ((c.mask[n / word_bits] >> (n % word_bits)) & 1ul) {
        int w = std::snprintf(nodes + used, sizeof nodes - used, used ? ",%zu" : "%zu", n);
        if (w > 0) used += static_cast<std::size_t>(w);
      }
    std::snprintf(why, why_len, "mbind(%s to nodes %s) on %zu bytes at %p: %s", to_string(c.source.mode), nodes, bytes,
                  addr, error_text(err));
    return err;
  }
  return 0;
}

}  // namespace detail

}  // namespace hetmem
