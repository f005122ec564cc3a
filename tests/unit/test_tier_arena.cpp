// The engine's unit: tier arenas on placed memory, the address window, the thread caches.
// Placement is checked with the kernel (move_pages), not with our bookkeeping.
#include <catch2/catch_test_macros.hpp>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../../src/engine/direct_path.hpp"
#include "../../src/engine/owners.hpp"
#include "hetmem/detail/node_memory.hpp"
#include "hetmem/detail/os.hpp"
#include "hetmem/detail/tier_arena.hpp"
#include "hetmem/heap.hpp"
#include "hetmem/sysfs/fault_injection.hpp"
#include "tree.hpp"

extern "C" std::size_t hetmem_je_nallocx(std::size_t size, int flags);
extern "C" int hetmem_je_mallctl(const char *name, void *oldp, std::size_t *oldlenp, void *newp, std::size_t newlen);

using namespace hetmem;

namespace {
const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
void *page_of(void *p) {
  return reinterpret_cast<void *>(reinterpret_cast<std::uintptr_t>(p) & ~(static_cast<std::uintptr_t>(page) - 1));
}
tier node0(const std::string &name, policy_mode mode = policy_mode::bind, huge_pages thp = huge_pages::system_default) {
  tier t;
  t.name = name;
  t.kind = memory_kind::ddr;
  t.where.mode = mode;
  t.where.nodes.insert(0);
  t.where.thp = thp;
  return t;
}
// A sysfs root whose node 0 reports `total_mb` MiB with `free_mb` free (set as
// HETMEM_SYSFS_ROOT while alive).
struct fake_meminfo {
  test::temp_tree tree;
  fake_meminfo(unsigned total_mb, unsigned free_mb) {
    set(total_mb, free_mb);
    ::setenv("HETMEM_SYSFS_ROOT", tree.root().c_str(), 1);
  }
  void set(unsigned total_mb, unsigned free_mb) {
    tree.file("sys/devices/system/node/node0/meminfo",
              "Node 0 MemTotal:       " + std::to_string(total_mb * 1024) + " kB\nNode 0 MemFree:        " +
                  std::to_string(free_mb * 1024) + " kB\nNode 0 Inactive(file):  0 kB\nNode 0 SReclaimable:    0 kB\n");
  }
  ~fake_meminfo() { ::unsetenv("HETMEM_SYSFS_ROOT"); }
};
}  // namespace

TEST_CASE("size classes of the thread caches are jemalloc's", "[engine]") {
  for (std::size_t s = 1; s <= detail::max_cached_bytes; ++s) {
    const std::size_t ours = detail::class_bytes(detail::class_of(s));
    if (ours != hetmem_je_nallocx(s, 0))
      FAIL("size " << s << ": ours " << ours << ", jemalloc " << hetmem_je_nallocx(s, 0));
  }
}

TEST_CASE("tier arena: every size lands on the bound node, data intact, tier_of knows it", "[engine][live]") {
  auto a = detail::tier_arena::get(node0("DDR (nodes 0)"));
  REQUIRE(a);
  std::vector<std::pair<unsigned char *, std::size_t>> blocks;
  for (std::size_t size : {1u, 8u, 64u, 100u, 4096u, 10000u, 32768u, 65536u, 1u << 20, 5u << 20}) {
    for (int i = 0; i < 20; ++i) {
      auto *p = static_cast<unsigned char *>((*a)->allocate(size));
      REQUIRE(p != nullptr);
      CHECK(detail::tier_arena::usable_size(p) >= size);
      CHECK(detail::tier_arena::of(p) == *a);
      CHECK(tier_of(p) == &(*a)->description());
      std::memset(p, static_cast<int>(size + static_cast<std::size_t>(i)) & 0xff, size);
      blocks.emplace_back(p, size);
    }
  }
  for (auto [p, size] : blocks) {
    auto w = where(page_of(p), page);
    REQUIRE(w);
    CHECK(w->on(0) == 1);
  }
  auto *aligned = (*a)->allocate(100, 1 << 16);
  REQUIRE(aligned != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(aligned) % (1 << 16) == 0);
  detail::tier_arena::deallocate(aligned);
  int i = 0;
  for (auto [p, size] : blocks) {
    bool intact = true;
    for (std::size_t k = 0; k < size; ++k)
      intact = intact && p[k] == ((size + static_cast<std::size_t>(i % 20)) & 0xff);
    CHECK(intact);
    detail::tier_arena::deallocate(p);
    ++i;
  }
  CHECK((*a)->allocate(8, 3) == nullptr);  // alignment not a power of two
  CHECK(errno == EINVAL);
  CHECK(std::string(last_error()).find("alignment 3 is not a power of two") != std::string::npos);
}

