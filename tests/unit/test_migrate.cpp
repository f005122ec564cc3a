// Page migration on request (hetmem/migrate.hpp): on this one-node machine the kernel answers
// for real where it can (pages already on node 0, processes that exist or not, permissions);
// what needs several nodes is played by a fake move_pages through the detail::os_calls seam,
// and proven for real in the VM (tests/vm/migrate-guest.sh).
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "hetmem/detail/os.hpp"
#include "hetmem/heap.hpp"
#include "hetmem/migrate.hpp"

using namespace hetmem;
using Catch::Matchers::ContainsSubstring;

namespace {

tier node0_tier() {
  tier t;
  t.name = "node 0";
  t.kind = memory_kind::ddr;
  t.where.mode = policy_mode::bind;
  t.where.nodes = {0};
  return t;
}

// A pretend second node: every present page is "on node 1" until moved; moves answer from
// `move_answers` in turn (0 = moved to the target), then succeed.
struct pretend {
  static inline std::vector<int> move_answers;
  static inline std::size_t answered = 0;
  static inline int call_errno = 0;
  static inline unsigned queries = 0, moves = 0, pages_in_moves = 0;
  static inline std::vector<void *> moved;  // pages now "on node 0"
  static void reset() {
    move_answers.clear();
    answered = 0;
    call_errno = 0;
    queries = moves = pages_in_moves = 0;
    moved.clear();
  }
  static long move_pages(int pid, unsigned long count, void **pages, const int *nodes, int *status, int flags) {
    if (call_errno) {
      errno = call_errno;
      return -1;
    }
    // The real kernel says whether the page is present.
    std::vector<int> real(count);
    if (detail::system_os_calls().move_pages(pid, count, pages, nullptr, real.data(), 0) != 0) return -1;
    if (!nodes) {
      ++queries;
      for (unsigned long i = 0; i < count; ++i) {
        const bool here = std::find(moved.begin(), moved.end(), pages[i]) != moved.end();
        status[i] = real[i] < 0 ? real[i] : (here ? 0 : 1);
      }
      return 0;
    }
    (void)flags;
    ++moves;
    pages_in_moves += static_cast<unsigned>(count);
    for (unsigned long i = 0; i < count; ++i) {
      const int a = answered < move_answers.size() ? move_answers[answered++] : 0;
      if (a == 0) {
        status[i] = nodes[i];
        moved.push_back(pages[i]);
      } else {
        status[i] = a;
      }
    }
    return 0;
  }
};
const detail::os_calls pretend_calls{detail::system_os_calls().mmap,
                                     detail::system_os_calls().munmap,
                                     detail::system_os_calls().mbind,
                                     detail::system_os_calls().get_mempolicy,
                                     pretend::move_pages,
                                     detail::system_os_calls().madvise};

struct mapping {
  explicit mapping(std::size_t pages_, std::size_t touched) : pages(pages_) {
    p = static_cast<char *>(::mmap(nullptr, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(p != MAP_FAILED);
    for (std::size_t i = 0; i < touched; ++i) p[i * 4096] = static_cast<char>(i);
  }
  ~mapping() { ::munmap(p, pages * 4096); }
  mapping(const mapping &) = delete;
  mapping &operator=(const mapping &) = delete;
  char *p;
  std::size_t pages;
};

}  // namespace

TEST_CASE("migrate: pages already on the target are left and counted, untouched ones too", "[migrate][live]") {
  REQUIRE(::sysconf(_SC_PAGESIZE) == 4096);
  mapping m(64, 40);
  auto r = migrate(m.p, 64 * 4096, node0_tier());
  REQUIRE(r);
  CHECK(r->pages == 64);
  CHECK(r->already_there == 40);
  CHECK(r->not_present == 24);
  CHECK(r->moved == 0);
  CHECK(r->failed() == 0);
  CHECK_THAT(r->summary(), ContainsSubstring("moved 0 pages") && ContainsSubstring("40 already there"));
  // Any range: widened to whole pages.
  auto one = migrate(m.p + 100, 1, node0_tier());
  REQUIRE(one);
  CHECK(one->pages == 1);
}

TEST_CASE("migrate: batches, huge-page retries and failures counted by cause", "[migrate]") {
  pretend::reset();
  detail::scoped_os_calls use(&pretend_calls);
  mapping m(100, 100);
  // 1 busy page that stays busy (retried once), 1 full target, 1 shared page, 1 other error.
  pretend::move_answers = {0, -EBUSY, -ENOMEM, -EACCES, -EINVAL};
  migration_options o;
  o.batch_pages = 30;  // 4 batches: never one call per page
  auto r = migrate(m.p, 100 * 4096, node0_tier(), o);
  REQUIRE(r);
  CHECK(r->pages == 100);
  CHECK(r->moved == 97);  // the busy one was asked again, retried, and moved
  CHECK(r->busy == 0);
  CHECK(r->no_memory == 1);
  CHECK(r->shared == 1);
  CHECK(r->other_failed == 1);
  CHECK(r->first_error == ENOMEM);
  CHECK(r->moved_to.size() == 1);
  CHECK(r->moved_to[0].first == 0);
  CHECK(pretend::moves <= 4 + 4);  // one move per batch, plus at most one retry per batch
  CHECK(pretend::pages_in_moves < 110);
  CHECK_THAT(r->summary(), ContainsSubstring("target nodes full") && ContainsSubstring("shared"));
  // Everything is "on node 0" now: a second run moves nothing.
  auto again = migrate(m.p, 100 * 4096, node0_tier(), o);
  REQUIRE(again);
  CHECK(again->already_there == 97);
}

TEST_CASE("migrate: without asking first, one move_pages call per batch", "[migrate]") {
  pretend::reset();
  detail::scoped_os_calls use(&pretend_calls);
  mapping m(64, 64);
  migration_options o;
  o.ask_first = false;
  o.batch_pages = 16;
  auto r = migrate(m.p, 64 * 4096, node0_tier(), o);
  REQUIRE(r);
  CHECK(r->moved == 64);
  CHECK(pretend::queries == 0);
  CHECK(pretend::moves == 4);
  o.only_from = {1};  // a filter needs to know where pages are: it asks anyway
  pretend::reset();
  r = migrate(m.p, 64 * 4096, node0_tier(), o);
  REQUIRE(r);
  CHECK(pretend::queries == 4);
}

TEST_CASE("migrate: the automatic batch is one call for a range, or ~50 ms of the rate limit", "[migrate]") {
  // Each move_pages call drains every CPU's LRU caches in the kernel: without a rate limit, a
  // range of 5000 pages is one query and one move (fixed 4096-page batches made it two).
  pretend::reset();
  detail::scoped_os_calls use(&pretend_calls);
  mapping m(5000, 5000);
  auto r = migrate(m.p, 5000 * 4096, node0_tier());
  REQUIRE(r);
  CHECK(r->moved == 5000);
  CHECK(pretend::queries == 1);
  CHECK(pretend::moves == 1);
  // 40 MiB/s: 50 ms is 512 pages (also the smallest automatic batch), so 10 batches.
  pretend::reset();
  migration_options o;
  o.max_bytes_per_second = 40u << 20;
  r = migrate(m.p, 5000 * 4096, node0_tier(), o);
  REQUIRE(r);
  CHECK(pretend::moves == 10);
}

TEST_CASE("migrate: only pages on the --from nodes move", "[migrate]") {
  pretend::reset();
  detail::scoped_os_calls use(&pretend_calls);
  mapping m(10, 10);
  migration_options o;
  o.only_from = {2};  // the pretend pages are on node 1
  auto r = migrate(m.p, 10 * 4096, node0_tier(), o);
  REQUIRE(r);
  CHECK(r->not_selected == 10);
  CHECK(r->moved == 0);
  CHECK(pretend::moves == 0);
  o.only_from = {1};
  r = migrate(m.p, 10 * 4096, node0_tier(), o);
  REQUIRE(r);
  CHECK(r->moved == 10);
}

TEST_CASE("migrate: a rate limit spaces the batches out", "[migrate]") {
  pretend::reset();
  detail::scoped_os_calls use(&pretend_calls);
  mapping m(256, 256);  // 1 MiB
  migration_options o;
  o.batch_pages = 32;
  o.max_bytes_per_second = 8u << 20;  // 8 MiB/s: at least 1/8 s for 1 MiB
  std::uint64_t calls = 0, last = 0;
  o.progress = [&](std::uint64_t done, std::uint64_t total) {
    ++calls;
    CHECK(done > last);
    CHECK(total == 256);
    last = done;
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto r = migrate(m.p, 256 * 4096, node0_tier(), o);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(r);
  CHECK(r->moved == 256);
  CHECK(took >= 0.12);  // a lower bound only: a slow machine cannot make this fail
  CHECK(calls == 8);
  CHECK(last == 256);
}

TEST_CASE("migrate: whole-call failures name the cause", "[migrate]") {
  pretend::reset();
  detail::scoped_os_calls use(&pretend_calls);
  mapping m(4, 4);
  migration_options o;
  o.pid = 4242;
  pretend::call_errno = EPERM;
  auto r = migrate(m.p, 4 * 4096, node0_tier(), o);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == EPERM);
  CHECK_THAT(r.error().message, ContainsSubstring("CAP_SYS_NICE") && ContainsSubstring("process 4242"));
  pretend::call_errno = ESRCH;
  r = migrate(m.p, 4 * 4096, node0_tier(), o);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, ContainsSubstring("no process 4242"));
  pretend::call_errno = 0;

