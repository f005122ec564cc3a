// Placement primitives: on the live kernel (node 0 exists everywhere), and with failures
// injected through the detail::os_calls seam.
#include <catch2/catch_test_macros.hpp>

#include <sys/mman.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <vector>

#include "hetmem/detail/os.hpp"
#include "hetmem/placement.hpp"

using namespace hetmem;

namespace {

const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

struct mapping {
  void *p = nullptr;
  std::size_t len = 0;
  explicit mapping(std::size_t bytes) : len(bytes) {
    auto r = map_anonymous(bytes);
    REQUIRE(r);
    p = *r;
  }
  ~mapping() { (void)unmap(p, len); }
  void touch() const { std::memset(p, 0x5a, len); }
};

node_set nodes(std::initializer_list<std::uint32_t> ids) { return node_set(ids); }

bool contains(const std::string &s, const std::string &needle) { return s.find(needle) != std::string::npos; }

// --- fault injection ---------------------------------------------------------------------------
struct fake {
  static inline int mbind_errno = 0;
  static inline int mmap_errno = 0;
  static inline int get_mempolicy_errno = 0;
  static inline unsigned long allowed_mask = 1;  // nodes allowed, as a bit mask
  static inline std::vector<int> move_status;    // per-page status to report, cycled
  static inline std::vector<int> query_status;   // status for queries (nodes == nullptr), cycled
  static inline int move_calls = 0;
  struct call {
    int mode;
    unsigned long len;
    unsigned long first_word;
  };
  static inline std::vector<call> mbind_calls;

  static void reset() {
    mbind_errno = mmap_errno = get_mempolicy_errno = 0;
    allowed_mask = 1;
    move_status.clear();
    query_status.clear();
    move_calls = 0;
    mbind_calls.clear();
  }
  static void *mmap(void *a, std::size_t l, int pr, int f, int fd, long o) {
    if (mmap_errno) {
      errno = mmap_errno;
      return MAP_FAILED;
    }
    return detail::system_os_calls().mmap(a, l, pr, f, fd, o);
  }
  static long mbind(void *, unsigned long len, int mode, const unsigned long *mask, unsigned long, unsigned) {
    mbind_calls.push_back({mode, len, mask ? mask[0] : 0});
    if (mbind_errno) {
      errno = mbind_errno;
      return -1;
    }
    return 0;
  }
  static long get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode, void *addr, unsigned long flags) {
    if (get_mempolicy_errno) {
      errno = get_mempolicy_errno;
      return -1;
    }
    if (flags == 4 /* MPOL_F_MEMS_ALLOWED */ && mask) {
      std::memset(mask, 0, (maxnode - 1) / 8);
      mask[0] = allowed_mask;
      return 0;
    }
    return detail::system_os_calls().get_mempolicy(mode, mask, maxnode, addr, flags);
  }
  static long move_pages(int pid, unsigned long count, void **pages, const int *nodes, int *status, int flags) {
    ++move_calls;
    const auto &table = nodes == nullptr && !query_status.empty() ? query_status : move_status;
    if (table.empty()) return detail::system_os_calls().move_pages(pid, count, pages, nodes, status, flags);
    for (unsigned long i = 0; i < count; ++i) status[i] = table[i % table.size()];
    return 0;
  }
};
const detail::os_calls fake_calls{fake::mmap,       detail::system_os_calls().munmap, fake::mbind, fake::get_mempolicy,
                                  fake::move_pages, detail::system_os_calls().madvise};

}  // namespace

TEST_CASE("map_anonymous: alignment, sizes, errors", "[placement]") {
  auto r = map_anonymous(3 * page + 1, 2 << 20);
  REQUIRE(r);
  CHECK(reinterpret_cast<std::uintptr_t>(*r) % (2 << 20) == 0);
  CHECK(unmap(*r, 3 * page + 1));
  CHECK(map_anonymous(0).error().code == EINVAL);
  CHECK(contains(map_anonymous(4096, 3000).error().message, "not a power of two"));
  CHECK(map_anonymous(SIZE_MAX - 10).error().code == ENOMEM);
  CHECK(contains(unmap(reinterpret_cast<void *>(page + 1), page).error().message, "not page aligned"));
}

