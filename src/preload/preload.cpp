// preload.cpp — libhetmem-preload.so: the malloc family and the C++ allocation operators for
// programs that never heard of hetmem (LD_PRELOAD, or `hetmem run`).
//
// Contract:
// - Until the library's constructor has read the policy and the topology and made the tier
//   arenas, every allocation goes to glibc's allocator (__libc_malloc and friends): the
//   dynamic loader, libc's start-up, other libraries' constructors and our own set-up all
//   allocate before we can. Pointers hetmem did not allocate (these, and any a program got
//   from glibc directly) are recognised in O(1) by the address window and handed back to
//   glibc: free, realloc and malloc_usable_size work on them at any time.
// - Inside malloc: no exceptions, no iostreams, no system allocator, no locks beyond the
//   engine's; overflow-checked sizes (calloc, reallocarray, pvalloc; any request past
//   PTRDIFF_MAX fails with ENOMEM before a size is rounded); errno ENOMEM/EINVAL as
//   POSIX says. Only operator new throws (std::bad_alloc, after the new-handler), as C++ says.
// - A bad configuration prints one message naming the cause and runs the default policy,
//   unless strict mode was asked for (HETMEM_STRICT=1 or `strict` in the policy): then the
//   program stops with that message, exit status 1.
// - calloc writes no memory fresh from the kernel (it reads as zeros): only memory used before
//   is cleared. On the direct fast path, aligned allocation, calloc and realloc are jemalloc's
//   own entry points through the thread's cache, as malloc and free are.
// - Fork: the engine's fork handlers keep its mutexes consistent; the child goes on allocating.
// - HETMEM_EXPLAIN=1 prints the effective policy on stderr at start.
// - The topology is read at start only where it can change something: several memory nodes, a
//   policy or tiering asked for, or an explanation. With one memory node and none of those the
//   default policy is the kernel's own placement, and one sysfs file (has_memory) says so.
// - HETMEM_TIERING=1 (or settings, see parse_tiering_options in tiering.hpp) runs the automatic
//   tiering engine for this process on a thread of its own ("hetmem-tiering"). Off by default.
//   A setting it cannot use prints one message and leaves tiering off. At exit the thread is
//   stopped (after the interval it is in) before the program's destructors run; a forked child
//   runs without it (the parent keeps it).
// - With tiering on, blocks of at least site_min_bytes (1 MiB; the `sites` setting) without an
//   alignment are followed by call site (the allocator's knowledge, tiering.hpp): each goes to
//   one of two arenas of their own, on the tiering's fast tier, or on its slow tier when the
//   engine has found the site cold, and is recorded in the engine's site registry until freed
//   (those arenas' blocks take free's full path, which forgets them). Only when the policy is a
//   chain whose first tier is the fast one and has a next tier; otherwise sites stay off, said
//   under HETMEM_EXPLAIN. A block those arenas refuse goes where the policy says, unrecorded.
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "direct_path.hpp"  // the engine's (src/engine)
#include "hetmem/detail/policy_runtime.hpp"
#include "hetmem/detail/site_registry.hpp"
#include "hetmem/format.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/sysfs/environment.hpp"
#include "hetmem/sysfs/model.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"

extern "C" {
void *__libc_malloc(std::size_t);                 // NOLINT(bugprone-reserved-identifier)
void *__libc_calloc(std::size_t, std::size_t);    // NOLINT(bugprone-reserved-identifier)
void *__libc_realloc(void *, std::size_t);        // NOLINT(bugprone-reserved-identifier)
void *__libc_memalign(std::size_t, std::size_t);  // NOLINT(bugprone-reserved-identifier)
void __libc_free(void *);                         // NOLINT(bugprone-reserved-identifier)
}

