// hetmem/tiering.hpp — automatic tiering: keep the hot pages of one or more processes in the
// fast tier and the cold ones out of it, within a byte budget and a migration rate.
//
// Contract:
// - Hotness comes from the best source the machine allows, and the engine says which:
//   1. DAMON through sysfs (/sys/kernel/mm/damon/admin; root, CONFIG_DAMON_SYSFS), used only
//      when no kdamond is configured there already, or only abandoned ones (off, their target
//      processes gone): DAMON's sysfs interface cannot add one without rebuilding the others,
//      so hetmem never touches a live one. hetmem sets each target's regions to the process's
//      populated mappings itself (DAMON's own guess swallows hetmem's reserved window). While
//      one of the kernel's own DAMON modules runs (DAMON_STAT, DAMON_RECLAIM, DAMON_LRU_SORT),
//      the kernel starts no other kdamond: the source says which holds DAMON, and stops
//      DAMON_STAT for its own run only when told to (damon_takeover);
//   2. soft-dirty bits (/proc/PID/clear_refs and pagemap; the process's owner may use them): a
//      page written during a short window is hot. It sees writes only, and the clearing makes
//      each page's first write in a window take a minor fault.
//   3. userfaultfd write-protect bits (Linux 6.7: UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN; any
//      user): for the process that runs the engine only (the preload's, or the API's with no
//      pids), where soft-dirty bits do not exist (arm64, kernels built without them). Like
//      soft-dirty it sees writes in a window; each window protects a slice of each chunk, and
//      a huge page it watches is mapped as base pages after its first write. Memory another
//      userfaultfd has registered stays unwatched (cold); write_protect_within limits what it
//      registers (the preload: its own address window, so a program's own userfaultfd use of
//      its other memory is never refused with EBUSY).
//   The write-bit sources (2, 3) halve their window, down to 1 ms, while the median watched
//   slice of a chunk is written half or more in it (a page counts once however often it is
//   written, so a saturated window ranks nothing), and double it back, up to the configured one,
//   while it is written less than an eighth.
//   4. the allocator's own knowledge, beside one of the above (options.sites: the preload's
//   registry of its large blocks by call site; this process only). A block counts for its site
//   once it has been watched for site_maturity_intervals; a site whose mature blocks are at
//   promote_threshold or above becomes hot, one below half of it cold (set in the registry, where
//   the preload places the site's next blocks by it), and a younger block's chunks take their
//   site's heat (raised for a hot site, capped for a cold one), so a new block from a hot site is
//   promoted at once and one from a cold site is not promoted for the writes that fill it.
//   The chunks of a block freed since the last interval turn cold (unless a live block shares
//   them): its memory stays resident in the allocator and is handed out again where it is, so
//   promoting it for its old writes would put the next block (a cold site's too) on the fast tier.
//   5. hardware sampling (perf_event_open, after the write-bit sources when automatic): the data
//   addresses of sampled memory operations, which sees reads too: Intel's mem-loads (PEBS load
//   latency, loads of at least 64 cycles; with its mem-loads-aux leader where the PMU has one)
//   or AMD's IBS op samples (loads and stores), as the PMUs' sysfs descriptions define them. One
//   event and ring per thread of each managed process (the kernel maps no ring of an inherited
//   per-thread event): new threads are picked up each interval, one that starts and ends within
//   an interval goes unseen, the engine's own thread is left out. Needs
//   perf_event_paranoid <= 2 for one's own processes, or CAP_PERFMON. The period doubles while a
//   thread's ring overflows, and halves back once they stay nearly empty. A chunk's heat is its
//   samples in the interval over those of the process's most sampled chunk. perf_event
//   "page-faults" takes the kernel's software event instead (no PMU: every page fault's address,
//   first touches and the faults other mechanisms cause; a weak signal, for machines without a
//   PMU and for testing the source).
// - Memory is judged in chunks (2 MiB by default, one transparent huge page): each interval
//   every chunk gets a heat in [0, 1] (DAMON: the share of samples that saw an access; soft
//   dirty: the share of its present pages written in the window), smoothed over intervals.
// - Where pages are is the kernel's word: move_pages status for a sample of each chunk's pages.
// - Decisions: the fast tier's budget (fast_limit_bytes, else the fast nodes' free memory above
//   a reserve) is filled with the hottest chunks whose heat reaches promote_threshold. A chunk
//   outside that set leaves the fast tier only to make room or to restore the reserve, coldest
//   first, and to make room only if it is clearly colder (its heat below the coldest admitted
//   chunk's by `hysteresis`, or below half the threshold). A chunk
//   moved one way is not moved back within cooldown_seconds. Migration stays under
//   max_bytes_per_second (demotions that make room come first).
// - Memory pressure: PSI ("some" avg10 of /proc/pressure/memory, or the cgroup's
//   memory.pressure) above psi_threshold doubles the reserve, so the fast tier is emptied of
//   cold pages before the kernel starts reclaiming.
// - The kernel: NUMA balancing in tiering mode (kernel.numa_balancing & 2) promotes on its own;
//   by default hetmem then only demotes (coexist), or stands aside (yield) or runs fully
//   (force). NUMA balancing in its normal mode (1) pulls pages back to the CPUs' node, which
//   undoes demotion to CPU-less nodes: reported, not changed. kernel_notes() says what was seen.
// - Data is never touched by hetmem; the kernel copies pages (see migrate.hpp).
#pragma once
#include <sys/types.h>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include "hetmem/migrate.hpp"
#include "hetmem/result.hpp"
#include "hetmem/sysfs/model.hpp"
#include "hetmem/tier.hpp"