TEST_CASE("tier arena: a small request with an alignment of 16 is 16-byte aligned", "[engine]") {
  // jemalloc's 8-byte class is only 8-byte aligned: memalign(16, 4) must not get it.
  auto a = detail::tier_arena::get(node0("small aligned"));
  REQUIRE(a);
  std::vector<void *> ps;
  for (std::size_t n = 1; n <= 16; ++n)
    for (int i = 0; i < 8; ++i) {
      void *p = (*a)->allocate(n, 16);
      REQUIRE(p != nullptr);
      CHECK(reinterpret_cast<std::uintptr_t>(p) % 16 == 0);
      ps.push_back(p);
    }
  for (void *p : ps) detail::tier_arena::deallocate(p);

  // Sized free of such a block (a pmr resource's deallocate(p, 4, 16)) returns it to the
  // 16-byte class it came from: the next 16-byte request gets it back, an 8-byte one never.
  void *p = (*a)->allocate(4, 16);
  REQUIRE(p != nullptr);
  detail::tier_arena::deallocate(p, 4, 16);
  void *eight = (*a)->allocate(8, 0);
  void *sixteen = (*a)->allocate(16, 0);
  CHECK(eight != p);
  CHECK(sixteen == p);
  detail::tier_arena::deallocate(eight);
  detail::tier_arena::deallocate(sixteen);
}

TEST_CASE("tier arena: one per (tier, fill limit), for the life of the process", "[engine]") {
  auto a = detail::tier_arena::get(node0("same"));
  auto b = detail::tier_arena::get(node0("same"));
  auto c = detail::tier_arena::get(node0("same"), 90);
  auto d = detail::tier_arena::get(node0("same", policy_mode::preferred));
  auto e = detail::tier_arena::get(node0("other name"));
  REQUIRE((a && b && c && d && e));
  CHECK(*a == *b);
  CHECK(*a != *c);
  CHECK(*a != *d);
  CHECK(*a != *e);  // tier_of(p) names the tier the memory was asked for
  CHECK(detail::tier_arena::find(node0("same"), 90) == *c);
  CHECK(detail::tier_arena::find(node0("same"), 89) == nullptr);
  CHECK_FALSE(detail::tier_arena::get(node0("x"), 0));
  CHECK(detail::tier_arena::get(node0("x"), 101).error().message.find("outside 1-100") != std::string::npos);
}

TEST_CASE("tier arena: a placement that cannot work fails at creation, with its reason", "[engine]") {
  tier t = node0("nowhere");
  t.where.nodes = node_set{1000};
  auto a = detail::tier_arena::get(t);
  REQUIRE_FALSE(a);
  CHECK(a.error().message.find("nowhere: ") == 0);
  CHECK(a.error().message.find("not allowed to this process") != std::string::npos);
}

TEST_CASE("thread caches never hand one tier's memory to another", "[engine][live]") {
  auto a = detail::tier_arena::get(node0("tier A"));
  auto b = detail::tier_arena::get(node0("tier B", policy_mode::preferred));
  REQUIRE((a && b));
  for (std::size_t size : {16u, 64u, 4096u, 32768u}) {
    std::vector<void *> from_a;
    for (int i = 0; i < 100; ++i) from_a.push_back((*a)->allocate(size));
    for (void *p : from_a) detail::tier_arena::deallocate(p);  // now cached for A
    for (int i = 0; i < 100; ++i) {
      void *p = (*b)->allocate(size);
      REQUIRE(p != nullptr);
      CHECK(detail::tier_arena::of(p) == *b);
      detail::tier_arena::deallocate(p, size, 0);
    }
    void *again = (*a)->allocate(size);
    CHECK(detail::tier_arena::of(again) == *a);
    detail::tier_arena::deallocate(again);
  }
}

TEST_CASE("pages passed between large blocks and small slabs: every block keeps its own size", "[engine][live]") {
  // A large block marks only its first page: nothing reads the marks of its other pages while
  // it lives, and the small slabs that take its pages after it mark their objects' first pages.
  // Large blocks and small objects take turns on the same pages (jemalloc reuses the dirty
  // extents), and each block's size and arena must come out as its own, every byte intact.
  auto a = detail::tier_arena::get(node0("large and small in turn"));
  REQUIRE(a);
  const auto before = (*a)->counters().allocated_bytes;
  const std::size_t large[] = {detail::max_cached_bytes + 1, 40u << 10, 100u << 10, 1u << 20, (1u << 20) + 4096};
  const std::size_t small[] = {8, 16, 48, 96, 640, 4096, 5000, 16384, detail::max_cached_bytes};
  for (int round = 0; round < 4; ++round) {
    std::vector<std::pair<void *, std::size_t>> blocks;
    for (int i = 0; i < 16; ++i)
      for (std::size_t n : large) blocks.emplace_back(detail::arena_allocate(*a, n), n);
    for (auto [p, n] : blocks) {
      REQUIRE(p != nullptr);
      CHECK(detail::tier_arena::usable_size(p) == hetmem_je_nallocx(n, 0));
      std::memset(p, 0x5a, n);
    }
    for (auto [p, n] : blocks) detail::tier_arena::deallocate(p);
    blocks.clear();
    for (int i = 0; i < 400; ++i)
      for (std::size_t n : small) blocks.emplace_back(detail::arena_allocate(*a, n), n);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto [p, n] = blocks[i];
      REQUIRE(p != nullptr);
      CHECK(detail::tier_arena::of(p) == *a);
      CHECK(detail::tier_arena::usable_size(p) == hetmem_je_nallocx(n, 0));
      std::memset(p, static_cast<int>(i & 0xff), n);
    }
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto [p, n] = blocks[i];
      const auto *c = static_cast<const unsigned char *>(p);
      CHECK((c[0] == (i & 0xff) && c[n - 1] == (i & 0xff)));
      detail::tier_arena::deallocate(p);
    }
  }
  CHECK((*a)->counters().allocated_bytes == before);
}

