// hetmem_gups — random updates (GUPS) over a table with a hot set, for judging automatic tiering.
//
// The table comes from malloc (so the preload sees it), is filled in order, and a hot set gets
// --hot-share of the updates (the rest land anywhere); half-way (--move-at) the hot set moves to
// another part of the table. Both hot sets are first put on --start-node (move_pages), so every
// tiering mode starts from the same place. Every second it prints, from the kernel (move_pages
// status of every 16th page of the hot set), the share of the hot set on the fast nodes, the
// pages the kernel counts as migrated (/proc/vmstat), and the CPU time spent on tiering: the
// engine's thread ("hetmem-tiering") or a `hetmem tierd` process, kdamond threads, kswapd.
// At the end: the time each hot set took to reach 90% in the fast tier, and a checksum of the
// table (the XOR of all words must equal its start value XOR every update applied).
//
//   hetmem_gups [--size 2G] [--hot 256M] [--hot-share 0.9] [--seconds 40] [--move-at 20]
//               [--fast-nodes 0] [--start-node 1] [--thp off|on] [--tlb-flush-ms 0] [--label NAME]
//
// --thp off (the default) asks for base pages (MADV_NOHUGEPAGE): with transparent huge pages
// the cold updates, spread over every 2 MiB page, make each huge page look recently used to any
// page-table based hotness source (the kernel's NUMA balancing, DAMON, soft-dirty bits alike).
//
// --tlb-flush-ms N (for emulators): every N ms a helper thread maps and unmaps 64 pages, which
// makes the kernel flush this process's whole TLB. A real CPU's TLB holds a few thousand entries,
// so a random walk over a table this large misses it on nearly every access and the page walk
// sets the accessed bit each time. QEMU's TCG keeps up to a million entries until the guest
// flushes, so a page once in it is never marked accessed again: accessed-bit samplers (DAMON,
// the kernel's reclaim) go blind to exactly the hottest pages. Flushing every few ms restores
// what hardware does; it costs every tiering mode the same.
#include <dirent.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::uint64_t parse_size(const char *s) {
  char *end = nullptr;
  double v = std::strtod(s, &end);
  switch (end && *end ? *end : 0) {
    case 'K':
    case 'k':
      v *= 1024.0;
      break;
    case 'M':
    case 'm':
      v *= 1024.0 * 1024;
      break;
    case 'G':
    case 'g':
      v *= 1024.0 * 1024 * 1024;
      break;
    default:
      break;
  }
  return static_cast<std::uint64_t>(v);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long move_pages_call(unsigned long n, void **pages, const int *nodes, int *status) {
  return ::syscall(SYS_move_pages, 0, n, pages, nodes, status, 0);
}

std::map<std::string, unsigned long long> vmstat() {
  std::map<std::string, unsigned long long> m;
  std::ifstream f("/proc/vmstat");
  std::string k;
  unsigned long long v = 0;
  while (f >> k >> v) m[k] = v;
  return m;
}

double stat_cpu(const std::string &stat_path) {
  std::ifstream f(stat_path);
  std::string s;
  if (!std::getline(f, s)) return 0;
  const auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) ut = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) st = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string read_comm(const std::string &path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

struct tiering_cpu {
  double engine = 0, kdamond = 0, kswapd = 0;
};

// CPU of whatever does tiering: our engine thread, a tierd process, kdamonds, kswapd.
tiering_cpu measure_tiering_cpu() {
  tiering_cpu c;
  if (DIR *d = ::opendir("/proc/self/task")) {
    while (const dirent *e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string t = std::string("/proc/self/task/") + e->d_name;
      if (read_comm(t + "/comm") == "hetmem-tiering") c.engine += stat_cpu(t + "/stat");
    }
    ::closedir(d);
  }
  if (DIR *d = ::opendir("/proc")) {
    while (const dirent *e = ::readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      const std::string p = std::string("/proc/") + e->d_name;
      const std::string comm = read_comm(p + "/comm");
      if (comm == "hetmem")
        c.engine += stat_cpu(p + "/stat");
      else if (comm.rfind("kdamond", 0) == 0)
        c.kdamond += stat_cpu(p + "/stat");
      else if (comm.rfind("kswapd", 0) == 0)
        c.kswapd += stat_cpu(p + "/stat");
    }
    ::closedir(d);
  }
  return c;
}

}  // namespace

