// bench_alloc — malloc/free pairs side by side in one run: glibc, jemalloc (Debian's
// libjemalloc.so.2, default arena, loaded privately with dlopen so it does not replace this
// program's malloc), memkind (MEMKIND_DEFAULT), memkind's memtier (one DRAM tier, as
// libmemtier sets it up for its users) and hetmem heaps on a tier. Then the peak resident
// memory of an allocation-heavy run under each, in child processes.
//
// Prints Google Benchmark's table, then ratios to jemalloc and the targets:
//   hetmem tier allocation <= 1.5x jemalloc's default path for 64 B and 4 KiB pairs, and
//   <= 1.2x for the 1 MiB pair;
//   peak resident memory of the allocation-heavy run <= 1.1x jemalloc's.
//
// Usage: hetmem_bench_alloc [--quick] [--json FILE] [google benchmark flags]
//
// --json FILE also writes the medians and peaks (schema hetmem.bench.alloc/1), which the docs'
// table is made from (scripts/bench-table.py).
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <memkind.h>
#include <memkind_memtier.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hetmem/heap.hpp"

namespace {

struct allocator_api {
  const char *name;
  void *(*alloc)(std::size_t);
  void (*free)(void *);
};

// --- the contenders -------------------------------------------------------------------------

void *(*je_malloc)(std::size_t) = nullptr;
void (*je_free)(void *) = nullptr;
bool load_jemalloc() {
  void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "bench: jemalloc not loaded: %s\n", dlerror());
    return false;
  }
  je_malloc = reinterpret_cast<void *(*)(std::size_t)>(dlsym(h, "malloc"));
  je_free = reinterpret_cast<void (*)(void *)>(dlsym(h, "free"));
  return je_malloc && je_free;
}

memtier_memory *memtier = nullptr;
bool make_memtier() {
  memtier_builder *b = memtier_builder_new(MEMTIER_POLICY_STATIC_RATIO);
  if (!b || memtier_builder_add_tier(b, MEMKIND_DEFAULT, 1) != 0) return false;
  memtier = memtier_builder_construct_memtier_memory(b);
  memtier_builder_delete(b);
  return memtier != nullptr;
}

std::unique_ptr<hetmem::heap> hetmem_heap;
bool make_hetmem() {
  hetmem::tier t;
  auto topo = hetmem::load_topology();
  if (topo) {
    auto fastest = hetmem::tier_by_rank(*topo, 0);
    if (fastest) t = *fastest;
  }
  if (t.where.nodes.empty()) {
    t.name = "node 0";
    t.where.nodes.insert(0);
  }
  auto h = hetmem::heap::create(t);
  if (!h) {
    std::fprintf(stderr, "bench: hetmem heap: %s\n", h.error().message.c_str());
    return false;
  }
  hetmem_heap = std::move(h).value();
  return true;
}

// All contenders, or only the one named `only`.
std::vector<allocator_api> contenders(const char *only = nullptr) {
  auto want = [&](const char *n) { return !only || std::strcmp(only, n) == 0; };
  std::vector<allocator_api> out;
  if (want("glibc"))
    out.push_back({"glibc", [](std::size_t n) { return std::malloc(n); }, [](void *p) { std::free(p); }});
  if (want("jemalloc") && load_jemalloc())
    out.push_back({"jemalloc", [](std::size_t n) { return je_malloc(n); }, [](void *p) { je_free(p); }});
  if (want("memkind"))
    out.push_back({"memkind", [](std::size_t n) { return memkind_malloc(MEMKIND_DEFAULT, n); },
                   [](void *p) { memkind_free(MEMKIND_DEFAULT, p); }});
  if (want("memtier") && make_memtier())
    out.push_back(
        {"memtier", [](std::size_t n) { return memtier_malloc(memtier, n); }, [](void *p) { memtier_free(p); }});
  if (want("hetmem") && make_hetmem())
    out.push_back(
        {"hetmem", [](std::size_t n) { return hetmem_heap->allocate(n); }, [](void *p) { hetmem::deallocate(p); }});
  return out;
}

// --- malloc/free pairs ------------------------------------------------------------------------

void pair_bench(benchmark::State &state, allocator_api a, std::size_t size) {
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    void *p = a.alloc(size);
    benchmark::DoNotOptimize(p);
    static_cast<char *>(p)[0] = 1;
    a.free(p);
  }
}

// --- peak resident memory of an allocation-heavy run (in a child process each) ----------------