TEST_CASE("alternating between two tier arenas, every block goes back to its own arena's bins", "[engine][live]") {
  // The fast paths serve the arena the thread used last from thread-locals of their own: a
  // thread that alternates, and frees one arena's blocks while it last used the other, must
  // still get each arena's own blocks back, and the bins' counts must come out even.
  auto a = detail::tier_arena::get(node0("alternating tier A"));
  auto b = detail::tier_arena::get(node0("alternating tier B", policy_mode::preferred));
  REQUIRE((a && b));
  const auto a0 = (*a)->counters().allocated_bytes, b0 = (*b)->counters().allocated_bytes;
  for (std::size_t size : {16u, 64u, 100u, 4096u}) {
    std::vector<void *> from_a, from_b;
    for (int i = 0; i < 300; ++i) {
      from_a.push_back(detail::arena_allocate(*a, size));
      from_b.push_back(detail::arena_allocate(*b, size));
    }
    for (std::size_t i = 0; i < from_a.size(); ++i) {
      CHECK(detail::tier_arena::of(from_a[i]) == *a);
      CHECK(detail::tier_arena::of(from_b[i]) == *b);
    }
    // Free A's while B is the last used, then B's while A is, then take them all again.
    void *one_b = detail::arena_allocate(*b, size);  // B last
    for (void *p : from_a) detail::tier_arena::deallocate(p);
    void *one_a = detail::arena_allocate(*a, size);  // A last
    for (void *p : from_b) detail::tier_arena::deallocate(p);
    CHECK(detail::tier_arena::of(one_a) == *a);
    for (int i = 0; i < 300; ++i) {
      void *pa = detail::arena_allocate(*a, size), *pb = detail::arena_allocate(*b, size);
      REQUIRE((pa && pb));
      CHECK(detail::tier_arena::of(pa) == *a);
      CHECK(detail::tier_arena::of(pb) == *b);
      detail::tier_arena::deallocate(pb);
      detail::tier_arena::deallocate(pa);
    }
    detail::tier_arena::deallocate(one_a);
    detail::tier_arena::deallocate(one_b);
  }
  CHECK((*a)->counters().allocated_bytes == a0);
  CHECK((*b)->counters().allocated_bytes == b0);
}