namespace hetmem {

// What the running kernel does about tiering on its own (read only; nothing is changed).
struct kernel_tiering_state {
  int numa_balancing = -1;           // /proc/sys/kernel/numa_balancing: 0 off, 1 normal, 2 tiering, 3 both; -1 absent
  int demotion_enabled = -1;         // /sys/kernel/mm/numa/demotion_enabled: 1 / 0; -1 absent
  int promote_rate_limit_mbps = -1;  // /proc/sys/kernel/numa_balancing_promote_rate_limit_MBps
  int hot_threshold_ms = -1;         // debugfs sched/numa_balancing/hot_threshold_ms (root, debugfs mounted); -1 unread
  bool node_reclaim = false;         // nodeN/reclaim exists: proactive reclaim (demotion first) per node on request
  bool damon_sysfs = false;          // /sys/kernel/mm/damon/admin exists
  int damon_kdamonds = 0;            // kdamonds configured there (by anyone)
  int damon_running = 0;             // ... of which running
  std::vector<std::string> damon_schemes;  // "kdamond 0: paddr pageout" for each scheme configured
  bool damon_reclaim = false;              // the DAMON_RECLAIM module is enabled
  bool damon_stat = false;                 // the DAMON_STAT module is enabled (it holds DAMON, see damon_takeover)
  bool damon_lru_sort = false;             // the DAMON_LRU_SORT module is enabled
  bool psi = false;                        // /proc/pressure/memory readable
  [[nodiscard]] bool kernel_promotes() const noexcept { return numa_balancing > 0 && (numa_balancing & 2) != 0; }
  [[nodiscard]] bool balancing_pulls_back() const noexcept { return numa_balancing > 0 && (numa_balancing & 1) != 0; }
  // One line per finding, plain words ("NUMA balancing is in tiering mode (2): the kernel
  // promotes hot pages itself").
  [[nodiscard]] std::vector<std::string> notes() const;
};

// Reads the state relative to `root` ("" for the real /proc and /sys).
[[nodiscard]] kernel_tiering_state detect_kernel_tiering(const std::string &root = "");
// The same, taking NUMA balancing's mode and demotion from a snapshot already read below `root`
// (a caller that has loaded the topology does not read it twice).
[[nodiscard]] kernel_tiering_state detect_kernel_tiering(const std::string &root, const sysfs::snapshot &snap);

enum class hotness_source { automatic, damon, soft_dirty, write_protect, perf };
enum class kernel_coexistence { coexist, yield, force };

struct tiering_statistics;
namespace detail {
class site_registry;
}

struct tiering_options {
  std::vector<pid_t> pids;   // processes to manage; empty (and no cgroup): this process
  std::string cgroup;        // a cgroup v2 directory: every process in its cgroup.procs, re-read each interval
  std::optional<tier> fast;  // default: rank 0 for the calling thread's initiator
  std::optional<tier> slow;  // default: the next tier after `fast` (its first `next`)
  std::uint64_t fast_limit_bytes = 0;   // most managed bytes on the fast tier; 0: its free memory above the reserve
  double fast_reserve_fraction = 0.05;  // keep this share of each fast node free (before the kernel reclaims)
  double psi_threshold = 10.0;          // memory "some" avg10 in percent that doubles the reserve
  double interval_seconds = 1.0;
  std::uint64_t max_bytes_per_second = 256ULL << 20;  // migration, both directions together
  double promote_threshold = 0.05;                    // heat a chunk needs to be worth the fast tier
  double hysteresis = 0.05;        // heat margin below the coldest admitted chunk before a chunk leaves
  double cooldown_seconds = 10.0;  // a chunk moved one way stays at least this long
  double smoothing = 0.5;          // weight of the newest observation in a chunk's heat
  std::size_t chunk_bytes = 2U << 20;
  hotness_source source = hotness_source::automatic;
  kernel_coexistence coexist = kernel_coexistence::coexist;
  double soft_dirty_window_seconds = 0.1;  // writes seen within this window make a page hot (soft-dirty, write-protect)
  // The write-protect source registers only memory inside these [start, end) ranges; empty: all
  // managed memory.
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> write_protect_within;
  // Chunks the write-protect source scans per interval (each scan walks a slice's page tables
  // twice and flushes the TLB of every CPU the program runs on); past that many, chunks take
  // turns and keep their heat while not scanned. 512: 1 GiB of 2 MiB chunks.
  std::size_t write_protect_chunks_per_interval = 512;
  // The share of the program's time the write-bit sources may cost it: the first write to a
  // page they protected is a fault, whose cost the source measures when it opens (a few µs
  // natively; ten times that and more in some paravirtualized guests). Each interval the
  // write-protect source counts the faults it caused and scans fewer chunks while their cost
  // passes this share (more again, up to the number above, once well below it); the soft-dirty
  // source, whose clear protects all of a process's memory, clears less often instead. `auto` passes the source over
  // when one fault costs more than write_protect_auto_max_fault_seconds (another source is chosen if there is one; with
  // none, this one runs, held to its share). 0: no limit (the configured number of chunks every interval, whatever it
  // costs). The setting `max-overhead`.
  double write_protect_max_overhead = 0.05;
  double write_protect_auto_max_fault_seconds = 10e-6;
  std::string damon_admin = "/sys/kernel/mm/damon/admin";
  // The kernel's own DAMON modules (DAMON_STAT, DAMON_RECLAIM, DAMON_LRU_SORT) start their
  // kdamond exclusively: while one runs, a kdamond set up through sysfs stays off (writing 'on'
  // fails with EBUSY), so the DAMON source cannot run. DAMON_STAT (a monitor only, which Debian's
  // 7.x kernels start at boot) is stopped for as long as the DAMON source runs when
  // damon_takeover is set (the setting `damon-takeover=on`, `tierd --damon-takeover`) and
  // started again when the source closes (the engine's end, or a fall-back to another source);
  // not after a crash or SIGKILL, which leave it off. Without it, or for the other two (they
  // reclaim and sort memory for the whole system), the DAMON source says which module holds
  // DAMON and `auto` takes the next source. damon_modules: where the modules' parameters are.
  bool damon_takeover = false;
  std::string damon_modules = "/sys/module";
  // The perf source (see the contract, 5): "auto" (mem-loads, then ibs-op), "mem-loads", "ibs-op"
  // or "page-faults"; events per sample (0: 1000 loads, 65536 IBS ops, every page fault); the
  // root below which /sys is read for the PMUs' descriptions ("" the real one).
  std::string perf_event = "auto";
  std::uint64_t perf_period = 0;
  std::string perf_root;
  // The allocator's knowledge (see the contract, 4): the registry the preload records its large
  // blocks in, or nullptr. Only with this process managed. site_min_bytes: the smallest block the
  // preload records and places by its site (0: none; the engine itself does not read it).
  detail::site_registry *sites = nullptr;
  std::size_t site_min_bytes = std::size_t{1} << 20;
  unsigned site_maturity_intervals = 3;
  // Called by the engine after each interval (from its thread when started with start()).
  std::function<void(const tiering_statistics &)> on_interval;
};

struct tiering_statistics {
  std::string source;  // "DAMON (kdamond 0, pid 123)", "soft-dirty bits (...)", "userfaultfd write-protect bits (...)"
  std::vector<std::string> kernel_notes;  // detect_kernel_tiering().notes() at start, plus what the engine decided
  bool promoting = true;                  // false when the kernel promotes and hetmem coexists
  std::uint64_t intervals = 0;
  std::uint64_t pages_promoted = 0, pages_demoted = 0;
  std::uint64_t promote_failed = 0, demote_failed = 0;  // pages the kernel refused (busy, no memory, ...)
  std::uint64_t fast_bytes = 0, slow_bytes = 0;         // managed memory per tier now (sampled)
  std::uint64_t hot_bytes = 0;                          // managed memory at or above promote_threshold
  std::uint64_t managed_bytes = 0;                      // present memory in the managed ranges (sampled)
  std::size_t processes = 0;
  std::size_t chunks = 0;  // chunks tracked: the populated parts of the managed mappings (Linux 6.7+), else all
  double psi_some_avg10 = 0;
  std::uint64_t fast_reserve_bytes = 0;  // free memory the engine keeps on the fast tier now (doubled under pressure)
  // CPU time of the engine's thread (step() in the caller's thread), all of it, and two parts
  // of it: reading the hotness source (observe_cpu_seconds) and the move_pages calls
  // (migrate_cpu_seconds: mostly the kernel copying pages, work any tiering must pay for, which
  // the kernel's own tiering charges to the program instead). The rest is the engine's bookkeeping.
  double engine_cpu_seconds = 0;
  double observe_cpu_seconds = 0;
  double migrate_cpu_seconds = 0;
  double source_cpu_seconds = 0;  // CPU time of the kdamond working for it (DAMON), 0 otherwise
  // The write window in use (soft-dirty and write-protect bits; 0 for DAMON): at most the
  // configured one, halved down to 1 ms while most watched pages are written within it.
  double window_seconds = 0;
  // Events per sample (the perf source; 0 for the others): doubled while a ring overflows.
  std::uint64_t sample_period = 0;
  // The write-bit sources (soft-dirty, write-protect): what one write fault they cause costs
  // here (measured when it opened), the share of the program's time the faults it caused cost
  // (the last interval; soft-dirty: its last clear of the bits), and the chunks the
  // write-protect source scans per interval now (0 for the other sources).
  double write_fault_seconds = 0;
  double source_overhead = 0;
  std::size_t scan_chunks = 0;
  double elapsed_seconds = 0;
  // The allocator's knowledge (with options.sites): sites with live large blocks or a verdict,
  // of which hot and cold; live blocks tracked; chunks that took their site's heat (in all);
  // chunks of freed blocks made cold (in all); blocks (bytes) the preload placed straight on
  // the slow tier because their site was cold.
  bool site_knowledge = false;
  std::size_t sites = 0, sites_hot = 0, sites_cold = 0, site_blocks = 0;
  std::uint64_t site_prior_chunks = 0, site_freed_chunks = 0, cold_placed_blocks = 0, cold_placed_bytes = 0;
  struct site_report {
    const void *address = nullptr;
    std::string where;  // "gups+0x1a2b (/usr/bin/gups)" when the loader knows, else the address
    double heat = 0;    // smoothed heat of its mature blocks; NaN before any matured
    std::uint64_t bytes = 0;
    std::size_t blocks = 0;
    std::string verdict;  // "hot", "cold", "learning"
  };
  std::vector<site_report> site_reports;  // the sites with the most live bytes, at most 8
  std::string last_error;                 // the latest failure that did not stop the engine
  // "interval 12: fast 512.0 MiB, slow 1.5 GiB, hot 256.0 MiB; promoted 65536, demoted 65536 pages;
  // cpu 0.21 s (observing 0.05 s, moving pages 0.12 s)"; the cpu is the engine's and the
  // kdamond's together, the kdamond's also named in the parentheses when there is one. With
  // site knowledge: "; sites 3 (1 hot, 2 cold), 40 blocks placed on the slow tier by site (2.5 GiB)".
  [[nodiscard]] std::string summary() const;
};

// The engine. create() checks the tiers and the processes and opens the hotness source;
// step() runs one interval in the calling thread; start() runs intervals on a thread of its own
// (named "hetmem-tiering") until stop() or destruction.
class tiering_engine {
 public:
  [[nodiscard]] static result<std::unique_ptr<tiering_engine>> create(tiering_options options);
  ~tiering_engine();
  tiering_engine(const tiering_engine &) = delete;
  tiering_engine &operator=(const tiering_engine &) = delete;

