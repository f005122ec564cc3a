// bench_preload.cpp — allocation-heavy programs (in the style of mimalloc-bench) run whole under
// each allocator, side by side in one run: glibc, Debian's libjemalloc.so.2 preloaded, memkind's
// libmemtier.so with a one-tier STATIC_RATIO, and libhetmem-preload.so with the default policy
// and with a ratio policy. Each workload is this program re-executed (`--workload NAME`) in a
// child; wall time and peak RSS (getrusage of the child) are the medians of interleaved runs.
// The single-threaded workloads and the start-up runs are pinned to one CPU, the same for all.
// Also the preload's start-up cost on /bin/true.
//
// Usage: hetmem_bench_preload [--quick] [--reps N] [--preload PATH] [--baseline PATH] [--json FILE]
//                             [--startup-tree DIR]...
// --baseline PATH adds a column for another build of the preload (before a change, say), run
// interleaved with the others, with its ratio to hetmem's.
// Targets: hetmem default within 1.1x of jemalloc's time and memory on every workload (issue 5;
// issue 22 added calloc-fresh, aligned-pairs and small-realloc); at least 4x faster than
// libmemtier where it completes; start-up within 0.5 ms of preloaded jemalloc (issue 22).
// --startup-tree DIR (repeatable) measures start-up again with HETMEM_SYSFS_ROOT=DIR, a captured
// machine of several nodes, where the preload reads the topology (jemalloc and hetmem only).
// --json FILE also writes every median as JSON (schema hetmem.bench.preload/1), which the docs'
// tables are made from.
#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

bool quick = false;
unsigned scale() { return quick ? 20 : 1; }  // --quick: a twentieth of the work

std::uint64_t next(std::uint64_t &s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}
void touch(void *p, std::size_t n) {
  auto *c = static_cast<volatile unsigned char *>(p);
  c[0] = 1;
  c[n - 1] = 2;
}

// larson-like server churn: each thread replaces random slots of its own array with blocks of
// random sizes; every so often it hands a batch to the next thread, which frees them.
void larson() {
  constexpr unsigned threads = 4, slots = 2000;
  const unsigned rounds = 10'000'000 / scale();  // about 0.3 s: long enough to time reliably
  std::vector<std::atomic<void **>> mailbox(threads);
  for (auto &m : mailbox) m.store(nullptr);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::uint64_t s = 0x1234567ull * (t + 1);
      std::vector<void *> mine(slots, nullptr);
      for (unsigned i = 0; i < rounds; ++i) {
        const unsigned k = static_cast<unsigned>(next(s) % slots);
        std::free(mine[k]);
        const std::size_t n = 16 + next(s) % 1000;
        mine[k] = std::malloc(n);
        touch(mine[k], n);
        if ((i & 4095) == 0) {  // hand 64 blocks to the next thread, take what was left for us
          auto **batch = static_cast<void **>(std::malloc(64 * sizeof(void *)));
          for (unsigned j = 0; j < 64; ++j) {
            batch[j] = mine[(k + j) % slots];
            mine[(k + j) % slots] = nullptr;
          }
          void **old = mailbox[(t + 1) % threads].exchange(batch);
          if (old) {
            for (unsigned j = 0; j < 64; ++j) std::free(old[j]);
            std::free(old);
          }
        }
      }
      for (void *p : mine) std::free(p);
    });
  for (auto &t : ts) t.join();
  for (auto &m : mailbox)
    if (void **old = m.exchange(nullptr)) {
      for (unsigned j = 0; j < 64; ++j) std::free(old[j]);
      std::free(old);
    }
}