TEST_CASE("an arena behind jemalloc's own thread caches still never mixes tiers", "[engine][live]") {
  // One arena per process may use jemalloc's automatic thread caches (the preload's catch-all
  // tier). Objects of other arenas must never come out of those caches, nor its objects out of
  // theirs, whichever thread frees what.
  auto fast = detail::tier_arena::get(node0("thread-tcache tier"));
  auto other = detail::tier_arena::get(node0("beside thread-tcache tier", policy_mode::preferred));
  REQUIRE((fast && other));
  void *warm = (*other)->allocate(64);  // `other` is in use now: it could not switch any more
  REQUIRE(warm != nullptr);
  CHECK_FALSE((*other)->use_thread_tcache());
  REQUIRE((*fast)->use_thread_tcache());
  CHECK((*fast)->use_thread_tcache());  // asking again is fine
  CHECK_FALSE((*other)->use_thread_tcache());
  detail::tier_arena::deallocate(warm);
  const auto before = (*fast)->counters();
  {
    // This thread bound to the arena (its first block), then blocks of every size through
    // jemalloc's own malloc: past jemalloc's oversize threshold (8 MiB) too, they stay in the
    // tier (a thread bound to a manual arena never uses jemalloc's huge arena).
    void *first = (*fast)->allocate(32);
    void *mid = (*fast)->allocate(40000);
    void *huge = (*fast)->allocate(16U << 20);
    REQUIRE((first && mid && huge));
    CHECK(detail::tier_arena::of(first) == *fast);
    CHECK(detail::tier_arena::of(mid) == *fast);
    CHECK(detail::tier_arena::of(huge) == *fast);
    CHECK(detail::tier_arena::usable_size(huge) >= (16U << 20));
    CHECK(detail::tier_arena::usable_size(mid) >= 40000);
    for (void *p : {first, mid, huge}) detail::tier_arena::deallocate(p);
  }

  struct block {
    void *p;
    detail::tier_arena *arena;
    std::size_t size;
  };
  std::mutex pool_mutex;
  std::vector<block> pool;  // blocks handed between threads
  std::atomic<unsigned> wrong{0}, corrupt{0};
  auto worker = [&](unsigned seed) {
    std::uint64_t s = seed;
    const std::size_t sizes[] = {8, 16, 48, 112, 512, 4096, 20000, 100000};
    for (int i = 0; i < 20000; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      detail::tier_arena *a = (s >> 33) & 1 ? *fast : *other;
      const std::size_t size = sizes[(s >> 40) % 8];
      auto *p = static_cast<unsigned char *>(a->allocate(size));
      if (!p) continue;
      if (detail::tier_arena::of(p) != a) wrong.fetch_add(1);
      std::memset(p, static_cast<int>(size & 0xff), size);
      block mine{p, a, size};
      {
        std::lock_guard<std::mutex> lock(pool_mutex);
        pool.push_back(mine);
        if (pool.size() > 64 || (s >> 50) % 4 == 0) {  // free someone's block (often another thread's)
          mine = pool[(s >> 20) % pool.size()];
          pool[(s >> 20) % pool.size()] = pool.back();
          pool.pop_back();
        } else {
          continue;
        }
      }
      const auto *q = static_cast<const unsigned char *>(mine.p);
      if (q[0] != (mine.size & 0xff) || q[mine.size - 1] != (mine.size & 0xff)) corrupt.fetch_add(1);
      if (detail::tier_arena::of(mine.p) != mine.arena) wrong.fetch_add(1);
      detail::tier_arena::deallocate(mine.p);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 17 + t);
  for (auto &t : threads) t.join();
  for (const block &b : pool) detail::tier_arena::deallocate(b.p);
  CHECK(wrong.load() == 0);
  CHECK(corrupt.load() == 0);
  // The workers' bins went back at their exit; what this thread freed last sits in its bins.
  const auto after = (*fast)->counters();
  CHECK(after.allocated_bytes == before.allocated_bytes);
}

TEST_CASE("a tier arena makes its CPU shards as threads come to need them", "[engine][live]") {
  // One jemalloc arena (~85 KiB of metadata) per CPU, up to 8, made at once, cost a program
  // with one thread 0.6 MiB on an 8-CPU machine. Now: one at creation, another each time a
  // thread comes while every made shard has one, never more than planned.
  auto a = detail::tier_arena::get(node0("lazy shards tier", policy_mode::preferred));
  REQUIRE(a);
  const unsigned planned = (*a)->shards_planned();
  CHECK(planned >= 1);
  CHECK(planned <= 8);
  CHECK((*a)->shards_made() == 1);
  void *mine = (*a)->allocate(100);
  REQUIRE(mine != nullptr);
  CHECK((*a)->shards_made() == 1);  // this thread took shard 0
  if (planned < 2) SKIP("one CPU: one shard planned");

  // planned + 2 threads, all alive at once, each coming once the one before has its shard
  // (threads that come at the same moment may share one, which is only less spread): every
  // planned shard made, none more.
  const unsigned n = planned + 2;
  std::latch done(1);
  std::atomic<unsigned> allocated{0}, wrong{0}, corrupt{0};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      auto *p = static_cast<unsigned char *>((*a)->allocate(64 + i));
      if (!p || detail::tier_arena::of(p) != *a) wrong.fetch_add(1);
      if (p) std::memset(p, static_cast<int>(i), 64 + i);
      allocated.fetch_add(1);
      done.wait();
      if (p && (p[0] != static_cast<unsigned char>(i) || p[63 + i] != static_cast<unsigned char>(i)))
        corrupt.fetch_add(1);
      detail::tier_arena::deallocate(p);
    });
    while (allocated.load() <= i) std::this_thread::yield();
  }
  CHECK((*a)->shards_made() == planned);
  done.count_down();
  for (auto &t : threads) t.join();
  CHECK(wrong.load() == 0);
  CHECK(corrupt.load() == 0);
  CHECK((*a)->shards_made() == planned);
  detail::tier_arena::deallocate(mine);
}

TEST_CASE("threads that come to a tier arena at the same moment each take a shard of their own", "[engine][live]") {
  // Picking the least used shard and counting the thread on it are one step: threads released
  // together used to read the same counts and crowd onto one or two shards (larson-churn under
  // the preload ran 1.3x slower when they did).
  auto a = detail::tier_arena::get(node0("shards taken together tier", policy_mode::preferred));
  REQUIRE(a);
  const unsigned planned = (*a)->shards_planned();
  void *mine = (*a)->allocate(100);  // this thread takes shard 0
  REQUIRE(mine != nullptr);
  if (planned < 2) SKIP("one CPU: one shard planned");
  CHECK((*a)->threads_on_shard(0) == 1);

  for (int round = 0; round < 20; ++round) {
    const unsigned n = planned - 1;  // one for each shard but this thread's
    std::latch start(n + 1), allocated(n), done(1);
    std::atomic<unsigned> failed{0};
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < n; ++i)
      threads.emplace_back([&] {
        start.arrive_and_wait();
        void *p = (*a)->allocate(64);
        if (!p) failed.fetch_add(1);
        allocated.count_down();
        done.wait();
        detail::tier_arena::deallocate(p);
      });
    start.arrive_and_wait();
    allocated.wait();
    CHECK(failed.load() == 0);
    CHECK((*a)->shards_made() == planned);
    std::string counts;
    unsigned shared = 0;
    for (unsigned k = 0; k < planned; ++k) {
      counts += std::to_string((*a)->threads_on_shard(k)) + ' ';
      if ((*a)->threads_on_shard(k) != 1) ++shared;
    }
    INFO("round " << round << ": threads per shard " << counts);
    CHECK(shared == 0);
    done.count_down();
    for (auto &t : threads) t.join();
    // The threads exited: their shards have no user left.
    for (unsigned k = 1; k < planned; ++k) CHECK((*a)->threads_on_shard(k) == 0);
    if (shared != 0) break;
  }
  detail::tier_arena::deallocate(mine);
}