  // One interval: observe (the soft-dirty source waits its window here), decide, migrate.
  result<void> step();
  [[nodiscard]] result<void> start();
  void stop() noexcept;
  [[nodiscard]] tiering_statistics statistics() const;
  // The tiers it moves pages between.
  [[nodiscard]] const tier &fast_tier() const noexcept;
  [[nodiscard]] const tier &slow_tier() const noexcept;
  // For a child of fork() that inherited a started engine (its thread did not come along):
  // closes the descriptors the engine keeps open on the parent's memory (the write-protect
  // source's userfaultfd and pagemap), leaving the parent's engine as it is. The object is then
  // fit only to be leaked (destroying it would also tear down what the parent's engine set up
  // outside the process, such as DAMON's kdamonds). Async-signal-safe: callable from a
  // pthread_atfork child handler.
  void close_after_fork() noexcept;

  struct impl;

 private:
  explicit tiering_engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// "fast-limit=512M,rate=256M,interval=1,source=damon,coexist=force,threshold=0.05,
// cooldown=10,reserve=5%,chunk=2M,window=0.1,max-overhead=0.05": the preload's HETMEM_TIERING value ("1" or "on"
// for the defaults). Errors name the bad key or value.
[[nodiscard]] result<tiering_options> parse_tiering_options(const std::string &spec);

namespace detail {
// The decision of one interval, apart from any system call (unit-tested on its own).
struct chunk_view {
  double heat = 0;           // smoothed
  std::uint64_t bytes = 0;   // present bytes in the chunk (sampled estimate)
  double fast_share = 0;     // share of those on the fast tier
  double last_move = -1e18;  // engine time of its last migration
  int last_direction = 0;    // +1 promoted, -1 demoted
};
struct plan_limits {
  std::int64_t room_bytes = 0;     // more bytes the fast tier may take now (negative: must give back)
  std::uint64_t budget_bytes = 0;  // migration allowed this interval
  bool promote = true;
  double now = 0;
  double promote_threshold = 0.05, hysteresis = 0.05, cooldown = 10;
};
struct tiering_plan {
  std::vector<std::size_t> promote, demote;  // chunk indexes, in order of execution (demote first)
  std::uint64_t promote_bytes = 0, demote_bytes = 0;
  std::uint64_t hot_bytes = 0;  // present bytes of chunks at or above the threshold
};
[[nodiscard]] tiering_plan plan_interval(const std::vector<chunk_view> &chunks, const plan_limits &limits);

// A PMU event as perf_event_open takes it, from /sys/bus/event_source/devices/PMU below `root`:
// the PMU's type, and the event's terms ("event=0xcd,umask=0x1,ldlat=3" in events/EVENT; none
// when `event` is empty) with `overrides` replacing or adding terms, each placed in config,
// config1 or config2 as format/TERM says ("config1:0-15"). Errors name the file and the cause:
// ENOENT for a missing PMU, event or format; EINVAL/ERANGE for text that does not parse or fit.
struct perf_event_spec {
  std::string name;  // "cpu/mem-loads"
  std::uint32_t type = 0;
  std::uint64_t config = 0, config1 = 0, config2 = 0;
};
[[nodiscard]] result<perf_event_spec> resolve_perf_event(
    const std::string &root, const std::string &pmu, const std::string &event,
    const std::vector<std::pair<std::string, std::uint64_t>> &overrides = {});
}  // namespace detail

}  // namespace hetmem