  tier none = node0_tier();
  none.where.nodes = {};
  CHECK_FALSE(migrate(m.p, 4096, none));
  tier far = node0_tier();
  far.where.nodes = {5};
  auto f = migrate(m.p, 4096, far);
  REQUIRE_FALSE(f);
  CHECK_THAT(f.error().message, ContainsSubstring("node 5 is not allowed"));
  CHECK_FALSE(migrate(nullptr, 4096, node0_tier()));
  CHECK_FALSE(migrate(reinterpret_cast<void *>(UINTPTR_MAX - 10), 4096, node0_tier()));
}

TEST_CASE("migrate: another process, for real: its ranges, a missing one, and no permission", "[migrate][live]") {
  auto self = process_ranges(0);
  REQUIRE(self);
  bool heap_or_anon = false;
  for (const auto &r : *self) {
    CHECK(r.end > r.start);
    CHECK(r.what != "[vdso]");
    if (r.what == "[heap]" || r.what.empty()) heap_or_anon = true;
  }
  CHECK(heap_or_anon);
  auto with_files = process_ranges(0, true);
  REQUIRE(with_files);
  CHECK(with_files->size() > self->size());
  auto missing = process_ranges(999999999);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ESRCH);

  // A child holding memory: its pages are found and (one node) already where asked.
  static char block[1 << 20];
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::memset(block, 1, sizeof block);
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  // The child goes when the test does, also when a REQUIRE ends it early.
  struct reaper {
    pid_t pid;
    explicit reaper(pid_t p) : pid(p) {}
    reaper(const reaper &) = delete;
    reaper &operator=(const reaper &) = delete;
    ~reaper() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{child};
  char c;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  migration_options o;
  o.pid = child;
  auto ranges = process_ranges(child);
  REQUIRE(ranges);
  // Only the mappings that hold the block (.data and .bss may split it): under ThreadSanitizer
  // a process also maps terabytes of shadow memory, which a whole-process move would walk
  // page by page.
  const auto b = reinterpret_cast<std::uintptr_t>(block);
  std::erase_if(*ranges, [&](const auto &m) { return m.end <= b || m.start >= b + sizeof block; });
  REQUIRE_FALSE(ranges->empty());
  auto r = migrate(*ranges, node0_tier(), o);
  REQUIRE(r);
  CHECK(r->already_there >= 256);
  CHECK(r->moved == 0);