TEST_CASE("the preload's direct fast path serves and frees only the direct arena's blocks", "[engine][live]") {
  // src/engine/direct_path.hpp, as the preload's malloc and free use it: a bound thread
  // allocates with jemalloc's malloc, and free hands a block to jemalloc only when it lies in
  // the direct arena's span; everything else must take the full path.
  namespace dp = detail::direct_path;
  auto fast = detail::tier_arena::get(node0("direct-path tier"));
  auto other = detail::tier_arena::get(node0("beside direct-path tier", policy_mode::preferred));
  REQUIRE((fast && other));
  REQUIRE((*fast)->use_thread_tcache());
  CHECK((*fast)->is_direct_arena());
  CHECK_FALSE((*other)->is_direct_arena());

  // A thread that binds before the fast paths are enabled never takes them.
  bool early_ready = true, early_freed = true;
  std::thread([&] {
    void *p = (*fast)->allocate(64);
    early_ready = dp::thread_mode != dp::mode_off;
    early_freed = dp::try_free(p);
    if (!early_freed) detail::tier_arena::deallocate(p);
  }).join();
  CHECK_FALSE(early_ready);
  CHECK_FALSE(early_freed);

  dp::enable(true);
  CHECK(dp::thread_mode == dp::mode_off);  // this thread has not allocated there yet
  void *first = (*fast)->allocate(32);
  REQUIRE(first != nullptr);
  REQUIRE(dp::thread_mode == dp::mode_all);
  CHECK(dp::try_free(first));
  void *mine = dp::allocate(100);
  REQUIRE(mine != nullptr);
  CHECK(detail::tier_arena::of(mine) == *fast);
  auto *theirs = static_cast<unsigned char *>((*other)->allocate(100));
  REQUIRE(theirs != nullptr);
  std::memset(theirs, 0x5a, 100);
  // The span: the direct arena's address space, noted as its shards claimed runs (here before
  // the arena was made direct, which use_thread_tcache makes up for).
  CHECK(dp::in_span(mine));
  void *big = dp::allocate(std::size_t{8} << 20);  // a large block: jemalloc's extents, same run
  REQUIRE(big != nullptr);
  CHECK(dp::in_span(big));
  CHECK(dp::try_free(big));
  CHECK_FALSE(dp::in_span(theirs));
  CHECK_FALSE(dp::in_span(nullptr));
  CHECK_FALSE(dp::try_free(theirs));  // another tier's block: untouched, the caller frees it
  CHECK((theirs[0] == 0x5a && theirs[99] == 0x5a));
  CHECK(detail::tier_arena::of(theirs) == *other);
  void *glibcs = std::malloc(100);  // not hetmem's at all (this test program runs on glibc)
  CHECK_FALSE(dp::try_free(glibcs));
  std::free(glibcs);
  CHECK_FALSE(dp::try_free(nullptr));
  CHECK(dp::try_free(mine));
  detail::tier_arena::deallocate(theirs);

  // Threads as the preload runs them: the fast paths where they apply, the full path otherwise;
  // blocks of both tiers freed by whichever thread holds them.
  struct block {
    void *p;
    detail::tier_arena *arena;
  };
  std::mutex pool_mutex;
  std::vector<block> pool;
  std::atomic<unsigned> wrong{0}, fast_frees{0};
  auto worker = [&](unsigned seed) {
    std::uint64_t s = seed;
    for (int i = 0; i < 20000; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      detail::tier_arena *a = (s >> 33) & 1 ? *fast : *other;
      const std::size_t size = 8 + (s >> 40) % 5000;
      void *p = a == *fast && dp::thread_mode == dp::mode_all ? dp::allocate(size) : a->allocate(size);
      if (!p) continue;
      if (detail::tier_arena::of(p) != a) wrong.fetch_add(1);
      block b{p, a};
      {
        std::lock_guard<std::mutex> lock(pool_mutex);
        pool.push_back(b);
        if (pool.size() < 64 && (s >> 50) % 4 != 0) continue;
        b = pool[(s >> 20) % pool.size()];
        pool[(s >> 20) % pool.size()] = pool.back();
        pool.pop_back();
      }
      if (detail::tier_arena::of(b.p) != b.arena) wrong.fetch_add(1);
      if (dp::try_free(b.p)) {
        if (b.arena != *fast) wrong.fetch_add(1);
        fast_frees.fetch_add(1);
      } else {
        detail::tier_arena::deallocate(b.p);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 31 + t);
  for (auto &t : threads) t.join();
  for (const block &b : pool)
    if (!dp::try_free(b.p)) detail::tier_arena::deallocate(b.p);
  CHECK(wrong.load() == 0);
  CHECK(fast_frees.load() > 1000);
}

TEST_CASE("statistics count what the program holds, across threads and thread exit", "[engine][live]") {
  auto a = detail::tier_arena::get(node0("stats tier", policy_mode::bind, huge_pages::never));
  REQUIRE(a);
  const auto before = (*a)->counters();
  std::vector<void *> blocks(1000);
  std::thread producer([&] {
    for (auto &p : blocks) p = (*a)->allocate(100);  // class 112
  });
  producer.join();  // its cache flushes at exit; the blocks stay allocated
  auto mid = (*a)->counters();
  CHECK(mid.allocated_bytes - before.allocated_bytes == 1000 * 112);
  CHECK(mid.mapped_bytes >= 1000 * 112);
  CHECK(mid.resident_bytes > 0);
  std::thread consumer([&] {
    for (void *p : blocks) detail::tier_arena::deallocate(p);
  });
  consumer.join();
  auto after = (*a)->counters();
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(after.cached_bytes == before.cached_bytes);  // both threads' caches went back at exit
}

TEST_CASE("tier arena: when placement starts failing, allocation fails cleanly and says why", "[engine][fault]") {
  // A fresh arena (its own key) so that the next allocation needs a fresh extent.
  auto a = detail::tier_arena::get(node0("fault tier", policy_mode::bind, huge_pages::never), 97);
  REQUIRE(a);
  detail::os_calls failing = detail::system_os_calls();
  failing.mbind = [](void *, unsigned long, int, const unsigned long *, unsigned long, unsigned) -> long {
    errno = ENOMEM;
    return -1;
  };
  {
    detail::scoped_os_calls use(&failing);
    void *p = (*a)->allocate(64u << 20);
    CHECK(p == nullptr);
    CHECK(errno == ENOMEM);
    CHECK(std::string(last_error()).find("fault tier: mbind(bind to nodes 0) on") != std::string::npos);
    CHECK((*a)->counters().refused_extents >= 1);
  }
  void *p = (*a)->allocate(64u << 20);  // the kernel works again: so does the arena
  REQUIRE(p != nullptr);
  detail::tier_arena::deallocate(p);
}

namespace {
// Bytes mapped read-write (charged against the commit limit) and bytes given back as PROT_NONE
// through the os_calls table, since the last reset.
std::atomic<std::uint64_t> rw_mapped{0}, none_mapped{0};
std::atomic<bool> refuse_rw{false};
void *counting_mmap(void *addr, std::size_t len, int prot, int flags, int fd, long off) {
  if (prot == (PROT_READ | PROT_WRITE) && (flags & MAP_ANONYMOUS) && refuse_rw.load()) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  void *p = detail::system_os_calls().mmap(addr, len, prot, flags, fd, off);
  if (p != MAP_FAILED && (flags & MAP_ANONYMOUS)) (prot == PROT_NONE ? none_mapped : rw_mapped) += len;
  return p;
}
// rw_mapped while `n` blocks of 40 MiB are allocated, written and freed on a fresh arena.
std::uint64_t charged_for_blocks(const char *name, int n) {
  auto a = detail::tier_arena::get(node0(name, policy_mode::bind, huge_pages::never), 100);
  REQUIRE(a);
  detail::os_calls counting = detail::system_os_calls();
  counting.mmap = counting_mmap;
  detail::scoped_os_calls use(&counting);
  rw_mapped = 0;
  std::vector<void *> blocks;
  for (int i = 0; i < n; ++i) {
    void *p = (*a)->allocate(40u << 20);
    REQUIRE(p != nullptr);
    static_cast<char *>(p)[0] = 1;
    blocks.push_back(p);
  }
  const std::uint64_t charged = rw_mapped;
  for (void *p : blocks) detail::tier_arena::deallocate(p);
  return charged;
}
}  // namespace

TEST_CASE("tier arena: under vm.overcommit_memory=2, memory is charged as jemalloc commits it", "[engine][fault]") {
  // jemalloc grows its retained address space in ever larger extents; committed from the
  // start, they would hold commit charge that no block uses, and a strict kernel would refuse
  // the program long before its memory is used (seen in the VM: 2.4 of 3.6 GiB). As jemalloc
  // does itself on such kernels, they are taken as address space and charged as committed.
  const std::uint64_t eager = charged_for_blocks("overcommit heuristic", 12);
  test::temp_tree tree;
  tree.file("proc/sys/vm/overcommit_memory", "2\n");
  ::setenv("HETMEM_SYSFS_ROOT", tree.root().c_str(), 1);
  const std::uint64_t lazy = charged_for_blocks("overcommit strict", 12);
  INFO("charged for 12 x 40 MiB: " << (eager >> 20) << " MiB eagerly, " << (lazy >> 20) << " MiB lazily");
  CHECK(lazy >= std::uint64_t{12 * 40} << 20);
  CHECK(lazy <= std::uint64_t{12 * 40 + 16} << 20);
  CHECK(eager > lazy + (std::uint64_t{64} << 20));
  // The kernel refusing the charge: NULL with ENOMEM and the reason, and the range stays
  // reserved: the next commit, once the kernel agrees, works.
  auto a = detail::tier_arena::get(node0("overcommit strict, refused", policy_mode::bind, huge_pages::never), 100);
  REQUIRE(a);
  ::unsetenv("HETMEM_SYSFS_ROOT");
  detail::os_calls counting = detail::system_os_calls();
  counting.mmap = counting_mmap;
  detail::scoped_os_calls use(&counting);
  refuse_rw = true;
  errno = 0;
  void *p = (*a)->allocate(40u << 20);
  refuse_rw = false;
  CHECK(p == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(std::string(last_error()).find("overcommit strict, refused: mmap failed: Cannot allocate memory") == 0);
  p = (*a)->allocate(40u << 20);
  REQUIRE(p != nullptr);
  std::memset(p, 7, 40u << 20);
  CHECK(tier_of(p) != nullptr);
  detail::tier_arena::deallocate(p);
}

TEST_CASE("tier arena: a tier past its fill limit takes no new memory", "[engine][fault]") {
  fake_meminfo node(1024, 900);  // 12% in use
  auto a = detail::tier_arena::get(node0("watermarked", policy_mode::bind, huge_pages::never), 50);
  REQUIRE(a);
  void *small = (*a)->allocate(64u << 20);
  REQUIRE(small != nullptr);
  node.set(1024, 300);  // 70% in use: past the limit
  void *p = (*a)->allocate(128u << 20);
  CHECK(p == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(std::string(last_error()).find("watermarked: tier is full: 300.0 MiB available of 1.0 GiB; 128.") !=
        std::string::npos);
  CHECK(std::string(last_error()).find("fill limit of 50%") != std::string::npos);
  // The node's meminfo cannot be read (its read fails with EIO, injected): no evidence, no
  // refusal. The documented fallback: the tier takes memory as the kernel would.
  struct eio_on_meminfo {
    static int inject(void *, sysfs::detail::file_access a, const char *path) noexcept {
      const std::size_t n = std::strlen(path);
      return a == sysfs::detail::file_access::read_file && n >= 13 && std::strcmp(path + n - 13, "node0/meminfo") == 0
                 ? EIO
                 : 0;
    }
  };
  const sysfs::detail::fault_injector eio{&eio_on_meminfo::inject, nullptr};
  {
    sysfs::detail::scoped_fault_injector scope(&eio);
    void *unjudged = (*a)->allocate(128u << 20);
    CHECK(unjudged != nullptr);
    detail::tier_arena::deallocate(unjudged);
  }
  detail::tier_arena::deallocate(small);
}

// The kernel's policy mode for the page at `p` (MPOL_BIND 2, MPOL_PREFERRED 1), -1 on error.
long policy_mode_at(const void *p) {
  int mode = -1;
  constexpr unsigned long mpol_f_addr = 2;
  if (::syscall(SYS_get_mempolicy, &mode, nullptr, 0UL, p, mpol_f_addr) != 0) return -1;
  return mode;
}

TEST_CASE(
    "tier arena: past its fill limit, the direct arena places new extents on its overflow, and takes purged "
    "ranges back",
    "[engine][fault]") {
  // tier_arena::overflow_to, on which the preload's malloc relies when it hands a request to
  // jemalloc without a fallback: a refusal of the direct arena's own tier is not the answer.
  namespace dp = detail::direct_path;
  constexpr long mpol_preferred = 1, mpol_bind = 2;
  fake_meminfo node(1024, 900);  // 12% in use
  auto fast = detail::tier_arena::get(node0("overflowing", policy_mode::bind, huge_pages::never), 50);
  auto next = detail::tier_arena::get(node0("its overflow", policy_mode::preferred, huge_pages::never), 100);
  REQUIRE((fast && next));
  detail::tier_arena *targets[] = {*next};
  CHECK_FALSE((*fast)->overflow_to(targets, 1));  // only the direct arena overflows
  REQUIRE((*fast)->use_thread_tcache());
  CHECK_FALSE((*fast)->overflow_to(targets, detail::tier_arena::max_overflow + 1));
  REQUIRE((*fast)->overflow_to(targets, 1));
  CHECK_FALSE((*fast)->overflow_to(targets, 1));  // set once
  dp::enable(true);

  auto *home = static_cast<unsigned char *>((*fast)->allocate(64U << 20));
  REQUIRE(home != nullptr);
  REQUIRE(dp::thread_mode == dp::mode_all);
  CHECK(policy_mode_at(home) == mpol_bind);  // the kernel's word: the tier's own placement
  CHECK((*fast)->counters().spilled_extents == 0);

  node.set(1024, 300);  // 70% in use: past the direct tier's limit, not its overflow's
  const std::size_t big = std::size_t{128} << 20;
  auto *spilled = static_cast<unsigned char *>(dp::allocate(big));
  REQUIRE(spilled != nullptr);
  CHECK(detail::tier_arena::of(spilled) == *fast);  // still the direct arena's block
  CHECK(dp::in_span(spilled));
  CHECK(policy_mode_at(spilled) == mpol_preferred);  // placed as the overflow's tier says
  CHECK(policy_mode_at(spilled + big - 1) == mpol_preferred);
  CHECK(policy_mode_at(home) == mpol_bind);
  const auto c = (*fast)->counters();
  CHECK(c.spilled_extents >= 1);
  CHECK(c.refused_extents >= c.spilled_extents);
  std::memset(spilled, 0x3c, big);
  CHECK((spilled[0] == 0x3c && spilled[big / 2] == 0x3c && spilled[big - 1] == 0x3c));

  // Every target refuses too: the answer is final, ENOMEM, and the message names the last one.
  node.set(1024, 10);
  errno = 0;
  CHECK(dp::allocate(big) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(std::string(last_error()).find("its overflow: tier is full: 10.0 MiB available") != std::string::npos);

  // Freed and purged, the spilled range is placed as the direct tier's again: memory jemalloc
  // reuses from it comes back to the tier's nodes.
  CHECK(dp::try_free(spilled));
  unsigned all = 4096;  // MALLCTL_ARENAS_ALL
  const std::string purge = "arena." + std::to_string(all) + ".purge";
  REQUIRE(hetmem_je_mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0) == 0);
  CHECK(policy_mode_at(spilled) == mpol_bind);
  CHECK(policy_mode_at(spilled + big - 1) == mpol_bind);
  CHECK(dp::try_free(home));
}

TEST_CASE("tier arena: one on a tier that is already full is made, and its allocations say why they fail",
          "[engine][fault]") {
  // The arena's first metadata block is not held to the fill limit (a tier with one full node
  // must still be usable on its others); its memory is.
  fake_meminfo node(1024, 10);
  auto a = detail::tier_arena::get(node0("already full", policy_mode::bind, huge_pages::never), 40);
  REQUIRE(a);
  errno = 0;
  CHECK((*a)->allocate(4u << 20) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(std::string(last_error()).find("already full: tier is full") == 0);
}

TEST_CASE("freeing memory hetmem did not allocate is ignored and reported", "[engine]") {
  int on_stack = 0;
  detail::tier_arena::deallocate(&on_stack);
  CHECK(std::string(last_error()).find("which hetmem did not allocate: ignored") != std::string::npos);
  CHECK(tier_of(&on_stack) == nullptr);
  CHECK(usable_size(&on_stack) == 0);
  deallocate(nullptr);
}

TEST_CASE("hugetlb tiers: explicit 2 MiB pages, or a clean refusal when the pool is empty", "[engine][live]") {
  auto a = detail::tier_arena::get(node0("DDR hugetlb", policy_mode::bind, huge_pages::hugetlb_2m));
  std::ifstream pool("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages");
  unsigned free_pages = 0;
  pool >> free_pages;
  if (free_pages < 4) {
    // This machine has no hugetlb pool (vm.nr_hugepages is 0): the arena cannot even place its
    // metadata, and says why. (The VM tests fill a pool and check the pages.)
    REQUIRE_FALSE(a);
    CHECK(a.error().message.find("no 2 MiB pages in the hugetlb pool") != std::string::npos);
    return;
  }
  REQUIRE(a);
  void *p = (*a)->allocate(3u << 20);
  REQUIRE(p != nullptr);
  std::memset(p, 1, 3u << 20);
  CHECK(where(p, 3u << 20)->on(0) > 0);
  detail::tier_arena::deallocate(p);
}

TEST_CASE("join_text builds paths as snprintf would, and refuses what does not fit", "[engine]") {
  // The extent hooks and the preload's start-up build sysfs paths with it instead of stdio.
  char buf[48];
  REQUIRE(detail::join_text(buf, sizeof buf, {"/root", "/sys/devices/system/node/node", 12U, "/meminfo"}));
  CHECK(std::string(buf) == "/root/sys/devices/system/node/node12/meminfo");
  REQUIRE(detail::join_text(buf, sizeof buf, {"", "node", 0U, "-", 4294967295U}));
  CHECK(std::string(buf) == "node0-4294967295");
  REQUIRE(detail::join_text(buf, sizeof buf, {}));
  CHECK(std::string(buf).empty());
  // 47 characters fit a 48-byte buffer with the NUL; 48 do not, and nothing is left half-written.
  const std::string fits(47, 'x'), too_long(48, 'y');
  REQUIRE(detail::join_text(buf, sizeof buf, {fits.c_str()}));
  CHECK(std::string(buf) == fits);
  CHECK_FALSE(detail::join_text(buf, sizeof buf, {too_long.c_str()}));
  CHECK(std::string(buf).empty());
  CHECK_FALSE(detail::join_text(buf, sizeof buf, {std::string_view(fits), std::string_view("z")}));
  CHECK(std::string(buf).empty());
  CHECK_FALSE(detail::join_text(buf, 0, {"a"}));
}