namespace {

using hetmem::detail::policy_runtime;
using hetmem::detail::tier_arena;
namespace direct_path = hetmem::detail::direct_path;

enum : int { state_glibc = 0, state_ready = 1 };
std::atomic<int> state{state_glibc};
policy_runtime *runtime = nullptr;
std::size_t (*libc_usable_size)(void *) = nullptr;

void say(const char *text) noexcept {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

std::size_t page_size() noexcept {
  static const auto p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

inline policy_runtime *ready() noexcept {
  return state.load(std::memory_order_acquire) == state_ready ? runtime : nullptr;
}

inline bool ours(const void *p) noexcept { return tier_arena::id_of(p) != 0; }

// Allocation sites (see the contract): off while site_floor is SIZE_MAX. The rest is written
// once, before site_floor is stored (release), and read after it is loaded (acquire).
std::atomic<std::size_t> site_floor{SIZE_MAX};
hetmem::detail::site_registry *site_reg = nullptr;
tier_arena *site_fast = nullptr, *site_slow = nullptr;
unsigned site_fast_id = 0, site_slow_id = 0;
using site_verdict = hetmem::detail::site_registry::verdict;

// A block of `bytes` for the call site at `where`, from the site arenas; nullptr (errno as it
// was) when the site table is full or the arena refuses: the policy's way takes it then.
// `zeroed`: for calloc (tier_arena::allocate_zeroed).
[[gnu::noinline]] void *allocate_at_site(std::size_t bytes, const void *where, bool zeroed) noexcept {
  const unsigned s = site_reg->site_of(where);
  if (s == 0) return nullptr;
  const bool cold = site_reg->verdict_of(s) == site_verdict::cold;
  const int saved = errno;
  tier_arena *a = cold ? site_slow : site_fast;
  void *p = zeroed ? a->allocate_zeroed(bytes) : a->allocate_default(bytes);
  if (!p) {
    errno = saved;
    return nullptr;
  }
  if (cold) site_reg->count_cold_placement(bytes);
  (void)site_reg->record(p, bytes, s);  // untracked when the table is full: freed all the same
  return p;
}

// Whether `p` came from the site arenas (only meaningful once site_floor was loaded < SIZE_MAX).
inline bool site_block(const void *p) noexcept {
  const unsigned id = tier_arena::id_of(p);
  return id != 0 && (id == site_fast_id || id == site_slow_id);
}

// No object may be larger than PTRDIFF_MAX (pointer differences inside it must be defined; glibc
// refuses the same): true, errno ENOMEM, for such a request. Every way past the direct fast path
// asks before any size is rounded, and before the sites' floor is compared (SIZE_MAX is its
// "off" marker, so a request of SIZE_MAX must never reach that compare).
inline bool oversized(std::size_t bytes) noexcept {
  if (bytes <= static_cast<std::size_t>(PTRDIFF_MAX)) [[likely]]
    return false;
  errno = ENOMEM;
  return true;
}

// The policy's way (and glibc's before start-up), out of line: malloc and free below keep only
// the direct fast path inline, so they need no stack frame.
[[gnu::noinline]] void *allocate_by_policy(std::size_t bytes, std::size_t alignment, const void *site) noexcept {
  if (oversized(bytes)) [[unlikely]]
    return nullptr;
  if (policy_runtime *rt = ready()) [[likely]] {
    if (alignment == 0 && bytes >= site_floor.load(std::memory_order_acquire))
      if (void *p = allocate_at_site(bytes, site, false)) return p;
    return rt->allocate(bytes, alignment, site);
  }
  return alignment > 16 ? __libc_memalign(alignment, bytes) : __libc_malloc(bytes);
}

[[gnu::always_inline]] inline void *allocate(std::size_t bytes, std::size_t alignment, const void *site) noexcept {
  // The direct fast path (src/engine/direct_path.hpp), when start() enabled it for malloc: a
  // tail call to jemalloc, whose answer is final (the direct arena overflows to the chain's
  // later tiers itself when its nodes are past their fill limit). Otherwise the policy's way,
  // which also takes the blocks followed by call site.
  if (alignment == 0 && direct_path::thread_mode == direct_path::mode_all &&
      bytes < site_floor.load(std::memory_order_relaxed)) [[likely]]
    return direct_path::allocate(bytes);
  return allocate_by_policy(bytes, alignment, site);
}

// An allocation with an alignment (a power of two above 8). Through the thread's automatic
// cache on the direct arena when the fast paths serve this thread (aligned blocks are never
// followed by site), as jemalloc's own aligned allocation; else the policy's way.
[[gnu::always_inline]] inline void *allocate_aligned(std::size_t bytes, std::size_t alignment,
                                                     const void *site) noexcept {
  if (direct_path::thread_mode == direct_path::mode_all) [[likely]] {
    if (oversized(bytes)) [[unlikely]]
      return nullptr;
    return direct_path::allocate_aligned(bytes, alignment);
  }
  return allocate_by_policy(bytes, alignment, site);
}

// calloc's block of `bytes` (already checked for overflow): memory fresh from the kernel is
// not written (neither cleared nor made resident), only memory used before is cleared.
void *allocate_zeroed(std::size_t bytes, const void *site) noexcept {
  if (direct_path::thread_mode == direct_path::mode_all && bytes < site_floor.load(std::memory_order_relaxed))
      [[likely]]
    return direct_path::allocate_zeroed(bytes);
  if (oversized(bytes)) return nullptr;
  if (policy_runtime *rt = ready()) [[likely]] {
    if (bytes >= site_floor.load(std::memory_order_acquire))
      if (void *p = allocate_at_site(bytes, site, true)) return p;
    return rt->allocate_zeroed(bytes, 0, site);
  }
  return __libc_calloc(1, bytes);
}

[[gnu::noinline]] void release_by_owner(void *p) noexcept {
  if (!p) return;
  if (runtime && runtime->counting()) runtime->note_free(p);  // counts hetmem's blocks only
  if (site_floor.load(std::memory_order_acquire) != SIZE_MAX && site_block(p)) (void)site_reg->forget(p);
  if (!tier_arena::deallocate_if_owned(p)) __libc_free(p);
}

[[gnu::always_inline]] inline void release(void *p) noexcept {
  if (direct_path::try_free(p)) [[likely]]
    return;
  release_by_owner(p);
}

std::size_t usable(void *p) noexcept {
  if (!p) return 0;
  if (const std::size_t n = tier_arena::usable_size(p)) return n;  // 0: not hetmem's
  return libc_usable_size ? libc_usable_size(p) : 0;
}

void *reallocate(void *p, std::size_t bytes, const void *site) noexcept {
  if (!p) return allocate(bytes, 0, site);
  if (bytes == 0) {  // glibc's behaviour: free, return NULL
    release(p);
    return nullptr;
  }
  if (oversized(bytes)) [[unlikely]]
    return nullptr;
  // A block of the direct arena, on a thread its fast paths serve: jemalloc's own realloc (in
  // place, or moved within the direct arena through the thread's cache), whose failure is
  // final as malloc's is (the arena overflows to the chain's later tiers by itself). Counting
  // is off whenever the fast paths are on, and site blocks are never in the direct arena's span.
  if (direct_path::thread_mode == direct_path::mode_all && direct_path::in_span(p)) [[likely]]
    return direct_path::reallocate(p, bytes);
  policy_runtime *rt = ready();
  if (!rt) {
    if (!ours(p)) return __libc_realloc(p, bytes);
  } else if (ours(p)) {
    // In place, or moved within its tier arena (ratio and threshold rules count the change; a
    // block followed by site is recorded again under its new start and size).
    const std::size_t before = rt->counting() ? tier_arena::usable_size(p) : 0;
    const unsigned s =
        site_floor.load(std::memory_order_acquire) != SIZE_MAX && site_block(p) ? site_reg->forget(p) : 0;
    if (void *q = tier_arena::reallocate(p, bytes)) {
      if (rt->counting()) rt->note_resize(q, before);
      if (s != 0) (void)site_reg->record(q, bytes, s);
      return q;
    }
    if (s != 0) (void)site_reg->record(p, tier_arena::usable_size(p), s);
  }
  // A glibc block, or its tier is full: a new block where the policy says, the contents, then
  // the old block goes.
  const std::size_t old = usable(p);
  void *q = allocate(bytes, 0, site);
  if (!q) return nullptr;  // p untouched, errno ENOMEM
  std::memcpy(q, p, old < bytes ? old : bytes);
  release(p);
  return q;
}

bool power_of_two(std::size_t a) noexcept { return a != 0 && (a & (a - 1)) == 0; }

[[gnu::always_inline]] inline void *aligned(std::size_t alignment, std::size_t bytes, const void *site) noexcept {
  // (The engine gives a small request with an alignment of 16 the 16-byte class.)
  if (alignment <= 8) return allocate(bytes, 0, site);
  return allocate_aligned(bytes, alignment, site);
}

void start_tiering(bool explain, bool strict, const hetmem::topology &t) noexcept;

// Whether sysfs (below HETMEM_SYSFS_ROOT, as the topology is read) lists exactly one node with
// memory; false when that cannot be told.
bool one_memory_node() noexcept {
  try {
    auto text = hetmem::sysfs::read_text_file(hetmem::sysfs::default_root() + "/sys/devices/system/node/has_memory",
                                              4096, /*not_procfs=*/true);
    if (!text) return false;
    auto nodes = hetmem::sysfs::parse_id_list(*text, hetmem::sysfs::max_node_id);
    return nodes && nodes->count() == 1;
  } catch (...) {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Set-up: runs once, from the constructor, with every allocation going to glibc meanwhile.
void start() noexcept {
  try {
    libc_usable_size = reinterpret_cast<std::size_t (*)(void *)>(::dlsym(RTLD_NEXT, "malloc_usable_size"));
    const auto env = hetmem::policy::read_environment();
    const bool strict = hetmem::policy::strict_requested(env);
    auto complain = [&](const std::string &what) {
      say(("hetmem: " + what + "\n").c_str());
      if (strict) {
        say("hetmem: strict mode (HETMEM_STRICT or 'strict' in the policy): stopping\n");
        std::_Exit(1);
      }
    };
    const char *explain_env = hetmem::sysfs::environment("HETMEM_EXPLAIN");
    bool explain = explain_env && *explain_env && std::strcmp(explain_env, "0") != 0;
    // The default policy on a machine with one memory node is the kernel's own placement,
    // whatever the topology says: read it only when something else asks (a policy, tiering,
    // an explanation) or there are several memory nodes (half a millisecond of every start-up).
    const bool topology_needed = hetmem::policy::names_a_policy(env) || env.autohbw_log || explain ||
                                 hetmem::sysfs::environment("HETMEM_TIERING") || !one_memory_node();
    hetmem::result<hetmem::topology> topo = hetmem::topology{};
    if (topology_needed) {
      // What placement uses, unless the explanation is asked for (its notes cover the rest).
      hetmem::load_options lo;
      lo.scope =
          explain || env.autohbw_log ? hetmem::sysfs::read_scope::everything : hetmem::sysfs::read_scope::placement;
      topo = hetmem::load_topology(lo);
    }
    if (!topo) {
      complain("cannot read the memory topology: " + topo.error().message + "; using the kernel's default placement");
    }
    hetmem::topology empty;
    const hetmem::topology &t = topo ? *topo : empty;
    auto chosen = hetmem::policy::choose_plan(env, t);
    if (!chosen.problem.empty())
      complain(chosen.problem + (strict ? "" : "\nhetmem: using the default policy instead"));
    auto rt = policy_runtime::create(chosen.used);
    if (!rt && chosen.problem.empty()) {
      complain("cannot set up the policy's tiers: " + rt.error().message + "; using the default policy");
      chosen.used = *hetmem::policy::default_plan(t);
      rt = policy_runtime::create(chosen.used);
    }
    if (!rt) {
      complain("the default policy cannot be set up (" + rt.error().message + "); hetmem stays out of the way");
      return;
    }
    // autohbw's AUTO_HBW_LOG: its INFO lines (level 0 and up) are hetmem's explanation.
    std::string autohbw_note;
    if (auto level = hetmem::policy::autohbw_log_level(env); !level) {
      complain(level.error().message + "; ignored");
    } else if (*level && **level >= 0) {
      explain = true;
      if (**level >= 2)
        autohbw_note =
            "hetmem: AUTO_HBW_LOG=2: single allocations are not logged (HETMEM_REPORT "
            "gives the pages per node at exit)\n";
    }
    if (explain)
      say(("hetmem: pid " + std::to_string(::getpid()) + ", " + hetmem::policy::describe_machine(t) + "\n" +
           hetmem::policy::explain(chosen.used) + autohbw_note)
              .c_str());
    (void)(*rt)->use_thread_tcache();  // the catch-all tier through jemalloc's own thread caches
    runtime = *rt;
    // Before any thread binds to the direct arena: malloc's fast path too when the arena can
    // overflow to the chain's later tiers by itself, else free's alone.
    if ((*rt)->direct_first()) direct_path::enable((*rt)->direct_overflow());
    state.store(state_ready, std::memory_order_release);
    start_tiering(explain, strict, t);
  } catch (...) {
    say("hetmem: out of memory while starting; hetmem stays out of the way\n");
  }
}

// ---------------------------------------------------------------------------------------------
// Automatic tiering (HETMEM_TIERING).
hetmem::tiering_engine *tiering = nullptr;  // leaked on purpose in a forked child

// Appends one line to HETMEM_REPORT's destination (a file, or "stderr"); nothing when unset.
void write_report_line(const char *text, std::size_t len) noexcept {
  const char *to = hetmem::sysfs::environment("HETMEM_REPORT");
  if (!to || !*to) return;
  const int fd =
      std::strcmp(to, "stderr") == 0 ? STDERR_FILENO : ::open(to, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!::write(fd, text, len);
  if (fd != STDERR_FILENO) ::close(fd);
}

void stop_tiering() noexcept {
  hetmem::tiering_engine *e = tiering;
  if (!e) return;
  tiering = nullptr;
  e->stop();
  try {
    const auto st = e->statistics();
    const std::string pid = "hetmem report: pid " + std::to_string(::getpid()) + ": ";
    std::string text = pid + "tiering " + st.summary() + "\n";
    for (const auto &r : st.site_reports) {
      char heat[32] = "not yet measured";
      if (r.heat == r.heat) std::snprintf(heat, sizeof heat, "heat %.2f", r.heat);
      text += pid + "site " + r.where + ": " + r.verdict + ", " + heat + ", " + std::to_string(r.blocks) +
              " live blocks, " + hetmem::format_bytes(r.bytes) + "\n";
    }
    write_report_line(text.data(), text.size());
  } catch (...) {
  }
  delete e;  // gives back what the engine configured (DAMON's kdamonds)
}

// Before the engine exists: the site registry and the two site arenas. The engine's tiers
// are set to what it would choose itself (the fastest tier for these CPUs and the next one),
// placed as the policy places its first tier, so that sites and engine agree on them; only
// when the policy's chain starts with that fastest tier. Sets options.sites on success;
// returns what to say under HETMEM_EXPLAIN either way.
std::string set_up_sites(hetmem::tiering_options &o, const hetmem::topology &t) {
  const tier_arena *direct = runtime->direct_arena();
  const std::string off = "allocation sites: not followed: ";
  if (!direct) return off + "the policy is not one chain of tiers served by the direct arena";
  const hetmem::tier &first = direct->description();
  auto fastest = hetmem::tier_by_rank(t, 0);
  if (!fastest) return off + "no fastest tier: " + fastest.error().message;
  const hetmem::tier fast_default = o.fast ? *o.fast : *fastest;
  if (fast_default.where.nodes != first.where.nodes)
    return off + "the policy's first tier (" + first.name + ") is not the tiering's fast tier (" + fast_default.name +
           ")";
  if (!o.slow && fast_default.next.empty())
    return off + "the tiering's fast tier (" + fast_default.name + ") has no next tier";
  hetmem::tier fast = first, slow = o.slow ? *o.slow : fast_default.next.front();
  if (slow.file || slow.where.nodes.empty() || slow.where.nodes.intersects(fast.where.nodes))
    return off + "the tiering's slow tier (" + slow.name + ") is not anonymous memory on nodes of its own";
  hetmem::tier fast_site = fast, slow_site = slow;
  fast_site.next.clear();
  slow_site.next.clear();
  fast_site.name += " (by site)";
  slow_site.name += " (by site)";
  auto reg = hetmem::detail::site_registry::create();
  if (!reg) return off + reg.error().message;
  auto f = tier_arena::get(fast_site, direct->fill_limit_percent());
  if (!f) return off + f.error().message;
  auto sl = tier_arena::get(slow_site, 100);
  if (!sl) return off + sl.error().message;
  o.fast = fast;
  o.slow = slow;
  o.sites = *reg;
  site_reg = *reg;
  site_fast = *f;
  site_slow = *sl;
  site_fast_id = (*f)->id();
  site_slow_id = (*sl)->id();
  return "allocation sites: blocks of " + hetmem::format_bytes(o.site_min_bytes) +
         " and up are followed by call site (" + fast.name + ", or " + slow.name + " once their site is found cold)";
}

// `strict`: a bad HETMEM_TIERING stops the program (status 1), as a bad policy does.
void start_tiering(bool explain, bool strict, const hetmem::topology &t) noexcept {
  const char *spec = hetmem::sysfs::environment("HETMEM_TIERING");
  if (!spec || !*spec || std::strcmp(spec, "0") == 0 || std::strcmp(spec, "off") == 0) return;
  try {
    auto o = hetmem::parse_tiering_options(spec);
    if (!o) {
      if (strict) {
        say(("hetmem: HETMEM_TIERING: " + o.error().message +
             "\nhetmem: strict mode (HETMEM_STRICT or 'strict' in the policy): stopping\n")
                .c_str());
        std::_Exit(1);
      }
      say(("hetmem: HETMEM_TIERING: " + o.error().message + "; tiering stays off\n").c_str());
      return;
    }
    // The write-protect source registers hetmem's own memory only: a userfaultfd of the
    // program's over its other memory must never meet EBUSY because of us.
    std::string site_note;
    if (o->site_min_bytes > 0) site_note = set_up_sites(*o, t);
    std::uintptr_t base = 0;
    std::size_t size = 0;
    tier_arena::window_range(&base, &size);
    if (size > 0) o->write_protect_within = {{base, base + size}};
    auto e = hetmem::tiering_engine::create(*o);
    if (!e) {
      say(("hetmem: automatic tiering not started: " + e.error().message + "\n").c_str());
      return;
    }
    if (auto ok = (*e)->start(); !ok) {
      say(("hetmem: automatic tiering not started: " + ok.error().message + "\n").c_str());
      return;
    }
    // The engine runs: blocks may now be followed by site.
    if (o->sites) site_floor.store(o->site_min_bytes, std::memory_order_release);
    if (explain) {
      const auto st = (*e)->statistics();
      std::string text = "hetmem: automatic tiering on: hotness from " + st.source + "\n";
      if (!site_note.empty()) text += "hetmem:   " + site_note + "\n";
      for (const auto &n : st.kernel_notes) text += "hetmem:   " + n + "\n";
      say(text.c_str());
    }
    tiering = e->release();
    // The child keeps no engine (its thread did not come along) and none of its descriptors.
    (void)pthread_atfork(nullptr, nullptr, [] {
      if (tiering) tiering->close_after_fork();
      tiering = nullptr;
    });
    (void)std::atexit(stop_tiering);
  } catch (...) {
    say("hetmem: out of memory while starting automatic tiering; it stays off\n");
  }
}

// HETMEM_REPORT=FILE (or "stderr"): at exit, one line with the pages of hetmem's memory per
// node as the kernel counts them (/proc/self/numa_maps, the mappings inside hetmem's window),
// and those of the rest of the process's mappings. The proof of placement for programs that
// cannot be asked.
struct node_pages {
  std::uint64_t bytes[64];
};

void add_numa_line(const char *line, std::size_t len, std::uintptr_t base, std::size_t size, node_pages *in,
                   node_pages *out) noexcept {
  char *end = nullptr;
  const std::uintptr_t start = std::strtoull(line, &end, 16);
  node_pages *target = start >= base && start - base < size ? in : out;
  std::uint64_t kps = 4;  // kernelpagesize_kB
  for (std::size_t i = 0; i + 18 < len; ++i)
    if (std::memcmp(line + i, "kernelpagesize_kB=", 18) == 0) kps = std::strtoull(line + i + 18, nullptr, 10);
  for (std::size_t i = 0; i + 1 < len; ++i) {
    if (line[i] != 'N' || (i > 0 && line[i - 1] != ' ')) continue;
    char *eq = nullptr;
    const unsigned long node = std::strtoul(line + i + 1, &eq, 10);
    if (eq == line + i + 1 || *eq != '=' || node >= 64) continue;
    target->bytes[node] += std::strtoull(eq + 1, nullptr, 10) * kps * 1024;
  }
}

int append_counts(char *buf, std::size_t cap, std::size_t used, const node_pages &np) noexcept {
  int n = 0;
  bool any = false;
  for (unsigned k = 0; k < 64; ++k)
    if (np.bytes[k]) {
      n += std::snprintf(buf + used + static_cast<std::size_t>(n), cap - used - static_cast<std::size_t>(n),
                         " N%u=%llu", k, static_cast<unsigned long long>(np.bytes[k] >> 10));
      any = true;
    }
  if (!any) n += std::snprintf(buf + used, cap - used, " none");
  return n;
}

[[gnu::destructor]] void preload_report() noexcept {
  const char *to = hetmem::sysfs::environment("HETMEM_REPORT");
  if (!to || !*to) return;
  std::uintptr_t base = 0;
  std::size_t size = 0;
  tier_arena::window_range(&base, &size);
  static node_pages in, out;
  static char buf[1 << 16];
  const int fd = ::open("/proc/self/numa_maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::size_t have = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
    std::size_t start = 0;
    for (std::size_t i = 0; i < have; ++i)
      if (buf[i] == '\n') {
        add_numa_line(buf + start, i - start, base, size, &in, &out);
        start = i + 1;
      }
    std::memmove(buf, buf + start, have - start);
    have -= start;
    if (have == sizeof buf - 1) have = 0;  // a line longer than the buffer: dropped
  }
  ::close(fd);
  static char line[2048];
  int n = std::snprintf(line, sizeof line, "hetmem report: pid %d: hetmem heap KiB per node:", ::getpid());
  n += append_counts(line, sizeof line, static_cast<std::size_t>(n), in);
  n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), "; rest of the process:");
  n += append_counts(line, sizeof line, static_cast<std::size_t>(n), out);
  n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), "\n");
  write_report_line(line, static_cast<std::size_t>(n));
}

[[gnu::constructor]] void preload_constructor() noexcept {
  const char *off = hetmem::sysfs::environment("HETMEM_DISABLE");
  if (off && *off && std::strcmp(off, "0") != 0) return;
  start();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The C interface. Return addresses identify call sites for `callsite` policies.
#define HETMEM_SITE __builtin_return_address(0)
extern "C" {

[[gnu::visibility("default")]] void *malloc(std::size_t bytes) noexcept { return allocate(bytes, 0, HETMEM_SITE); }

[[gnu::visibility("default")]] void free(void *p) noexcept { release(p); }

[[gnu::visibility("default")]] void *calloc(std::size_t n, std::size_t size) noexcept {
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return allocate_zeroed(bytes, HETMEM_SITE);
}

[[gnu::visibility("default")]] void *realloc(void *p, std::size_t bytes) noexcept {
  return reallocate(p, bytes, HETMEM_SITE);
}

[[gnu::visibility("default")]] void *reallocarray(void *p, std::size_t n, std::size_t size) noexcept {
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return reallocate(p, bytes, HETMEM_SITE);
}

[[gnu::visibility("default")]] int posix_memalign(void **out, std::size_t alignment, std::size_t bytes) noexcept {
  if (!power_of_two(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  const int saved = errno;
  void *p = aligned(alignment, bytes, HETMEM_SITE);
  if (!p) {
    errno = saved;  // posix_memalign reports through its result, not errno
    return ENOMEM;
  }
  *out = p;
  return 0;
}

[[gnu::visibility("default")]] void *aligned_alloc(std::size_t alignment, std::size_t bytes) noexcept {
  if (!power_of_two(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return aligned(alignment, bytes, HETMEM_SITE);
}

[[gnu::visibility("default")]] void *memalign(std::size_t alignment, std::size_t bytes) noexcept {
  // glibc rounds an alignment that is not a power of two up to the next one.
  if (alignment > (std::size_t{1} << 62)) {
    errno = EINVAL;
    return nullptr;
  }
  std::size_t a = alignment < 1 ? 1 : alignment;
  if (!power_of_two(a)) a = std::size_t{1} << (64 - __builtin_clzll(a));
  return aligned(a, bytes, HETMEM_SITE);
}

[[gnu::visibility("default")]] void *valloc(std::size_t bytes) noexcept {
  return aligned(page_size(), bytes, HETMEM_SITE);
}

[[gnu::visibility("default")]] void *pvalloc(std::size_t bytes) noexcept {
  const std::size_t ps = page_size();
  std::size_t rounded = 0;
  if (__builtin_add_overflow(bytes, ps - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  rounded &= ~(ps - 1);
  return aligned(ps, rounded == 0 ? ps : rounded, HETMEM_SITE);
}

[[gnu::visibility("default")]] std::size_t malloc_usable_size(void *p) noexcept { return usable(p); }

}  // extern "C"

// ---------------------------------------------------------------------------------------------
// The C++ operators: the throwing forms call the new-handler and throw std::bad_alloc.
namespace {
// The program's new-handler lives in the program's libstdc++ (ours is linked in privately):
// ask that one, found by name.
std::new_handler program_new_handler() noexcept {
  using getter = std::new_handler (*)();
  static std::atomic<getter> get{nullptr};
  getter g = get.load(std::memory_order_acquire);
  if (!g) {
    g = reinterpret_cast<getter>(::dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv"));
    if (!g) return nullptr;  // no libstdc++ in the program: no handler can have been set
    get.store(g, std::memory_order_release);
  }
  return g();
}

[[gnu::noinline]] void *new_slow(std::size_t bytes, std::size_t alignment, const void *site) {
  for (;;) {
    if (void *p = aligned(alignment, bytes, site)) return p;
    std::new_handler h = program_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}
inline void *new_throwing(std::size_t bytes, std::size_t alignment, const void *site) {
  if (void *p = aligned(alignment, bytes, site)) [[likely]]
    return p;
  return new_slow(bytes, alignment, site);
}
inline void *new_nothrow(std::size_t bytes, std::size_t alignment, const void *site) noexcept {
  try {
    return new_throwing(bytes, alignment, site);
  } catch (...) {
    return nullptr;
  }
}
}  // namespace

#define HETMEM_EXPORT [[gnu::visibility("default")]]
HETMEM_EXPORT void *operator new(std::size_t n) { return new_throwing(n, 0, HETMEM_SITE); }
HETMEM_EXPORT void *operator new[](std::size_t n) { return new_throwing(n, 0, HETMEM_SITE); }
HETMEM_EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  return new_nothrow(n, 0, HETMEM_SITE);
}
HETMEM_EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept {
  return new_nothrow(n, 0, HETMEM_SITE);
}
HETMEM_EXPORT void *operator new(std::size_t n, std::align_val_t a) {
  return new_throwing(n, static_cast<std::size_t>(a), HETMEM_SITE);
}
HETMEM_EXPORT void *operator new[](std::size_t n, std::align_val_t a) {
  return new_throwing(n, static_cast<std::size_t>(a), HETMEM_SITE);
}
HETMEM_EXPORT void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a), HETMEM_SITE);
}
HETMEM_EXPORT void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a), HETMEM_SITE);
}
HETMEM_EXPORT void operator delete(void *p) noexcept { release(p); }
HETMEM_EXPORT void operator delete[](void *p) noexcept { release(p); }
HETMEM_EXPORT void operator delete(void *p, std::size_t) noexcept { release(p); }
HETMEM_EXPORT void operator delete[](void *p, std::size_t) noexcept { release(p); }
HETMEM_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { release(p); }
HETMEM_EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { release(p); }
HETMEM_EXPORT void operator delete(void *p, std::align_val_t) noexcept { release(p); }
HETMEM_EXPORT void operator delete[](void *p, std::align_val_t) noexcept { release(p); }
HETMEM_EXPORT void operator delete(void *p, std::size_t, std::align_val_t) noexcept { release(p); }
HETMEM_EXPORT void operator delete[](void *p, std::size_t, std::align_val_t) noexcept { release(p); }
HETMEM_EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { release(p); }
HETMEM_EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { release(p); }