  if (::geteuid() == 0) {
    // Without privileges, another user's process is out of reach: a plain error, no crash.
    const pid_t probe = ::fork();
    REQUIRE(probe >= 0);
    if (probe == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
      auto denied = migrate(*ranges, node0_tier(), o);
      if (denied) ::_exit(4);
      const bool names_it = denied.error().message.find("CAP_SYS_NICE") != std::string::npos ||
                            denied.error().message.find("not permitted") != std::string::npos;
      ::_exit(names_it ? 0 : 5);
    }
    int st = 0;
    REQUIRE(::waitpid(probe, &st, 0) == probe);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
  } else {
    WARN("not root: the permission check (an unprivileged user moving root's pages) is skipped");
  }
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_CASE("migrate: an allocation and everything a tier's arenas hold", "[migrate][live]") {
  auto h = heap::create(node0_tier());
  REQUIRE(h);
  std::vector<void *> blocks;
  for (int i = 0; i < 64; ++i) {
    void *p = (*h)->allocate(64 * 1024);
    REQUIRE(p != nullptr);
    std::memset(p, i, 64 * 1024);
    blocks.push_back(p);
  }
  auto one = migrate_allocation(blocks[3], node0_tier());
  REQUIRE(one);
  CHECK(one->pages >= 16);
  CHECK(one->already_there >= 16);
  int local = 0;
  CHECK_FALSE(migrate_allocation(&local, node0_tier()));
  auto all = migrate_tier_memory(node0_tier(), node0_tier());
  REQUIRE(all);
  CHECK(all->already_there >= 64 * 16);
  for (void *p : blocks) (*h)->deallocate(p);
}