// One producer allocates, one consumer frees, through a ring.
void producer_consumer() {
  constexpr std::size_t ring = 4096;
  const std::size_t count = 4'000'000 / scale();
  std::vector<std::atomic<void *>> slots(ring);
  for (auto &s : slots) s.store(nullptr);
  std::thread consumer([&] {
    std::size_t got = 0, at = 0;
    while (got < count) {
      void *p = slots[at].exchange(nullptr, std::memory_order_acquire);
      if (p) {
        std::free(p);
        ++got;
        at = (at + 1) % ring;
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::uint64_t s = 99;
  std::size_t at = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t n = 32 + next(s) % 480;
    void *p = std::malloc(n);
    touch(p, n);
    while (slots[at].load(std::memory_order_acquire) != nullptr) std::this_thread::yield();
    slots[at].store(p, std::memory_order_release);
    at = (at + 1) % ring;
  }
  consumer.join();
}

// Many small objects: a linked structure of 16-64 byte nodes, built, walked, freed.
void small_objects() {
  struct node {
    node *next;
    std::uint64_t v;
  };
  const std::size_t count = 6'000'000 / scale();
  std::uint64_t s = 5;
  node *head = nullptr;
  for (std::size_t i = 0; i < count; ++i) {
    auto *n = static_cast<node *>(std::malloc(sizeof(node) + next(s) % 48));
    n->next = head;
    n->v = i;
    head = n;
  }
  std::uint64_t sum = 0;
  for (node *n = head; n; n = n->next) sum += n->v;
  if (sum != count * (count - 1) / 2) std::abort();
  while (head) {
    node *n = head->next;
    std::free(head);
    head = n;
  }
}

// Mixed sizes: 8 B to 256 KiB, log-distributed, a random live set of 20000.
void mixed_sizes() {
  constexpr unsigned live = 20000;
  const unsigned rounds = 3'000'000 / scale();
  std::vector<void *> set(live, nullptr);
  std::uint64_t s = 77;
  for (unsigned i = 0; i < rounds; ++i) {
    const unsigned k = static_cast<unsigned>(next(s) % live);
    std::free(set[k]);
    const unsigned bits = 3 + static_cast<unsigned>(next(s) % 16);  // 8 B .. 256 KiB
    const std::size_t n = (std::size_t{1} << bits) + next(s) % (std::size_t{1} << bits);
    set[k] = std::malloc(n);
    touch(set[k], n);
  }
  for (void *p : set) std::free(p);
}

// realloc growth: buffers grown a little at a time (string builders, vectors).
void realloc_growth() {
  const unsigned buffers = 2000 / scale() + 1;
  std::uint64_t s = 3;
  for (unsigned b = 0; b < buffers; ++b) {
    char *p = nullptr;
    std::size_t n = 0;
    const std::size_t target = 1000 + next(s) % (1u << 20);
    while (n < target) {
      n += 1 + next(s) % 512;
      p = static_cast<char *>(std::realloc(p, n));
      p[n - 1] = static_cast<char>(n);
    }
    std::free(p);
  }
}

// malloc/free pairs on one thread, 64 blocks of 16-271 B live: the cost of the entry points
// themselves (hetmem's ownership check and calls against jemalloc's), little else.
void malloc_free_pairs() {
  const unsigned pairs = 30'000'000 / scale();
  void *live[64] = {};
  for (unsigned i = 0; i < pairs; ++i) {
    const unsigned k = (i * 2654435761u) & 63;
    std::free(live[k]);
    live[k] = std::malloc(16 + (i & 255));
    touch(live[k], 1);
  }
  for (void *p : live) std::free(p);
}

// calloc of fresh memory: four large zeroed buffers live at once (a numeric array, Python's
// bytes(n)), of which the program touches one byte in 64 KiB. The kernel's fresh pages are
// already zero: an allocator that knows it spends neither time nor memory on them.
void calloc_fresh() {
  const std::size_t bytes = (std::size_t{256} << 20) / scale();
  std::vector<unsigned char *> bufs;
  for (int i = 0; i < 4; ++i) {
    auto *p = static_cast<unsigned char *>(std::calloc(1, bytes));
    if (!p) std::exit(1);
    std::size_t sum = 0;
    for (std::size_t k = 0; k < bytes; k += 65536) sum += p[k];
    if (sum != 0) std::exit(1);  // calloc's memory must read as zeros
    bufs.push_back(p);
  }
  for (auto *p : bufs) std::free(p);
}

// aligned allocation: 64-byte aligned blocks of 16-1039 B (SIMD buffers, cache-line objects)
// through posix_memalign and memalign, 64 live, as malloc/free pairs.
void aligned_pairs() {
  const unsigned pairs = 10'000'000 / scale();
  void *live[64] = {};
  for (unsigned i = 0; i < pairs; ++i) {
    const unsigned k = (i * 2654435761u) & 63;
    std::free(live[k]);
    const std::size_t n = 16 + (i & 1023);
    if (i & 1) {
      if (posix_memalign(&live[k], 64, n) != 0) std::exit(1);
    } else {
      live[k] = memalign(64, n);
    }
    touch(live[k], n);
  }
  for (void *p : live) std::free(p);
}

// small realloc: 64 live buffers of 16-527 B, each resized to a new random size in turn
// (small strings and vectors that grow and shrink).
void small_realloc() {
  const unsigned rounds = 10'000'000 / scale();
  void *live[64] = {};
  std::uint64_t s = 5;
  for (unsigned i = 0; i < rounds; ++i) {
    const unsigned k = i & 63;
    const std::size_t n = 16 + next(s) % 512;
    live[k] = std::realloc(live[k], n);
    if (!live[k]) std::exit(1);
    touch(live[k], n);
  }
  for (void *p : live) std::free(p);
}

struct workload {
  const char *name;
  void (*run)();
  bool threaded;  // runs threads of its own (else pinned to one CPU, see run_child)
};
const workload workloads[] = {{"larson-churn", larson, true},
                              {"producer-consumer", producer_consumer, true},
                              {"small-objects", small_objects, false},
                              {"mixed-sizes", mixed_sizes, false},
                              {"realloc-growth", realloc_growth, false},
                              {"malloc-free-pairs", malloc_free_pairs, false},
                              {"calloc-fresh", calloc_fresh, false},
                              {"aligned-pairs", aligned_pairs, false},
                              {"small-realloc", small_realloc, false}};

struct config {
  std::string name;
  std::vector<std::string> env;  // NAME=VALUE added to the child's environment
};

struct sample {
  bool ok = false;
  double seconds = 0;
  long max_rss_kib = 0;
  std::string why;  // when not ok: "exit 1", "signal 11"
};

// `cpu` >= 0: the child runs on that CPU alone. A single-threaded workload and the start-up
// runs are pinned, every configuration to the same CPU: on a shared machine one CPU can run a
// third slower than another for minutes (aligned-pairs pinned, one run: 0.208 against 0.190 s
// on one CPU, 0.320 against 0.258 on the other), which unpinned runs turned into ratios.
sample run_child(const std::vector<std::string> &argv, const config &c, bool quiet, int cpu = -1) {
  sample out;
  std::fflush(stdout);  // or the child's freopen would print our buffer again
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (cpu >= 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(static_cast<std::size_t>(cpu), &one);
      (void)::sched_setaffinity(0, sizeof one, &one);
    }
    for (const auto &e : c.env) ::putenv(const_cast<char *>(e.c_str()));  // NOLINT
    if (quiet) {
      std::freopen("/dev/null", "w", stdout);
      std::freopen("/dev/null", "w", stderr);
    }
    std::vector<char *> args;
    for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));  // NOLINT
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  if (pid < 0 || ::wait4(pid, &status, 0, &ru) != pid) return out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.max_rss_kib = ru.ru_maxrss;
  out.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!out.ok)
    out.why = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                : "signal " + std::to_string(WTERMSIG(status));
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string self_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

int main(int argc, char **argv) try {
  int reps = 5;
  std::string preload = HETMEM_PRELOAD_PATH;
  std::string json_path, baseline;
  std::vector<std::string> startup_trees;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = std::max(1, std::atoi(argv[++i]));
    else if (std::strcmp(argv[i], "--preload") == 0 && i + 1 < argc)
      preload = argv[++i];
    else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc)
      json_path = argv[++i];
    else if (std::strcmp(argv[i], "--baseline") == 0 && i + 1 < argc)
      baseline = argv[++i];
    else if (std::strcmp(argv[i], "--startup-tree") == 0 && i + 1 < argc)
      startup_trees.emplace_back(argv[++i]);
    else if (std::strcmp(argv[i], "--workload") == 0 && i + 1 < argc) {
      const char *w = argv[++i];
      for (int j = i + 1; j < argc; ++j)
        if (std::strcmp(argv[j], "--quick") == 0) quick = true;
      for (const auto &wl : workloads)
        if (std::strcmp(wl.name, w) == 0) {
          wl.run();
          return 0;
        }
      std::fprintf(stderr, "unknown workload %s\n", w);
      return 2;
    }
  }
  if (quick) reps = std::min(reps, 1);
  const std::string jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
  const std::string memtier = "/usr/lib/x86_64-linux-gnu/libmemtier.so.0";
  std::vector<config> configs = {
      {"glibc", {}},
      {"jemalloc", {"LD_PRELOAD=" + jemalloc}},
      {"memtier", {"LD_PRELOAD=" + memtier, "MEMKIND_MEM_TIERS=KIND:DRAM,RATIO:1;POLICY:STATIC_RATIO"}},
      {"hetmem", {"LD_PRELOAD=" + preload, "HETMEM_POLICY=", "HETMEM_CONFIG="}},
      {"hetmem-ratio", {"LD_PRELOAD=" + preload, "HETMEM_POLICY=ratio local:1, fastest:1"}},
  };
  // An empty HETMEM_POLICY is an error (reported, default used): drop the variables instead.
  configs[3].env = {"LD_PRELOAD=" + preload};
  if (!baseline.empty()) configs.push_back({"hetmem-baseline", {"LD_PRELOAD=" + baseline}});
  ::unsetenv("HETMEM_POLICY");
  ::unsetenv("HETMEM_CONFIG");
  ::unsetenv("MEMKIND_MEM_TIERS");
  ::unsetenv("AUTO_HBW_SIZE");
  for (const auto &lib : {jemalloc, memtier, preload})
    if (::access(lib.c_str(), R_OK) != 0) std::printf("note: %s is missing: its column will fail\n", lib.c_str());

  const std::string self = self_path();
  std::printf("hetmem_bench_preload: %d interleaved run(s) per cell, medians%s; time in s, peak RSS in MiB\n", reps,
              quick ? " (--quick: a twentieth of the work)" : "");
  std::printf("%-18s", "workload");
  for (const auto &c : configs) std::printf(" %17s", c.name.c_str());
  std::printf("   hetmem/jemalloc  memtier/hetmem%s\n", baseline.empty() ? "" : "  hetmem/baseline");
  // Each target on its own line at the end, naming the workloads that miss it.
  std::string jemalloc_misses, memtier_misses, hetmem_failures, other_failures;
  bool startup_met = true;
  // The CPU the single-threaded runs are pinned to: the first this process may use.
  int pin_cpu = -1;
  if (cpu_set_t mine; ::sched_getaffinity(0, sizeof mine, &mine) == 0)
    for (int k = 0; k < CPU_SETSIZE && pin_cpu < 0; ++k)
      if (CPU_ISSET(static_cast<std::size_t>(k), &mine)) pin_cpu = k;
  // ordered_json: the docs' table takes its columns in the order of the configurations here.
  nlohmann::ordered_json json = {{"schema", "hetmem.bench.preload/1"}, {"reps", reps}, {"quick", quick}};
  nlohmann::ordered_json json_workloads = nlohmann::ordered_json::array();
  auto note_miss = [](std::string &list, const char *name, double ratio) {
    char text[64];
    std::snprintf(text, sizeof text, "%s%s %.2fx", list.empty() ? "" : ", ", name, ratio);
    list += text;
  };
  for (const auto &wl : workloads) {
    std::vector<std::vector<double>> t(configs.size()), m(configs.size());
    std::vector<bool> failed(configs.size(), false);
    std::vector<std::string> args = {self, "--workload", wl.name};
    if (quick) args.emplace_back("--quick");
    for (int r = 0; r < reps; ++r)
      for (std::size_t c = 0; c < configs.size(); ++c) {
        if (failed[c]) continue;
        sample s = run_child(args, configs[c], configs[c].name == "memtier", wl.threaded ? -1 : pin_cpu);
        if (!s.ok) {
          failed[c] = true;
          std::string &list = configs[c].name.rfind("hetmem", 0) == 0 ? hetmem_failures : other_failures;
          list += (list.empty() ? "" : ", ") + configs[c].name + " on " + wl.name + " (" + s.why + ")";
          continue;
        }
        t[c].push_back(s.seconds);
        m[c].push_back(static_cast<double>(s.max_rss_kib) / 1024.0);
      }
    std::printf("%-18s", wl.name);
    nlohmann::ordered_json results = nlohmann::ordered_json::object();
    for (std::size_t c = 0; c < configs.size(); ++c) {
      if (failed[c]) {
        std::printf(" %17s", "failed");
        results[configs[c].name] = nullptr;
      } else {
        std::printf(" %8.3fs %6.1fM", median(t[c]), median(m[c]));
        results[configs[c].name] = {{"seconds", median(t[c])}, {"max_rss_mib", median(m[c])}};
      }
    }
    json_workloads.push_back({{"name", wl.name}, {"results", results}});
    const double ht = median(t[3]), hm = median(m[3]), jt = median(t[1]), jm = median(m[1]);
    if (!failed[1] && !failed[3]) {
      std::printf("   %5.2fx %5.2fx", ht / jt, hm / jm);
      if (ht / jt > 1.1) note_miss(jemalloc_misses, (std::string(wl.name) + " time").c_str(), ht / jt);
      if (hm / jm > 1.1) note_miss(jemalloc_misses, (std::string(wl.name) + " memory").c_str(), hm / jm);
    } else {
      std::printf("   %12s", "-");
      note_miss(jemalloc_misses, (std::string(wl.name) + " (a run failed)").c_str(), 0);
    }
    if (!failed[2] && !failed[3]) {
      std::printf("    %6.1fx", median(t[2]) / ht);
      if (median(t[2]) / ht < 4) note_miss(memtier_misses, wl.name, median(t[2]) / ht);
    } else {
      std::printf("    %7s", failed[2] ? "(failed)" : "-");
    }
    if (!baseline.empty()) {
      const std::size_t b = configs.size() - 1;
      if (!failed[3] && !failed[b])
        std::printf("    %5.2fx %5.2fx", ht / median(t[b]), hm / median(m[b]));
      else
        std::printf("    %12s", "-");
    }
    std::printf("\n");
  }
  json["workloads"] = json_workloads;
  // Start-up: /bin/true, many times per configuration, the configurations interleaved (one run
  // of each in turn), so that a machine slowing down or speeding up weighs on all alike. First
  // on this machine, then (--startup-tree) with HETMEM_SYSFS_ROOT on a captured machine's tree,
  // where the preload reads a topology of several nodes; jemalloc's runs get the variable too.
  const int starts = quick ? 20 : 200;
  auto startup = [&](const std::string &tree, bool &met) {
    std::vector<config> runs;
    for (const auto &c : configs) {
      if (c.name == "hetmem-ratio" || (!tree.empty() && c.name != "jemalloc" && c.name.rfind("hetmem", 0) != 0))
        continue;
      runs.push_back(c);
      if (!tree.empty()) runs.back().env.push_back("HETMEM_SYSFS_ROOT=" + tree);
    }
    std::vector<double> total(runs.size(), 0);
    std::vector<bool> ok(runs.size(), true);
    for (int i = 0; i < starts; ++i)
      for (std::size_t c = 0; c < runs.size(); ++c) {
        if (!ok[c]) continue;
        sample s = run_child({"/bin/true"}, runs[c], false, pin_cpu);
        ok[c] = s.ok;
        total[c] += s.seconds;
      }
    double jemalloc_ms = 0;
    for (std::size_t c = 0; c < runs.size(); ++c)
      if (runs[c].name == "jemalloc") jemalloc_ms = total[c] / starts * 1000;
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (std::size_t c = 0; c < runs.size(); ++c) {
      const double mean_ms = total[c] / starts * 1000;
      std::printf(" %s %.2f ms%s", runs[c].name.c_str(), mean_ms, ok[c] ? "" : " (failed)");
      out[runs[c].name] = ok[c] ? nlohmann::ordered_json(mean_ms) : nlohmann::ordered_json(nullptr);
      if (runs[c].name == "hetmem") {
        std::printf(" (%+.2f ms against jemalloc)", mean_ms - jemalloc_ms);
        if (!ok[c] || mean_ms - jemalloc_ms > 0.5) met = false;
      }
      std::printf(";");
    }
    std::printf("\n");
    return out;
  };
  std::printf("start-up (/bin/true, mean of %d interleaved runs):", starts);
  json["startup_ms"] = startup("", startup_met);
  std::string tree_misses;
  if (!startup_trees.empty()) {
    nlohmann::ordered_json per_tree = nlohmann::ordered_json::object();
    for (const auto &tree : startup_trees) {
      if (::access((tree + "/sys/devices/system/node").c_str(), R_OK) != 0) {
        std::printf("start-up on the tree %s: SKIPPED (no sys/devices/system/node there)\n", tree.c_str());
        tree_misses += (tree_misses.empty() ? "" : ", ") + tree + " (skipped)";
        continue;
      }
      std::printf("start-up on the tree %s:", tree.c_str());
      bool met = true;
      per_tree[tree] = startup(tree, met);
      if (!met) tree_misses += (tree_misses.empty() ? "" : ", ") + tree;
    }
    json["startup_tree_ms"] = per_tree;
  }
  std::printf("target: hetmem within 1.1x of jemalloc's time and memory: %s%s\n",
              jemalloc_misses.empty() ? "met on every workload" : "NOT met: ", jemalloc_misses.c_str());
  std::printf("target: at least 4x memtier's speed: %s%s\n",
              memtier_misses.empty() ? "met on every workload" : "not on ", memtier_misses.c_str());
  std::printf("target: start-up within 0.5 ms of jemalloc's: %s\n", startup_met ? "met" : "NOT met");
  if (!startup_trees.empty())
    std::printf("target: start-up within 0.5 ms of jemalloc's on several nodes (the trees): %s%s\n",
                tree_misses.empty() ? "met on every tree" : "NOT met on ", tree_misses.c_str());
  if (!other_failures.empty()) std::printf("other allocators' runs that failed: %s\n", other_failures.c_str());
  if (!hetmem_failures.empty()) std::printf("hetmem's runs that FAILED: %s\n", hetmem_failures.c_str());
  if (!json_path.empty()) {
    std::FILE *f = std::fopen(json_path.c_str(), "w");
    if (!f || std::fputs((json.dump(1) + "\n").c_str(), f) < 0 || std::fclose(f) != 0) {
      std::fprintf(stderr, "hetmem_bench_preload: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::printf("results written to %s\n", json_path.c_str());
  }
  return 0;
} catch (const std::exception &e) {  // out of memory, or a JSON value the library refused
  std::fprintf(stderr, "hetmem_bench_preload: %s\n", e.what());
  return 2;
}