// A churning working set: random sizes (mostly small, some up to 256 KiB), random
// replacement, touched on allocation. Returns a checksum so nothing is optimised away.
unsigned long churn(const allocator_api &a, std::size_t slots, std::size_t ops) {
  std::mt19937_64 rng(42);
  std::vector<void *> live(slots, nullptr);
  unsigned long sum = 0;
  for (std::size_t i = 0; i < ops; ++i) {
    const std::size_t k = rng() % slots;
    if (live[k]) a.free(live[k]);
    const unsigned r = static_cast<unsigned>(rng() % 100);
    const std::size_t size = r < 70 ? 16 + rng() % 240 : r < 95 ? 256 + rng() % 8000 : 8192 + rng() % (256 << 10);
    auto *p = static_cast<unsigned char *>(a.alloc(size));
    for (std::size_t off = 0; off < size; off += 4096) p[off] = static_cast<unsigned char>(i);
    sum += p[0];
    live[k] = p;
  }
  for (void *p : live)
    if (p) a.free(p);
  return sum;
}

// Runs `self --rss-child NAME SLOTS OPS` (a fresh process: no allocator state inherited) and
// returns its peak resident set in KiB, or -1.
long peak_rss_kb(const char *self, const char *name, std::size_t slots, std::size_t ops) {
  pid_t pid = fork();
  if (pid == 0) {
    std::string s = std::to_string(slots), o = std::to_string(ops);
    execl(self, self, "--rss-child", name, s.c_str(), o.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  if (pid < 0 || wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return ru.ru_maxrss;
}

int rss_child(const char *name, std::size_t slots, std::size_t ops) {
  if (std::strcmp(name, "idle") == 0) return 0;
  for (const auto &a : contenders(name))
    if (std::strcmp(a.name, name) == 0) return churn(a, slots, ops) == 0xdeadbeef ? 3 : 0;
  return 2;
}

// --- ratio table --------------------------------------------------------------------------

// Collects every repetition and reports the median: a shared 2-core machine is noisy, and
// repetitions interleaved at random with the other contenders spread the noise over all.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, std::vector<double>> samples;  // "name/size/real_time/threads:N" -> ns per pair
  void ReportRuns(const std::vector<Run> &runs) override {
    for (const auto &r : runs)
      if (r.run_type == Run::RT_Iteration && !r.error_occurred)
        samples[r.run_name.str()].push_back(r.GetAdjustedRealTime());  // per iteration, in ns
    ConsoleReporter::ReportRuns(runs);
  }
  [[nodiscard]] double median(const std::string &key) const {
    auto it = samples.find(key);
    if (it == samples.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

}  // namespace

int main(int argc, char **argv) try {
  // Debian's libjemalloc.so.2 uses initial-exec TLS: dlopen needs more static TLS room than
  // glibc leaves by default. Tunables are read at start-up, so start again with more.
  if (!std::getenv("HETMEM_BENCH_REEXEC")) {
    ::setenv("HETMEM_BENCH_REEXEC", "1", 1);
    ::setenv("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=65536", 1);
    execv("/proc/self/exe", argv);
    std::fprintf(stderr, "bench: cannot re-execute itself (%s); jemalloc may not load\n", std::strerror(errno));
  }
  if (argc == 5 && std::strcmp(argv[1], "--rss-child") == 0)
    return rss_child(argv[2], std::strtoull(argv[3], nullptr, 10), std::strtoull(argv[4], nullptr, 10));
  bool quick = false;
  std::string json_path;
  std::vector<char *> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc)
      json_path = argv[++i];
    else
      args.push_back(argv[i]);
  }
  std::string min_time = quick ? "--benchmark_min_time=0.01" : "--benchmark_min_time=0.1";
  std::string reps = quick ? "--benchmark_repetitions=1" : "--benchmark_repetitions=9";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  bool user_reps = false;
  for (char *a : args) user_reps = user_reps || std::strncmp(a, "--benchmark_repetitions", 23) == 0;
  args.insert(args.begin() + 1, min_time.data());  // before the user's flags, which win
  if (!user_reps) {
    args.push_back(reps.data());
    args.push_back(interleave.data());
  }
  int bargc = static_cast<int>(args.size());
  benchmark::Initialize(&bargc, args.data());

  const auto all = contenders();
  const std::size_t sizes[] = {64, 4096, 1 << 20};
  for (std::size_t size : sizes)
    for (int threads : {1, 2})
      for (const auto &a : all)
        benchmark::RegisterBenchmark((std::string(a.name) + "/" + std::to_string(size)).c_str(), pair_bench, a, size)
            ->Threads(threads)
            ->UseRealTime();

  ratio_reporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);

  std::printf("\nmalloc/free pair, median time relative to jemalloc's default path (lower is better)\n");
  std::printf("%-10s", "size/thr");
  for (const auto &a : all) std::printf(" %9s", a.name);
  std::printf("\n");
  // The targets: small pairs (64 B, 4 KiB) within 1.5x, the 1 MiB pair within 1.2x.
  bool small_met = true, large_met = true, have_je = false;
  // ordered_json: the docs' table takes its columns in the order of the contenders here.
  nlohmann::ordered_json json_pairs = nlohmann::ordered_json::array();
  for (std::size_t size : sizes)
    for (int threads : {1, 2}) {
      char row[32];
      std::snprintf(row, sizeof row, "%zu/%d", size, threads);
      std::printf("%-10s", row);
      auto key = [&](const char *n) {
        return std::string(n) + "/" + std::to_string(size) + "/real_time/threads:" + std::to_string(threads);
      };
      const double je = rep.median(key("jemalloc"));
      have_je = have_je || je > 0;
      nlohmann::ordered_json ns_per_pair = nlohmann::ordered_json::object();
      for (const auto &a : all) {
        const double v = rep.median(key(a.name));
        ns_per_pair[a.name] = v > 0 ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
        if (je > 0 && v > 0)
          std::printf(" %8.2fx", v / je);
        else
          std::printf(" %9s", "-");
        if (std::strcmp(a.name, "hetmem") == 0 && je > 0 && v > 0) {
          if (size <= 4096 && v / je > 1.5) small_met = false;
          if (size > 4096 && v / je > 1.2) large_met = false;
        }
      }
      std::printf("\n");
      if (rep.samples.count(key("hetmem")) || rep.samples.count(key("jemalloc")))
        json_pairs.push_back(
            {{"bytes", size},
             {"threads", threads},
             {"repetitions", rep.samples.count(key("jemalloc")) ? rep.samples.at(key("jemalloc")).size() : 0},
             {"ns_per_pair", ns_per_pair}});
    }
  if (have_je) {
    std::printf("target: hetmem <= 1.5x jemalloc for 64 B and 4 KiB pairs: %s\n", small_met ? "met" : "MISSED");
    std::printf("target: hetmem <= 1.2x jemalloc for the 1 MiB pair: %s\n", large_met ? "met" : "MISSED");
  }

  const std::size_t slots = quick ? 2000 : 60000, ops = quick ? 20000 : 2000000;
  std::printf("\npeak resident memory, allocation-heavy churn (%zu live slots, %zu operations), in a child each\n",
              slots, ops);
  const long base = peak_rss_kb("/proc/self/exe", "idle", 0, 0);
  long je_rss = 0, het_rss = 0;
  nlohmann::ordered_json json_peaks = nlohmann::ordered_json::object();
  for (const auto &a : all) {
    const long kb = peak_rss_kb("/proc/self/exe", a.name, slots, ops);
    json_peaks[a.name] = kb > 0 && base > 0 ? nlohmann::ordered_json(kb - base) : nlohmann::ordered_json(nullptr);
    if (std::strcmp(a.name, "jemalloc") == 0) je_rss = kb - base;
    if (std::strcmp(a.name, "hetmem") == 0) het_rss = kb - base;
    std::printf("  %-9s %8ld KiB (%ld above an idle child)\n", a.name, kb, kb - base);
  }
  if (je_rss > 0 && het_rss > 0)
    std::printf("target: hetmem peak <= 1.1x jemalloc's: %.2fx, %s\n",
                static_cast<double>(het_rss) / static_cast<double>(je_rss),
                static_cast<double>(het_rss) <= 1.1 * static_cast<double>(je_rss) ? "met" : "MISSED");
  benchmark::Shutdown();
  if (!json_path.empty()) {
    nlohmann::ordered_json json = {{"schema", "hetmem.bench.alloc/1"},
                                   {"quick", quick},
                                   {"pairs", json_pairs},
                                   {"churn", {{"live_slots", slots}, {"operations", ops}}},
                                   {"peak_kib_above_idle", json_peaks}};
    std::FILE *f = std::fopen(json_path.c_str(), "w");
    if (!f || std::fputs((json.dump(1) + "\n").c_str(), f) < 0 || std::fclose(f) != 0) {
      std::fprintf(stderr, "hetmem_bench_alloc: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::printf("results written to %s\n", json_path.c_str());
  }
  return 0;
} catch (const std::exception &e) {  // out of memory, or a JSON value the library refused
  std::fprintf(stderr, "hetmem_bench_alloc: %s\n", e.what());
  return 1;
}