int main(int argc, char **argv) {
  std::uint64_t size = 2ULL << 30, hot = 256ULL << 20;
  double hot_share = 0.9, seconds = 40, move_at = -1;
  std::vector<int> fast_nodes{0};
  int start_node = 1;
  bool thp = false;
  double tlb_flush_ms = 0;
  std::string label = "run";
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::printf(
          "usage: hetmem_gups [--size 2G] [--hot 256M] [--hot-share 0.9] [--seconds 40] [--move-at 20]\n"
          "                   [--fast-nodes 0] [--start-node 1] [--thp off|on] [--tlb-flush-ms 0] [--label NAME]\n");
      return 0;
    }
    if (i + 1 == argc) {
      std::fprintf(stderr, "hetmem_gups: %s needs a value (try --help)\n", k.c_str());
      return 2;
    }
    const char *v = argv[i + 1];
    if (k == "--size")
      size = parse_size(v);
    else if (k == "--hot")
      hot = parse_size(v);
    else if (k == "--hot-share")
      hot_share = std::atof(v);
    else if (k == "--seconds")
      seconds = std::atof(v);
    else if (k == "--move-at")
      move_at = std::atof(v);
    else if (k == "--start-node")
      start_node = std::atoi(v);
    else if (k == "--label")
      label = v;
    else if (k == "--tlb-flush-ms")
      tlb_flush_ms = std::atof(v);
    else if (k == "--thp")
      thp = std::strcmp(v, "on") == 0;
    else if (k == "--fast-nodes") {
      fast_nodes.clear();
      for (const char *p = v; *p;) {
        fast_nodes.push_back(static_cast<int>(std::strtol(p, const_cast<char **>(&p), 10)));
        if (*p == ',')
          ++p;
        else if (*p)
          break;
      }
    } else {
      std::fprintf(stderr, "hetmem_gups: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (move_at < 0) move_at = seconds / 2;
  if (hot == 0 || hot * 4 > size) {
    std::fprintf(stderr, "hetmem_gups: the hot set must be at most a quarter of the table\n");
    return 2;
  }
  if (tlb_flush_ms < 0 || tlb_flush_ms > 10000) {
    std::fprintf(stderr, "hetmem_gups: --tlb-flush-ms must be between 0 (off) and 10000\n");
    return 2;
  }
  const std::uint64_t words = size / 8, hot_words = hot / 8;
  if (hot_words < 512 || words < 4 * hot_words) {
    std::fprintf(stderr, "hetmem_gups: the hot set must be at least 4K and the table four times larger\n");
    return 2;
  }
  auto *table = static_cast<std::uint64_t *>(std::malloc(size));
  if (!table) {
    std::fprintf(stderr, "hetmem_gups: malloc(%llu) failed\n", static_cast<unsigned long long>(size));
    return 1;
  }
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  {
    const auto lo = (reinterpret_cast<std::uintptr_t>(table) + page - 1) / page * page;
    const auto hi = (reinterpret_cast<std::uintptr_t>(table) + size) / page * page;
    if (hi > lo) (void)::madvise(reinterpret_cast<void *>(lo), hi - lo, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  }
  const double t_init = now_seconds();
  std::uint64_t expect = 0;
  for (std::uint64_t i = 0; i < words; ++i) {
    table[i] = i;
    expect ^= i;
  }
  // Hot sets: at 1/2 and 3/4 of the table (filled last, so on the slow tier if the fast one filled).
  const std::uint64_t hot_at[2] = {words / 2, words / 2 + words / 4};
  const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto hot_pages = [&](int which, std::size_t stride) {
    std::vector<void *> pages;
    const auto base = reinterpret_cast<std::uintptr_t>(table + hot_at[which]);
    for (std::uintptr_t a = (base + ps - 1) / ps * ps; a + ps <= base + hot; a += ps * stride)
      pages.push_back(reinterpret_cast<void *>(a));
    return pages;
  };
  if (start_node >= 0) {
    for (int w = 0; w < 2; ++w) {
      auto pages = hot_pages(w, 1);
      std::vector<int> nodes(pages.size(), start_node), status(pages.size(), 0);
      for (std::size_t at = 0; at < pages.size(); at += 4096) {
        const std::size_t n = std::min<std::size_t>(4096, pages.size() - at);
        (void)move_pages_call(n, pages.data() + at, nodes.data() + at, status.data() + at);
      }
    }
  }
  char tlb_note[64] = "TLB left alone";
  if (tlb_flush_ms > 0) std::snprintf(tlb_note, sizeof tlb_note, "TLB flushed every %g ms", tlb_flush_ms);
  std::printf(
      "gups %s: table %.0f MiB (%s pages), hot set %.0f MiB (%.0f%% of updates), moved at %.0f s; %s; ready in %.1f "
      "s\n",
      label.c_str(), static_cast<double>(size) / 1048576, thp ? "huge" : "base", static_cast<double>(hot) / 1048576,
      hot_share * 100, move_at, tlb_note, now_seconds() - t_init);
  std::fflush(stdout);

  auto fast_share = [&](int which) {
    auto pages = hot_pages(which, 16);
    std::vector<int> status(pages.size(), -1);
    for (std::size_t at = 0; at < pages.size(); at += 4096) {
      const std::size_t n = std::min<std::size_t>(4096, pages.size() - at);
      if (move_pages_call(n, pages.data() + at, nullptr, status.data() + at) != 0) return -1.0;
    }
    std::size_t fast = 0;
    for (int s : status)
      for (int f : fast_nodes)
        if (s == f) ++fast;
    return pages.empty() ? 0.0 : static_cast<double>(fast) / static_cast<double>(pages.size());
  };

  // Unmapping more than the kernel's single-page flush ceiling (33 pages on x86) flushes the
  // whole TLB of this process on every CPU that runs it.
  std::atomic<bool> stop_flushing{false};
  std::thread flusher;
  if (tlb_flush_ms > 0) {
    flusher = std::thread([&] {
      const std::size_t len = 64 * page;
      while (!stop_flushing.load(std::memory_order_relaxed)) {
        void *m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (m != MAP_FAILED) (void)::munmap(m, len);
        std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(tlb_flush_ms));
      }
    });
  }
  const auto vm0 = vmstat();
  const auto cpu0 = measure_tiering_cpu();
  auto delta = [&](const std::map<std::string, unsigned long long> &vm, const char *k) {
    auto a = vm.find(k), b = vm0.find(k);
    return (a == vm.end() ? 0ULL : a->second) - (b == vm0.end() ? 0ULL : b->second);
  };
  std::uint64_t x = 0x9e3779b97f4a7c15ULL, updates = 0, applied_xor = 0;
  const auto hot_limit = static_cast<std::uint64_t>(hot_share * 65536.0);
  const double t0 = now_seconds();
  double next_report = 1, reached[2] = {-1, -1};
  int phase = 0;
  std::uint64_t updates_at_report = 0;
  double last_t = 0;
  for (;;) {
    for (int k = 0; k < 65536; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      // NOLINTNEXTLINE(clang-analyzer-core.DivideZero): both are at least 512, checked above
      const std::uint64_t idx = (x & 0xffff) < hot_limit ? hot_at[phase] + (x >> 20) % hot_words : (x >> 20) % words;
      table[idx] ^= x;
      applied_xor ^= x;
    }
    updates += 65536;
    const double t = now_seconds() - t0;
    if (t < next_report) continue;
    const int shown = phase;
    const double share = fast_share(phase);
    const double since = phase == 0 ? t : t - move_at;
    if (reached[phase] < 0 && share >= 0.9) reached[phase] = since;
    const auto vm = vmstat();
    const auto cpu = measure_tiering_cpu();
    std::printf(
        "gups %s: t=%3.0f s  %6.2f M updates/s  hot set %d in fast tier %5.1f%%  migrated %llu "
        "(promoted %llu, demoted %llu)  tiering cpu %.2f s (engine %.2f, kdamond %.2f, kswapd %.2f)\n",
        label.c_str(), t, static_cast<double>(updates - updates_at_report) / 1e6 / (t - last_t), shown + 1, share * 100,
        delta(vm, "pgmigrate_success"), delta(vm, "pgpromote_success"),
        delta(vm, "pgdemote_kswapd") + delta(vm, "pgdemote_direct") + delta(vm, "pgdemote_khugepaged"),
        (cpu.engine - cpu0.engine) + (cpu.kdamond - cpu0.kdamond) + (cpu.kswapd - cpu0.kswapd),
        cpu.engine - cpu0.engine, cpu.kdamond - cpu0.kdamond, cpu.kswapd - cpu0.kswapd);
    std::fflush(stdout);
    updates_at_report = updates;
    last_t = t;
    next_report = static_cast<double>(static_cast<long>(t)) + 1;
    if (phase == 0 && t >= move_at) phase = 1;
    if (t >= seconds) break;
  }
  const double elapsed = now_seconds() - t0;
  stop_flushing = true;
  if (flusher.joinable()) flusher.join();
  const auto cpu = measure_tiering_cpu();
  std::uint64_t got = 0;
  for (std::uint64_t i = 0; i < words; ++i) got ^= table[i];
  const bool ok = got == (expect ^ applied_xor);
  const double engine = (cpu.engine - cpu0.engine) + (cpu.kdamond - cpu0.kdamond);
  auto when = [](double s) {
    char b[32];
    if (s < 0) return std::string("never");
    std::snprintf(b, sizeof b, "%.0f s", s);
    return std::string(b);
  };
  std::printf(
      "gups %s: summary: 90%% of hot set 1 in the fast tier after %s, of hot set 2 after %s (of the move); "
      "%.1f M updates/s; tiering cpu %.2f s = %.1f%% of one core (engine+kdamond), kswapd %.2f s; "
      "checksum %s\n",
      label.c_str(), when(reached[0]).c_str(), when(reached[1]).c_str(), static_cast<double>(updates) / elapsed / 1e6,
      engine, 100 * engine / elapsed, cpu.kswapd - cpu0.kswapd, ok ? "ok" : "MISMATCH");
  std::free(table);
  return ok ? 0 : 3;
}
