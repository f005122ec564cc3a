// measure.cpp — latency (dependent pointer chase) and bandwidth (streaming) per memory node.
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <numeric>
#include <thread>

#include "hetmem/format.hpp"
#include "hetmem/placement.hpp"
#include "hetmem/probe.hpp"
#include "hetmem/sysfs/parse.hpp"

namespace hetmem {

namespace {

using steady = std::chrono::steady_clock;
constexpr std::size_t line_bytes = 64;
constexpr std::size_t huge_page_bytes = 2u << 20;
constexpr std::size_t default_buffer = 256u << 20;
constexpr std::uint64_t headroom_bytes = 64u << 20;

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

// Keeps values alive past the optimiser.
std::atomic<std::uintptr_t> sink{0};

std::string errno_text(int err) { return std::strerror(err); }

result<sysfs::id_set> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0)
    return error{errno, std::string("sched_getaffinity: ") + errno_text(errno)};
  sysfs::id_set out;
  constexpr std::size_t limit = CPU_SETSIZE;
  for (std::size_t c = 0; c < limit; ++c)
    if (CPU_ISSET(c, &set)) out.insert(static_cast<std::uint32_t>(c));
  return out;
}

int pin_to(std::uint32_t cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}

// Restores the calling thread's affinity when the probe is done.
class affinity_guard {
 public:
  affinity_guard() { saved_ok_ = ::sched_getaffinity(0, sizeof saved_, &saved_) == 0; }
  affinity_guard(const affinity_guard &) = delete;
  affinity_guard &operator=(const affinity_guard &) = delete;
  ~affinity_guard() {
    if (saved_ok_) (void)::sched_setaffinity(0, sizeof saved_, &saved_);
  }

 private:
  cpu_set_t saved_{};
  bool saved_ok_ = false;
};

std::optional<std::string> read_small(const std::string &path) {
  FILE *f = std::fopen(path.c_str(), "re");
  if (!f) return std::nullopt;
  std::string out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && out.size() < (1u << 24)) out.append(buf, n);
  std::fclose(f);
  return out;
}

// The largest data or unified cache of `cpu` (sysfs cache/indexN: level, type, size "32768K").
std::optional<std::uint64_t> last_level_cache(std::uint32_t cpu) {
  std::optional<std::uint64_t> best;
  std::uint64_t best_level = 0;
  const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cache/index";
  for (int i = 0; i < 16; ++i) {
    auto type = read_small(base + std::to_string(i) + "/type");
    auto level = read_small(base + std::to_string(i) + "/level");
    auto size = read_small(base + std::to_string(i) + "/size");
    if (!type || !level || !size) continue;
    if (type->rfind("Instruction", 0) == 0) continue;
    auto lv = sysfs::parse_uint64(*level);
    std::string s(*size);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    std::uint64_t mult = 1;
    if (!s.empty() && (s.back() == 'K' || s.back() == 'M' || s.back() == 'G')) {
      mult = s.back() == 'K' ? 1024u : s.back() == 'M' ? (1u << 20) : (1u << 30);
      s.pop_back();
    }
    auto v = sysfs::parse_uint64(s);
    if (!lv || !v) continue;
    if (*lv >= best_level) {
      best_level = *lv;
      best = *v * mult;
    }
  }
  return best;
}

// Share of [addr, addr+bytes) in transparent huge pages, from the VMA's AnonHugePages.
std::optional<double> huge_page_share(const void *addr, std::size_t bytes) {
  auto smaps = read_small("/proc/self/smaps");
  if (!smaps) return std::nullopt;
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  bool inside = false;
  std::string_view text = *smaps;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    const std::size_t dash = line.find('-');
    const std::size_t space = line.find(' ');
    if (dash != std::string_view::npos && space != std::string_view::npos && dash < space &&
        line.find(':') > space) {  // a VMA header "start-end perms ..."
      std::uintptr_t lo = 0, hi = 0;
      const bool ok = std::from_chars(line.data(), line.data() + dash, lo, 16).ec == std::errc{} &&
                      std::from_chars(line.data() + dash + 1, line.data() + space, hi, 16).ec == std::errc{};
      inside = ok && lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      std::string_view v = line.substr(14);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      std::uint64_t kb = 0;
      if (std::from_chars(v.data(), v.data() + v.size(), kb).ec != std::errc{}) return std::nullopt;
      return std::min(1.0, static_cast<double>(kb) * 1024.0 / static_cast<double>(bytes));
    }
  }
  return std::nullopt;
}