TEST_CASE("bind to node 0: the kernel says every page is there", "[placement][live]") {
  auto k = probe_kernel_policy_support();
  REQUIRE(k);
  REQUIRE(k->mems_allowed.contains(0));
  mapping m(64 * page);
  auto before = where(m.p, m.len);
  REQUIRE(before);
  CHECK(before->not_present == 64);  // nothing faulted in yet
  placement p;
  p.mode = policy_mode::bind;
  p.nodes = nodes({0});
  REQUIRE(place(m.p, m.len, p));
  m.touch();
  auto after = where(m.p, m.len);
  REQUIRE(after);
  CHECK(after->pages == 64);
  CHECK(after->on(0) == 64);
  CHECK(after->not_present == 0);
  auto moved = move_to(m.p, m.len, 0);
  REQUIRE(moved);
  CHECK(moved->requested == 64);
  CHECK(moved->moved == 64);
}

TEST_CASE("every mode is accepted on node 0 and keeps pages there", "[placement][live]") {
  auto k = probe_kernel_policy_support();
  REQUIRE(k);
  for (auto mode : {policy_mode::preferred, policy_mode::interleave, policy_mode::preferred_many,
                    policy_mode::weighted_interleave, policy_mode::default_policy}) {
    INFO(to_string(mode));
    if (mode == policy_mode::preferred_many && !k->preferred_many) continue;
    mapping m(16 * page);
    placement p;
    p.mode = mode;
    if (mode != policy_mode::default_policy) p.nodes = nodes({0});
    REQUIRE(place(m.p, m.len, p));
    m.touch();
    auto w = where(m.p, m.len);
    REQUIRE(w);
    if (mode != policy_mode::default_policy) {
      CHECK(w->on(0) == 16);
    }
  }
}

TEST_CASE("bad requests are refused with a message that names the cause", "[placement]") {
  mapping m(4 * page);
  placement p;
  p.mode = policy_mode::bind;
  CHECK(contains(place(m.p, m.len, p).error().message, "needs at least one node"));
  p.mode = policy_mode::preferred;
  p.nodes = nodes({0, 1});
  CHECK(contains(place(m.p, m.len, p).error().message, "exactly one node"));
  p.mode = policy_mode::bind;
  p.nodes = nodes({5000});
  CHECK(place(m.p, m.len, p).error().code == ERANGE);
  p.nodes = nodes({1000});
  auto e = place(m.p, m.len, p);
  REQUIRE_FALSE(e);
  CHECK(contains(e.error().message, "node(s) 1000 are not allowed to this process"));
  p.nodes = nodes({0});
  CHECK(contains(place(static_cast<char *>(m.p) + 1, page, p).error().message, "not page aligned"));
  CHECK(contains(place(m.p, 0, p).error().message, "empty range"));
  CHECK(contains(place(m.p, SIZE_MAX, p).error().message, "wraps"));
  p.mode = policy_mode::weighted_interleave;
  p.weights = {1, 2};
  CHECK(contains(place(m.p, m.len, p).error().message, "2 weights for 1 nodes"));
  p.weights = {0};
  CHECK(contains(place(m.p, m.len, p).error().message, "weight of 0"));
  CHECK(contains(move_to(m.p, m.len, 1000).error().message, "node 1000 is not allowed"));
}