// Links every cache line of `buf` into one random cycle (Sattolo's algorithm gives a single
// cycle through all lines), which also faults the buffer in.
void build_chain(char *buf, std::size_t lines, std::uint64_t seed) {
  std::vector<std::uint32_t> next(lines);
  std::iota(next.begin(), next.end(), 0u);
  std::uint64_t x = seed | 1;
  auto rnd = [&x] {  // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545F4914F6CDD1DULL;
  };
  for (std::size_t i = lines - 1; i > 0; --i) std::swap(next[i], next[rnd() % i]);
  for (std::size_t i = 0; i < lines; ++i)
    *reinterpret_cast<char **>(buf + i * line_bytes) = buf + static_cast<std::size_t>(next[i]) * line_bytes;
}

__attribute__((noinline)) char *chase(char *p, std::size_t steps) {
  for (; steps >= 8; steps -= 8) {
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
    p = *reinterpret_cast<char **>(p);
  }
  for (; steps > 0; --steps) p = *reinterpret_cast<char **>(p);
  return p;
}

// ns per dependent load: rounds of about seconds/5 each, the median.
double measure_latency(char *buf, std::size_t lines, double seconds) {
  char *p = chase(buf, std::min<std::size_t>(lines, 1u << 18));  // warm the TLB and the loop
  std::size_t steps = 1u << 16;
  auto t0 = steady::now();
  p = chase(p, steps);
  const double first = std::max(seconds_since(t0), 1e-6);
  const double round = seconds / 5;
  steps = std::clamp<std::size_t>(static_cast<std::size_t>(static_cast<double>(steps) * round / first), 1u << 14,
                                  std::size_t{1} << 32);
  std::vector<double> ns;
  for (int r = 0; r < 5; ++r) {
    t0 = steady::now();
    p = chase(p, steps);
    ns.push_back(seconds_since(t0) * 1e9 / static_cast<double>(steps));
  }
  sink.fetch_add(reinterpret_cast<std::uintptr_t>(p), std::memory_order_relaxed);
  std::sort(ns.begin(), ns.end());
  return ns[ns.size() / 2];
}

std::uint64_t read_slice(const std::uint64_t *p, std::size_t words) {
  std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= words; i += 4) {
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
  }
  for (; i < words; ++i) a0 += p[i];
  return a0 ^ a1 ^ a2 ^ a3;
}

enum class stream_op { read, write, stop };

// Best MB/s of whole-buffer passes, read or write, by `cpus.size()` pinned threads.
struct bandwidth_result {
  double read_mbps = 0, write_mbps = 0;
  int pin_error = 0;
};
bandwidth_result measure_bandwidth(char *buf, std::size_t bytes, const std::vector<std::uint32_t> &cpus, double seconds,
                                   const std::function<void(double, const char *)> &step) {
  const std::size_t threads = cpus.size();
  std::barrier sync(static_cast<std::ptrdiff_t>(threads + 1));
  std::atomic<stream_op> op{stream_op::read};
  std::atomic<int> pin_error{0};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  // Each worker stamps its own start and end: the pass is from the first start to the last end.
  // (The controller shares a CPU with a worker, so its own clock would start late.)
  std::vector<steady::time_point> started(threads), ended(threads);
  const std::size_t chunk = (bytes / threads) & ~(std::size_t{4095});
  for (std::size_t t = 0; t < threads; ++t) {
    char *from = buf + t * chunk;
    const std::size_t len = t + 1 == threads ? bytes - t * chunk : chunk;
    workers.emplace_back([&, t, from, len, cpu = cpus[t]] {
      if (int e = pin_to(cpu); e != 0) pin_error.store(e);
      for (;;) {
        sync.arrive_and_wait();
        const stream_op o = op.load(std::memory_order_relaxed);
        if (o == stream_op::stop) return;
        started[t] = steady::now();
        if (o == stream_op::read)
          sink.fetch_add(read_slice(reinterpret_cast<const std::uint64_t *>(from), len / 8), std::memory_order_relaxed);
        else
          std::memset(from, 0x5a, len);
        ended[t] = steady::now();
        sync.arrive_and_wait();
      }
    });
  }
  bandwidth_result out;
  for (stream_op which : {stream_op::read, stream_op::write}) {
    op.store(which, std::memory_order_relaxed);
    double best = 0;
    const auto begin = steady::now();
    for (int pass = 0; pass < 10000; ++pass) {
      sync.arrive_and_wait();
      sync.arrive_and_wait();
      const auto first = *std::min_element(started.begin(), started.end());
      const auto last = *std::max_element(ended.begin(), ended.end());
      const double s = std::max(std::chrono::duration<double>(last - first).count(), 1e-9);
      best = std::max(best, static_cast<double>(bytes) / s / 1e6);
      const double spent = seconds_since(begin);
      if (step) step(std::min(1.0, spent / seconds), which == stream_op::read ? "read" : "write");
      if (pass >= 1 && spent >= seconds) break;
    }
    (which == stream_op::read ? out.read_mbps : out.write_mbps) = best;
  }
  op.store(stream_op::stop, std::memory_order_relaxed);
  sync.arrive_and_wait();
  for (auto &w : workers) w.join();
  out.pin_error = pin_error.load();
  return out;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  if (!::gmtime_r(&now, &tm)) return {};
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

result<probe_outcome> run_probe(const topology &topo, const probe_options &options) {
  try {
    if (topo.root != "/" && !topo.root.empty())
      return error{EINVAL, "cannot probe a captured tree (" + topo.root + "): probing measures the live system"};
    // The initiator and its CPUs.
    auto allowed = allowed_cpus();
    if (!allowed) return allowed.error();
    const initiator_view *init = nullptr;
    if (options.cpu) {
      init = topo.initiator_for_cpu(*options.cpu);
      if (!init) return error{EINVAL, "no node lists CPU " + std::to_string(*options.cpu)};
      if (!allowed->contains(*options.cpu))
        return error{EINVAL, "CPU " + std::to_string(*options.cpu) + " is outside this process's CPU affinity (" +
                                 allowed->to_string() + ")"};
      if (options.initiator && *options.initiator != init->node)
        return error{EINVAL, "CPU " + std::to_string(*options.cpu) + " belongs to node " + std::to_string(init->node) +
                                 ", not initiator " + std::to_string(*options.initiator)};
    } else if (options.initiator) {
      init = topo.initiator(*options.initiator);
      if (!init)
        return error{EINVAL, "node " + std::to_string(*options.initiator) +
                                 " is not an initiator (initiators are the nodes with CPUs)"};
    } else {
      init = topo.initiator_for_calling_thread();
      if (!init && !topo.initiators.empty()) init = &topo.initiators.front();
      if (!init) return error{EINVAL, "the topology has no initiator (no node lists CPUs)"};
    }
    const sysfs::id_set usable = init->cpus.intersect(*allowed);
    if (usable.empty())
      return error{EINVAL, "none of initiator node " + std::to_string(init->node) + "'s CPUs (" +
                               init->cpus.to_string() + ") is in this process's CPU affinity (" + allowed->to_string() +
                               ")"};
    std::vector<std::uint32_t> cpus = usable.to_vector();
    if (options.cpu) {  // the latency thread's CPU first
      cpus.erase(std::find(cpus.begin(), cpus.end(), *options.cpu));
      cpus.insert(cpus.begin(), *options.cpu);
    }
    const std::size_t nthreads = options.threads ? options.threads : cpus.size();
    std::vector<std::uint32_t> thread_cpus;
    for (std::size_t t = 0; t < nthreads; ++t) thread_cpus.push_back(cpus[t % cpus.size()]);

    probe_outcome out;
    auto &rep = out.report;
    rep.initiator = init->node;
    for (std::uint32_t c : thread_cpus) rep.cpus.insert(c);
    rep.threads = static_cast<std::uint32_t>(nthreads);
    rep.taken_at = utc_now();
    if (struct utsname u{}; ::uname(&u) == 0) rep.kernel = u.release;
    rep.cpu_model = topo.snapshot.cpu.model_name;

    out.last_level_cache_bytes = last_level_cache(thread_cpus.front());
    std::size_t bytes = options.buffer_bytes;
    if (bytes == 0) {
      bytes = default_buffer;
      if (out.last_level_cache_bytes && *out.last_level_cache_bytes * 4 > bytes)
        bytes = static_cast<std::size_t>(*out.last_level_cache_bytes * 4);
    }
    bytes = (bytes + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
    if (bytes / line_bytes > (std::size_t{1} << 32))
      return error{EINVAL, "a buffer of " + format_bytes(bytes) + " is more than the probe handles (256 GiB)"};
    rep.buffer_bytes = bytes;
    if (out.last_level_cache_bytes && bytes < *out.last_level_cache_bytes * 4)
      out.notes.push_back("the buffer (" + format_bytes(bytes) + ") is less than 4x the last-level cache (" +
                          format_bytes(*out.last_level_cache_bytes) +
                          "): part of it stays cached, so latency reads low and bandwidth high");

    // The nodes.
    auto support = probe_kernel_policy_support();
    if (!support) return support.error();
    std::vector<std::uint32_t> chosen;
    if (options.nodes) {
      for (std::uint32_t id : options.nodes->to_vector()) {
        const node_info *n = topo.find(id);
        if (!n || !n->has_memory)
          return error{EINVAL, "node " + std::to_string(id) + " is not a memory node of this machine"};
        chosen.push_back(id);
      }
    } else {
      for (const auto &n : topo.nodes)
        if (n.has_memory && n.kind != memory_kind::none) chosen.push_back(n.id);
    }
    std::vector<std::uint32_t> todo;
    for (std::uint32_t id : chosen) {
      const node_info *n = topo.find(id);
      if (!support->mems_allowed.contains(id)) {
        out.skipped.push_back(
            {id, "outside this process's cpuset (mems_allowed " + support->mems_allowed.to_string() + ")"});
      } else if (n->free_bytes && *n->free_bytes < bytes + headroom_bytes) {
        out.skipped.push_back({id, "only " + format_bytes(*n->free_bytes) + " free; the probe needs " +
                                       format_bytes(bytes + headroom_bytes) + " (use --size)"});
      } else {
        todo.push_back(id);
      }
    }

    affinity_guard restore;
    if (int e = pin_to(thread_cpus.front()); e != 0)
      return error{e, "cannot run on CPU " + std::to_string(thread_cpus.front()) + ": " + errno_text(e)};
    const double per = std::max(options.seconds_per_measurement, 0.001);
    const std::size_t lines = bytes / line_bytes;
    bool few_huge = false;
    for (std::size_t k = 0; k < todo.size(); ++k) {
      const std::uint32_t id = todo[k];
      auto report_step = [&](double within, double start, double width, const std::string &what) {
        if (options.progress)
          options.progress((static_cast<double>(k) + start + width * std::clamp(within, 0.0, 1.0)) /
                               static_cast<double>(todo.size()),
                           "node " + std::to_string(id) + ": " + what);
      };
      report_step(0, 0, 0.1, "placing " + format_bytes(bytes));
      auto mem = map_anonymous(bytes, huge_page_bytes);
      if (!mem) {
        out.skipped.push_back({id, mem.error().message});
        continue;
      }
      char *buf = static_cast<char *>(*mem);
      auto done = [&] { (void)unmap(buf, bytes); };
      placement p;
      p.mode = policy_mode::bind;
      p.nodes.insert(id);
      p.thp = huge_pages::always;
      if (auto placed = place(buf, bytes, p); !placed) {
        out.skipped.push_back({id, placed.error().message});
        done();
        continue;
      }
      build_chain(buf, lines, 0x9e3779b97f4a7c15ULL ^ id);
      auto census = where(buf, bytes);
      if (!census) {
        out.skipped.push_back({id, "cannot ask the kernel where the buffer is: " + census.error().message});
        done();
        continue;
      }
      const double placed =
          census->pages ? static_cast<double>(census->on(id)) / static_cast<double>(census->pages) : 0.0;
      if (placed < 0.99) {
        std::string where_text;
        for (const auto &[node, count] : census->per_node)
          where_text += (where_text.empty() ? "" : ", ") + std::to_string(count) + " on node " + std::to_string(node);
        out.skipped.push_back({id, "only " + std::to_string(census->on(id)) + " of " + std::to_string(census->pages) +
                                       " pages landed on it (" + (where_text.empty() ? "none present" : where_text) +
                                       "): not measured"});
        done();
        continue;
      }
      probe_node_result r;
      r.node = id;
      if (const node_info *n = topo.find(id)) r.capacity_bytes = n->capacity_bytes;
      r.placed_fraction = placed;
      r.huge_page_fraction = huge_page_share(buf, bytes);
      if (r.huge_page_fraction && *r.huge_page_fraction < 0.5) few_huge = true;
      if (options.latency) {
        report_step(0, 0.1, 0.3, "latency");
        r.latency_ns = measure_latency(buf, lines, per);
      }
      if (options.bandwidth) {
        auto bw = measure_bandwidth(buf, bytes, thread_cpus, per, [&](double f, const char *what) {
          report_step(f, std::string_view(what) == "read" ? 0.4 : 0.7, 0.3, std::string(what) + " bandwidth");
        });
        if (bw.pin_error != 0)
          out.notes.push_back("a bandwidth thread could not be pinned to its CPU: " + errno_text(bw.pin_error));
        r.read_mbps = bw.read_mbps;
        r.write_mbps = bw.write_mbps;
      }
      report_step(1, 1, 0, "done");
      done();
      rep.nodes.push_back(r);
    }
    if (few_huge)
      out.notes.push_back(
          "less than half of a buffer got transparent huge pages: latency includes page-table walks (hetmem doctor "
          "shows the THP mode)");
    if (options.bandwidth && nthreads == 1)
      out.notes.push_back("one bandwidth thread: one core cannot saturate a memory node; the ratios still hold");
    return out;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  } catch (const std::system_error &e) {
    return error{EAGAIN, std::string("cannot start the bandwidth threads: ") + e.what()};
  }
}

}  // namespace hetmem