TEST_CASE("injected failures: mbind, mmap, get_mempolicy, per-page move errors", "[placement][fault]") {
  REQUIRE(probe_kernel_policy_support());  // cache the feature probe with the real kernel first
  fake::reset();
  detail::scoped_os_calls use(&fake_calls);
  mapping m(8 * page);
  placement p;
  p.mode = policy_mode::bind;
  p.nodes = nodes({0});

  fake::mbind_errno = EIO;
  auto e = place(m.p, m.len, p);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == EIO);
  CHECK(contains(e.error().message, "mbind(bind to nodes 0)"));
  CHECK(contains(e.error().message, "Input/output error"));
  fake::mbind_errno = 0;

  fake::mmap_errno = ENOMEM;
  auto mm = map_anonymous(page);
  REQUIRE_FALSE(mm);
  CHECK(contains(mm.error().message, "mmap of 4096 bytes failed: Cannot allocate memory"));
  fake::mmap_errno = 0;

  fake::get_mempolicy_errno = EPERM;
  CHECK(contains(place(m.p, m.len, p).error().message, "MPOL_F_MEMS_ALLOWED"));
  fake::get_mempolicy_errno = 0;

  // A cpuset that excludes node 1 (mems 0 only), as a cgroup would.
  fake::allowed_mask = 0b01;
  p.nodes = nodes({1});
  CHECK(contains(place(m.p, m.len, p).error().message, "node(s) 1 are not allowed to this process (cpuset mems 0)"));

  // move_pages: per-page statuses are counted, not hidden.
  // 8 pages report {moved, busy, no memory, absent} twice; asked again, the failed ones are
  // still on node 0; the two busy ones are retried and the retry moves one of them.
  fake::allowed_mask = 0b11;
  fake::move_status = {1, -EBUSY, -ENOMEM, -ENOENT};
  fake::query_status = {0};
  auto r = move_to(m.p, m.len, 1);
  REQUIRE(r);
  CHECK(r->requested == 6);
  CHECK(r->moved == 3);
  CHECK(r->busy == 1);
  CHECK(r->no_memory == 2);
  CHECK(r->first_error == ENOMEM);
}

TEST_CASE("weighted interleave with per-range weights: chunked binds in proportion", "[placement][fault]") {
  REQUIRE(probe_kernel_policy_support());
  fake::reset();
  detail::scoped_os_calls use(&fake_calls);
  fake::allowed_mask = 0b11;
  mapping m(8 * page);
  placement p;
  p.mode = policy_mode::weighted_interleave;
  p.nodes = nodes({0, 1});
  p.weights = {3, 1};
  REQUIRE(place(m.p, m.len, p));
  // 8 pages, weights 3:1 -> node 0: 3 pages, node 1: 1 page, twice.
  REQUIRE(fake::mbind_calls.size() == 4);
  const unsigned long n0 = 1, n1 = 2;
  CHECK(fake::mbind_calls[0].first_word == n0);
  CHECK(fake::mbind_calls[0].len == 3 * page);
  CHECK(fake::mbind_calls[1].first_word == n1);
  CHECK(fake::mbind_calls[1].len == 1 * page);
  CHECK(fake::mbind_calls[2].first_word == n0);
  CHECK(fake::mbind_calls[3].len == 1 * page);
  for (const auto &c : fake::mbind_calls) CHECK(c.mode == 1);  // MPOL_PREFERRED per chunk

  // A huge range is done in at most ~4096 calls, still in proportion.
  fake::mbind_calls.clear();
  mapping big(64 * 1024 * page);
  REQUIRE(place(big.p, big.len, p));
  CHECK(fake::mbind_calls.size() <= 4098);
  unsigned long on0 = 0, on1 = 0;
  for (const auto &c : fake::mbind_calls) (c.first_word == n0 ? on0 : on1) += c.len;
  CHECK(on0 == 3 * on1);
}

TEST_CASE("move_to asks the kernel again about pages reported busy (huge pages)", "[placement][fault]") {
  REQUIRE(probe_kernel_policy_support());
  fake::reset();
  detail::scoped_os_calls use(&fake_calls);
  fake::allowed_mask = 0b11;
  mapping m(4 * page);
  // The move reports the head of a huge page busy; asked again, every page is on node 1.
  fake::move_status = {-EBUSY, 1, 1, 1};
  fake::query_status = {1};
  auto r = move_to(m.p, m.len, 1);
  REQUIRE(r);
  CHECK(r->moved == 4);
  CHECK(r->busy == 0);
  CHECK(fake::move_calls == 2);  // the move, then one query of the failed page
  // Still elsewhere when asked again: retried once, and reported busy if it stays busy.
  fake::reset();
  fake::allowed_mask = 0b11;
  fake::move_status = {-EBUSY, 1, 1, 1};
  fake::query_status = {0};
  r = move_to(m.p, m.len, 1);
  REQUIRE(r);
  CHECK(fake::move_calls == 3);  // move, query, retry
  CHECK(r->moved == 3);
  CHECK(r->busy == 1);
}
