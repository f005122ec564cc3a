// The tiering engine: each interval, the hotness its source observed (source.hpp), where the kernel
// says the pages are, a plan (plan.cpp), the moves (migrate.hpp). See the contract in tiering.hpp.
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/detail/os.hpp"
#include "hetmem/detail/site_registry.hpp"
#include "hetmem/placement.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"
#include "source.hpp"

namespace hetmem {
namespace {

using tiering_detail::chunk_range;
using tiering_detail::monotonic_seconds;
using tiering_detail::source;
using tiering_detail::target_view;
using tiering_detail::thread_cpu_seconds;

struct chunk_state {
  double heat = 0;
  double last_move = -1e18;
  int last_direction = 0;
};

struct process_state {
  pid_t pid = 0;
  std::vector<chunk_range> chunks;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> mappings;  // as /proc/PID/maps has them
  std::unordered_map<std::uintptr_t, chunk_state> state;            // by chunk start
  std::vector<std::uint64_t> present_bytes;
  std::vector<double> fast_share;
};

double psi_some_avg10(const std::string &path) {
  const auto text = sysfs::read_text_file(path, std::size_t{64} << 10);
  if (!text) return 0;
  for (const std::string_view line : sysfs::split_lines(*text)) {
    double v = 0;
    if (std::sscanf(std::string(line).c_str(), "some avg10=%lf", &v) == 1) return v;
  }
  return 0;
}

}  // namespace

namespace {

// "gups_touch+0x1a (/usr/bin/gups)", "/usr/bin/gups+0x1a2b", or the bare address.
std::string describe_code_address(const void *address) {
  char buf[64];
  Dl_info info{};
  if (::dladdr(address, &info) != 0 && info.dli_fname) {
    const auto at = reinterpret_cast<std::uintptr_t>(address);
    if (info.dli_sname && info.dli_saddr) {
      std::snprintf(buf, sizeof buf, "+0x%" PRIxPTR, at - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
      return std::string(info.dli_sname) + buf + " (" + info.dli_fname + ")";
    }
    std::snprintf(buf, sizeof buf, "+0x%" PRIxPTR, at - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
    return std::string(info.dli_fname) + buf;
  }
  std::snprintf(buf, sizeof buf, "%p", address);
  return buf;
}

}  // namespace

struct tiering_engine::impl {
  tiering_options options;
  tier fast, slow;
  std::unique_ptr<source> hotness;
  std::vector<process_state> processes;
  double started = monotonic_seconds();
  double last_step = 0;
  double budget = 0;  // bytes of migration allowed now (accumulates at max_bytes_per_second)
  std::size_t page_size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

  mutable std::mutex lock;  // guards stats
  tiering_statistics stats;

  // The allocator's knowledge (options.sites). Engine thread only.
  struct block_age {
    unsigned site = 0;
    std::uint32_t serial = 0;  // the registry's: a new block at a freed one's start differs
    std::uint64_t first_step = 0;
  };
  struct site_state {
    double heat = std::numeric_limits<double>::quiet_NaN();  // smoothed over intervals
    unsigned observations = 0;
    std::uint64_t bytes = 0;
    std::size_t blocks = 0;
  };
  std::unordered_map<std::uintptr_t, block_age> block_seen;  // live blocks by start
  std::unordered_map<unsigned, site_state> site_states;
  std::uint64_t steps = 0;
  std::uint64_t prior_chunks = 0;
  std::uint64_t freed_cursor = 0;  // the registry's ring of freed blocks, read up to here
  std::uint64_t freed_chunks = 0;  // chunks of freed blocks cooled (in all)

  std::thread worker;
  std::mutex wake_lock;
  std::condition_variable wake;
  bool stopping = false;

  [[nodiscard]] std::vector<pid_t> wanted_pids() const {
    std::vector<pid_t> pids = options.pids;
    if (!options.cgroup.empty()) {
      if (const auto text = sysfs::read_text_file(options.cgroup + "/cgroup.procs", std::size_t{64} << 20))
        for (const std::string_view line : sysfs::split_lines(*text)) {
          const long p = std::strtol(std::string(line).c_str(), nullptr, 10);
          if (p > 0) pids.push_back(static_cast<pid_t>(p));
        }
    }
    if (pids.empty() && options.cgroup.empty()) pids.push_back(::getpid());
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    return pids;
  }

  // The chunks of each managed process now; processes that are gone are dropped.
  result<void> refresh_processes() {
    const auto pids = wanted_pids();
    std::vector<process_state> next;
    for (pid_t pid : pids) {
      auto ranges = process_ranges(pid, false);
      if (!ranges) {
        if (ranges.error().code == ESRCH) continue;
        return ranges.error();
      }
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> mappings;
      mappings.reserve(ranges->size());
      for (const auto &r : *ranges) mappings.emplace_back(r.start, r.end);
      *ranges = tiering_detail::populated_parts(pid, std::move(*ranges), options.chunk_bytes);
      process_state ps;
      ps.pid = pid;
      ps.mappings = std::move(mappings);
      for (auto &old : processes)
        if (old.pid == pid) ps.state = std::move(old.state);
      const std::uintptr_t cb = options.chunk_bytes;
      for (const auto &r : *ranges) {
        for (std::uintptr_t a = r.start; a < r.end;) {
          const std::uintptr_t boundary = (a / cb + 1) * cb;
          const std::uintptr_t e = std::min(boundary, r.end);
          ps.chunks.push_back({a, e});
          a = e;
        }
      }
      next.push_back(std::move(ps));
    }
    processes = std::move(next);
    if (processes.empty())
      return error{ESRCH,
                   options.cgroup.empty() ? "no managed process is left" : "cgroup " + options.cgroup + " is empty"};
    return {};
  }

  // Where the pages of each chunk are: move_pages status for up to 4 pages per chunk (8192 in all).
  void sample_placement() {
    std::size_t total_chunks = 0;
    for (const auto &p : processes) total_chunks += p.chunks.size();
    const std::size_t per_chunk = std::clamp<std::size_t>(total_chunks ? 8192 / total_chunks : 4, 1, 4);
    std::vector<void *> pages;
    std::vector<int> status;
    for (auto &p : processes) {
      pages.clear();
      for (const auto &c : p.chunks) {
        const std::size_t n = (c.end - c.start) / page_size;
        const std::size_t k = std::min(per_chunk, std::max<std::size_t>(n, 1));
        for (std::size_t i = 0; i < k; ++i)
          pages.push_back(reinterpret_cast<void *>(c.start + ((i * n) / k) * page_size));
      }
      status.assign(pages.size(), -ENOENT);
      for (std::size_t at = 0; at < pages.size(); at += 4096) {
        const std::size_t n = std::min<std::size_t>(4096, pages.size() - at);
        if (detail::os().move_pages(p.pid, n, pages.data() + at, nullptr, status.data() + at, 0) != 0)
          std::fill(status.begin() + static_cast<std::ptrdiff_t>(at),
                    status.begin() + static_cast<std::ptrdiff_t>(at + n), -ENOENT);
      }
      p.present_bytes.assign(p.chunks.size(), 0);
      p.fast_share.assign(p.chunks.size(), 0);
      std::size_t at = 0;
      for (std::size_t i = 0; i < p.chunks.size(); ++i) {
        const auto &c = p.chunks[i];
        const std::size_t n = (c.end - c.start) / page_size;
        const std::size_t k = std::min(per_chunk, std::max<std::size_t>(n, 1));
        std::size_t present = 0, on_fast = 0;
        for (std::size_t j = 0; j < k; ++j, ++at) {
          const int st = status[at];
          if (st < 0) continue;
          ++present;
          if (fast.where.nodes.contains(static_cast<std::uint32_t>(st))) ++on_fast;
        }
        p.present_bytes[i] = (c.end - c.start) * present / k;
        p.fast_share[i] = present ? static_cast<double>(on_fast) / static_cast<double>(present) : 0.0;
      }
    }
  }

  // The allocator's knowledge (contract, 4): attributes the smoothed heat of each live large
  // block's chunks to its site once the block is mature, sets each site's verdict in the
  // registry, and gives the chunks of younger blocks their site's heat.
  void learn_sites() {
    detail::site_registry &reg = *options.sites;
    process_state *self = nullptr;
    for (auto &p : processes)
      if (p.pid == ::getpid()) self = &p;
    struct block {
      std::uintptr_t start;
      std::size_t bytes;
      unsigned site;
      std::uint32_t serial;
    };
    std::vector<block> blocks;
    reg.for_each_block([&](std::uintptr_t start, std::size_t bytes, unsigned site, std::uint32_t serial) {
      blocks.push_back({start, bytes, site, serial});
    });
    struct tally {
      double sum = 0, weight = 0;
      std::uint64_t bytes = 0;
      std::size_t blocks = 0;
    };
    std::unordered_map<unsigned, tally> per_site;
    std::unordered_map<std::uintptr_t, block_age> seen;
    seen.reserve(blocks.size());
    for (const auto &b : blocks) {
      const auto it = block_seen.find(b.start);
      const block_age age = it != block_seen.end() && it->second.site == b.site && it->second.serial == b.serial
                                ? it->second
                                : block_age{b.site, b.serial, steps};
      seen.emplace(b.start, age);
      tally &t = per_site[b.site];
      t.bytes += b.bytes;
      ++t.blocks;
      if (!self) continue;
      const bool mature = steps - age.first_step >= options.site_maturity_intervals;
      const auto known = site_states.find(b.site);
      const auto verdict = reg.verdict_of(b.site);
      const bool prior = !mature && verdict != detail::site_registry::verdict::unknown && known != site_states.end() &&
                         !std::isnan(known->second.heat);
      const std::uintptr_t end = b.start + b.bytes;
      auto c = std::lower_bound(self->chunks.begin(), self->chunks.end(), b.start,
                                [](const chunk_range &r, std::uintptr_t a) { return r.end <= a; });
      for (; c != self->chunks.end() && c->start < end; ++c) {
        const auto st = self->state.find(c->start);
        if (st == self->state.end()) continue;
        const std::uintptr_t lo = std::max(c->start, b.start), hi = std::min(c->end, end);
        const auto overlap = static_cast<double>(hi - lo);
        if (mature) {
          t.sum += st->second.heat * overlap;
          t.weight += overlap;
        } else if (prior && 2 * (hi - lo) >= c->end - c->start) {  // the chunk is mostly this block
          const double h = known->second.heat;
          double &heat = st->second.heat;
          if (verdict == detail::site_registry::verdict::hot ? heat < h : heat > h) {
            heat = h;
            ++prior_chunks;
          }
        }
      }
    }
    block_seen = std::move(seen);
    if (self) cool_freed(reg, blocks, *self);
    for (auto &[site, s] : site_states) s.bytes = 0, s.blocks = 0;
    for (const auto &[site, t] : per_site) {
      site_state &s = site_states[site];
      s.bytes = t.bytes;
      s.blocks = t.blocks;
      if (t.weight <= 0) continue;
      const double h = t.sum / t.weight;
      s.heat = s.observations == 0 ? h : 0.5 * h + 0.5 * s.heat;
      ++s.observations;
      if (s.observations < 2) continue;
      if (s.heat >= options.promote_threshold)
        reg.set_verdict(site, detail::site_registry::verdict::hot);
      else if (s.heat < options.promote_threshold / 2)
        reg.set_verdict(site, detail::site_registry::verdict::cold);
    }
  }

  // Memory of a block freed since the last interval is free, whatever was written to it while
  // the block lived: jemalloc keeps it resident (and hands it out again as it is, on the node
  // it is on), so promoting it for those writes would put the next block there on the fast
  // tier. Each chunk mostly inside a freed block and overlapping no live one is cold now.
  template <class Block>
  void cool_freed(const detail::site_registry &reg, std::vector<Block> &live, process_state &self) {
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> freed;
    (void)reg.for_each_freed(
        freed_cursor, [&](std::uintptr_t start, std::size_t bytes) { freed.emplace_back(start, start + bytes); });
    if (freed.empty()) return;
    std::sort(live.begin(), live.end(), [](const Block &a, const Block &b) { return a.start < b.start; });
    const auto overlaps_live = [&](std::uintptr_t lo, std::uintptr_t hi) {
      // The last live block starting before hi (live blocks never overlap each other).
      auto it =
          std::lower_bound(live.begin(), live.end(), hi, [](const Block &b, std::uintptr_t a) { return b.start < a; });
      return it != live.begin() && std::prev(it)->start + std::prev(it)->bytes > lo;
    };
    for (const auto &[start, end] : freed) {
      auto c = std::lower_bound(self.chunks.begin(), self.chunks.end(), start,
                                [](const chunk_range &r, std::uintptr_t a) { return r.end <= a; });
      for (; c != self.chunks.end() && c->start < end; ++c) {
        const std::uintptr_t lo = std::max(c->start, start), hi = std::min(c->end, end);
        if (2 * (hi - lo) < c->end - c->start || overlaps_live(c->start, c->end)) continue;
        const auto st = self.state.find(c->start);
        if (st == self.state.end() || st->second.heat == 0) continue;
        st->second.heat = 0;
        ++freed_chunks;
      }
    }
  }

  // The site part of the statistics (under `lock`).
  void site_statistics(tiering_statistics &st) const {
    const detail::site_registry &reg = *options.sites;
    st.site_knowledge = true;
    st.sites = st.sites_hot = st.sites_cold = st.site_blocks = 0;
    std::vector<std::pair<unsigned, const site_state *>> order;
    for (const auto &[site, s] : site_states) {
      const auto v = reg.verdict_of(site);
      if (s.blocks == 0 && v == detail::site_registry::verdict::unknown) continue;
      ++st.sites;
      st.sites_hot += v == detail::site_registry::verdict::hot ? 1 : 0;
      st.sites_cold += v == detail::site_registry::verdict::cold ? 1 : 0;
      st.site_blocks += s.blocks;
      order.emplace_back(site, &s);
    }
    std::sort(order.begin(), order.end(), [](const auto &a, const auto &b) {
      return a.second->bytes != b.second->bytes ? a.second->bytes > b.second->bytes : a.first < b.first;
    });
    if (order.size() > 8) order.resize(8);
    st.site_reports.clear();
    for (const auto &[site, s] : order) {
      tiering_statistics::site_report r;
      r.address = reg.site_address(site);
      r.where = describe_code_address(r.address);
      r.heat = s->heat;
      r.bytes = s->bytes;
      r.blocks = s->blocks;
      const auto v = reg.verdict_of(site);
      r.verdict = v == detail::site_registry::verdict::hot    ? "hot"
                  : v == detail::site_registry::verdict::cold ? "cold"
                                                              : "learning";
      st.site_reports.push_back(std::move(r));
    }
    st.site_prior_chunks = prior_chunks;
    st.site_freed_chunks = freed_chunks;
    st.cold_placed_blocks = reg.cold_placed_blocks();
    st.cold_placed_bytes = reg.cold_placed_bytes();
  }

  result<void> step() {
    const double cpu0 = thread_cpu_seconds();
    const double now = monotonic_seconds() - started;
    try {
      if (auto ok = refresh_processes(); !ok) return ok;
      std::vector<target_view> views;
      views.reserve(processes.size());
      for (auto &p : processes) views.push_back({p.pid, &p.chunks, {}, &p.mappings});
      std::string source_error;
      const double observe0 = thread_cpu_seconds();
      if (auto ok = hotness->observe(views); !ok) source_error = ok.error().message;
      const double observe_cpu = thread_cpu_seconds() - observe0;
      // Smooth each chunk's heat.
      const double a = std::clamp(options.smoothing, 0.01, 1.0);
      for (std::size_t k = 0; k < processes.size(); ++k) {
        auto &p = processes[k];
        std::unordered_map<std::uintptr_t, chunk_state> kept;
        kept.reserve(p.chunks.size());
        for (std::size_t i = 0; i < p.chunks.size(); ++i) {
          const double obs = views[k].heat.size() == p.chunks.size() ? views[k].heat[i] : 0.0;
          const bool observed = !std::isnan(obs);  // else the source took other chunks this interval
          auto it = p.state.find(p.chunks[i].start);
          chunk_state s = it == p.state.end() ? chunk_state{observed ? obs : 0.0, -1e18, 0} : it->second;
          if (it != p.state.end() && observed) s.heat = a * obs + (1 - a) * s.heat;
          if (s.heat < 1e-3) s.heat = 0;
          kept.emplace(p.chunks[i].start, s);
        }
        p.state = std::move(kept);
      }
      if (options.sites) learn_sites();
      ++steps;
      sample_placement();

      // How much the fast tier may take.
      std::vector<detail::chunk_view> views_all;
      std::vector<std::pair<std::size_t, std::size_t>> where;  // (process, chunk)
      std::uint64_t managed = 0, managed_fast = 0;
      for (std::size_t k = 0; k < processes.size(); ++k) {
        const auto &p = processes[k];
        for (std::size_t i = 0; i < p.chunks.size(); ++i) {
          const auto &s = p.state.at(p.chunks[i].start);
          views_all.push_back({s.heat, p.present_bytes[i], p.fast_share[i], s.last_move, s.last_direction});
          where.emplace_back(k, i);
          managed += p.present_bytes[i];
          managed_fast += static_cast<std::uint64_t>(static_cast<double>(p.present_bytes[i]) * p.fast_share[i]);
        }
      }
      const double psi = psi_some_avg10(options.cgroup.empty() ? std::string("/proc/pressure/memory")
                                                               : options.cgroup + "/memory.pressure");
      const double reserve_share = options.fast_reserve_fraction * (psi > options.psi_threshold ? 2.0 : 1.0);
      std::int64_t free_room = 0;
      std::uint64_t reserve_bytes = 0;
      char root[256];
      detail::copy_sysfs_root(root, sizeof root);
      for (auto n : fast.where.nodes.to_vector()) {
        detail::node_memory m;
        if (!detail::read_node_memory(root, n, &m)) continue;
        const auto reserve = static_cast<std::uint64_t>(static_cast<double>(m.total) * reserve_share);
        reserve_bytes += reserve;
        free_room += static_cast<std::int64_t>(m.free) - static_cast<std::int64_t>(reserve);
      }
      std::int64_t room = free_room;
      if (options.fast_limit_bytes > 0)
        room = std::min(room,
                        static_cast<std::int64_t>(options.fast_limit_bytes) - static_cast<std::int64_t>(managed_fast));

      // Migration budget: accumulates at the rate, carries over at most two intervals' worth.
      const double dt = last_step > 0 ? now - last_step : options.interval_seconds;
      last_step = now;
      const double rate = options.max_bytes_per_second > 0 ? static_cast<double>(options.max_bytes_per_second) : 1e18;
      const double cap = std::max(rate * options.interval_seconds * 2, 2.0 * static_cast<double>(options.chunk_bytes));
      budget = std::min(budget + rate * dt, cap);

      detail::plan_limits limits;
      limits.room_bytes = room;
      limits.budget_bytes = static_cast<std::uint64_t>(std::min(budget, 1e18));
      limits.promote = stats_promoting();
      limits.now = now;
      limits.promote_threshold = options.promote_threshold;
      limits.hysteresis = options.hysteresis;
      limits.cooldown = options.cooldown_seconds;
      const auto plan = detail::plan_interval(views_all, limits);

      // Carry it out: demotions first (they make the room), one migrate call per process and direction.
      std::uint64_t promoted = 0, demoted = 0, promote_failed = 0, demote_failed = 0;
      double migrate_cpu = 0;
      std::string error_text = source_error;
      auto run = [&](const std::vector<std::size_t> &list, bool up) {
        std::map<std::size_t, std::vector<address_range>> per_process;
        for (std::size_t idx : list) {
          const auto [k, i] = where[idx];
          auto &ranges = per_process[k];
          const auto &c = processes[k].chunks[i];
          if (!ranges.empty() && ranges.back().end == c.start)
            ranges.back().end = c.end;
          else
            ranges.push_back({c.start, c.end, {}});
          auto &s = processes[k].state[c.start];
          s.last_move = now;
          s.last_direction = up ? 1 : -1;
        }
        for (auto &[k, ranges] : per_process) {
          migration_options mo;
          mo.pid = processes[k].pid;
          if (!up) mo.only_from = fast.where.nodes;
          const double migrate0 = thread_cpu_seconds();
          auto r = migrate(ranges, up ? fast : slow, mo);
          migrate_cpu += thread_cpu_seconds() - migrate0;
          if (!r) {
            error_text = r.error().message;
            continue;
          }
          (up ? promoted : demoted) += r->moved;
          (up ? promote_failed : demote_failed) += r->failed();
          budget -= static_cast<double>(r->moved * r->page_size);
        }
      };
      run(plan.demote, false);
      run(plan.promote, true);
      budget = std::max(budget, 0.0);

      const double cpu = thread_cpu_seconds() - cpu0;
      std::lock_guard<std::mutex> g(lock);
      stats.intervals++;
      stats.pages_promoted += promoted;
      stats.pages_demoted += demoted;
      stats.promote_failed += promote_failed;
      stats.demote_failed += demote_failed;
      // After the moves: the sampled state plus what moved.
      const std::uint64_t moved_up = promoted * page_size, moved_down = demoted * page_size;
      stats.fast_bytes = managed_fast + moved_up > moved_down ? managed_fast + moved_up - moved_down : 0;
      stats.managed_bytes = managed;
      stats.slow_bytes = managed > stats.fast_bytes ? managed - stats.fast_bytes : 0;
      stats.hot_bytes = plan.hot_bytes;
      stats.processes = processes.size();
      stats.chunks = 0;
      for (const auto &pr : processes) stats.chunks += pr.chunks.size();
      stats.psi_some_avg10 = psi;
      stats.fast_reserve_bytes = reserve_bytes;
      stats.engine_cpu_seconds += cpu;
      stats.observe_cpu_seconds += observe_cpu;
      stats.migrate_cpu_seconds += migrate_cpu;
      stats.source_cpu_seconds = hotness->cpu_seconds();
      stats.window_seconds = hotness->window_seconds();
      stats.sample_period = hotness->sample_period();
      stats.write_fault_seconds = hotness->write_fault_seconds();
      stats.source_overhead = hotness->program_overhead();
      stats.scan_chunks = hotness->scan_chunks();
      stats.elapsed_seconds = monotonic_seconds() - started;
      if (!error_text.empty()) stats.last_error = error_text;
      if (options.sites) site_statistics(stats);
    } catch (const std::bad_alloc &) {
      return error{ENOMEM, "tiering: out of memory"};
    }
    if (options.on_interval) options.on_interval(statistics());
    return {};
  }

  bool stats_promoting() {
    std::lock_guard<std::mutex> g(lock);
    return stats.promoting;
  }

  [[nodiscard]] tiering_statistics statistics() const {
    std::lock_guard<std::mutex> g(lock);
    return stats;
  }

  void loop() {
    (void)pthread_setname_np(pthread_self(), "hetmem-tiering");
    for (;;) {
      const auto t0 = std::chrono::steady_clock::now();
      {
        std::lock_guard<std::mutex> g(wake_lock);
        if (stopping) return;
      }
      auto r = step();
      if (!r) {
        std::lock_guard<std::mutex> g(lock);
        stats.last_error = r.error().message;
        if (r.error().code == ESRCH) return;  // nothing left to manage
      }
      std::unique_lock<std::mutex> g(wake_lock);
      wake.wait_until(g,
                      t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(options.interval_seconds)),
                      [this] { return stopping; });
      if (stopping) return;
    }
  }
};

result<std::unique_ptr<tiering_engine>> tiering_engine::create(tiering_options options) {
  try {
    if (options.interval_seconds <= 0 || options.interval_seconds > 3600)
      return error{EINVAL, "tiering: the interval must be between 0 and 3600 s"};
    if (options.chunk_bytes < static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) ||
        (options.chunk_bytes & (options.chunk_bytes - 1)) != 0)
      return error{EINVAL, "tiering: the chunk size must be a power of two of at least one page"};
    if (options.fast_reserve_fraction < 0 || options.fast_reserve_fraction >= 1)
      return error{EINVAL, "tiering: the fast tier's reserve must be a share in [0, 1)"};
    const bool only_self =
        options.cgroup.empty() && (options.pids.empty() || (options.pids.size() == 1 && options.pids[0] == ::getpid()));
    const std::string wp_self_only =
        "userfaultfd write-protect bits watch only the process that runs the engine (the preload's, or the API's "
        "with no pids), not other processes";
    if (options.source == hotness_source::write_protect && !only_self) return error{EINVAL, "tiering: " + wp_self_only};
    if (options.sites && !only_self)
      return error{EINVAL,
                   "tiering: allocation sites are the allocator's knowledge of this process: only with no other "
                   "process managed"};
    auto p = std::make_unique<impl>();
    if (!options.fast || !options.slow) {
      auto topo = load_topology();
      if (!topo) return error{topo.error().code, "tiering: cannot read the memory topology: " + topo.error().message};
      if (!options.fast) {
        auto f = tier_by_rank(*topo, 0);
        if (!f) return error{f.error().code, "tiering: no fast tier: " + f.error().message};
        options.fast = *f;
      }
      if (!options.slow) {
        if (options.fast->next.empty())
          return error{ENODEV, "tiering: this machine has one memory tier for these CPUs (" + options.fast->name +
                                   "): nothing to demote to"};
        options.slow = options.fast->next.front();
      }
    }
    if (options.fast->file || options.slow->file)
      return error{EINVAL, "tiering: file-backed tiers hold no NUMA pages to migrate"};
    if (options.fast->where.nodes.empty() || options.slow->where.nodes.empty())
      return error{EINVAL, "tiering: a tier without nodes"};
    if (options.fast->where.nodes.intersects(options.slow->where.nodes))
      return error{EINVAL, "tiering: the fast tier (" + options.fast->name + ") and the slow tier (" +
                               options.slow->name + ") share nodes"};
    p->fast = *options.fast;
    p->slow = *options.slow;
    p->options = options;
    if (auto ok = p->refresh_processes(); !ok) return ok.error();

    const auto kernel = detect_kernel_tiering();
    p->stats.kernel_notes = kernel.notes();
    if (kernel.kernel_promotes()) {
      switch (options.coexist) {
        case kernel_coexistence::yield:
          return error{EBUSY, "tiering: the kernel's NUMA balancing is in tiering mode (kernel.numa_balancing=" +
                                  std::to_string(kernel.numa_balancing) + ") and coexist=yield: hetmem stands aside"};
        case kernel_coexistence::coexist:
          p->stats.promoting = false;
          p->stats.kernel_notes.emplace_back(
              "hetmem demotes only: the kernel promotes (coexist=force makes hetmem promote too)");
          break;
        case kernel_coexistence::force:
          p->stats.kernel_notes.emplace_back("hetmem promotes as well as the kernel (coexist=force)");
          break;
      }
    }
    // Best first: DAMON, soft-dirty bits, userfaultfd write-protect bits (this process only),
    // hardware sampling.
    std::vector<std::string> tried;              // why the better ones were not used
    std::unique_ptr<source> slow_write_protect;  // opened, but its faults are costly here: the last resort
    if (options.source == hotness_source::automatic || options.source == hotness_source::damon) {
      std::string note;
      auto d =
          tiering_detail::open_damon_source(options.damon_admin, options.damon_modules, options.damon_takeover, note);
      if (d) {
        p->hotness = std::move(*d);
        if (note.rfind("stopped DAMON_STAT", 0) == 0)  // the kernel's state read before: no longer so
          std::erase_if(p->stats.kernel_notes,
                        [](const std::string &n) { return n.rfind("DAMON_STAT is running", 0) == 0; });
        if (!note.empty()) p->stats.kernel_notes.push_back("DAMON: " + note);
      } else if (options.source == hotness_source::damon) {
        return d.error();
      } else {
        p->stats.kernel_notes.push_back("hotness: not DAMON: " + d.error().message);
        tried.push_back("not DAMON: " + d.error().message);
      }
    }
    if (!p->hotness && options.source != hotness_source::damon) {
      if (options.soft_dirty_window_seconds <= 0 || options.soft_dirty_window_seconds >= options.interval_seconds)
        return error{EINVAL, "tiering: the sampling window must be shorter than the interval"};
    }
    if (!p->hotness && (options.source == hotness_source::automatic || options.source == hotness_source::soft_dirty)) {
      if (auto ok = tiering_detail::soft_dirty_supported(); ok) {
        p->hotness = tiering_detail::make_soft_dirty_source(options.soft_dirty_window_seconds, options.interval_seconds,
                                                            options.write_protect_max_overhead);
      } else if (options.source == hotness_source::soft_dirty) {
        return error{ok.error().code, "tiering: " + ok.error().message};
      } else {
        if (only_self) p->stats.kernel_notes.push_back("hotness: not " + ok.error().message);
        tried.push_back(ok.error().message);
      }
    }
    if (!p->hotness &&
        (options.source == hotness_source::automatic || options.source == hotness_source::write_protect)) {
      if (!only_self) {
        tried.push_back(wp_self_only);
      } else if (auto w = tiering_detail::open_write_protect_source(
                     options.soft_dirty_window_seconds, options.write_protect_within,
                     options.write_protect_chunks_per_interval, options.interval_seconds,
                     options.write_protect_max_overhead);
                 w) {
        // Chosen automatically only where a write fault is cheap: elsewhere (a paravirtualized
        // guest, say) the next source goes first, and this one stays the last resort.
        const double fault = (*w)->write_fault_seconds();
        if (options.source == hotness_source::automatic && fault > options.write_protect_auto_max_fault_seconds) {
          char why[200];
          std::snprintf(why, sizeof why,
                        "userfaultfd write-protect bits: a write fault costs %.1f µs here (over %.1f µs): tried "
                        "after the other sources",
                        fault * 1e6, options.write_protect_auto_max_fault_seconds * 1e6);
          tried.push_back(why);
          p->stats.kernel_notes.push_back(std::string("hotness: ") + why);
          slow_write_protect = std::move(*w);
        } else {
          p->hotness = std::move(*w);
        }
      } else if (options.source == hotness_source::write_protect) {
        return error{w.error().code, "tiering: " + w.error().message};
      } else {
        tried.push_back(w.error().message);
      }
    }
    if (!p->hotness && (options.source == hotness_source::automatic || options.source == hotness_source::perf)) {
      if (auto h = tiering_detail::open_perf_source(options, p->wanted_pids()); h) {
        p->hotness = std::move(*h);
      } else if (options.source == hotness_source::perf) {
        return error{h.error().code, "tiering: " + h.error().message};
      } else {
        tried.push_back(h.error().message);
      }
    }
    if (!p->hotness && slow_write_protect) p->hotness = std::move(slow_write_protect);  // held to its share
    if (!p->hotness) {
      std::string why = "tiering: no source of hotness on this machine";
      for (std::size_t i = 0; i < tried.size(); ++i) why += (i == 0 ? ": " : "; ") + tried[i];
      return error{ENOTSUP, why};
    }
    p->stats.source = p->hotness->describe();
    if (options.sites) {
      p->stats.site_knowledge = true;
      p->stats.source += ", with the allocator's knowledge of its large blocks' call sites";
    }
    p->stats.window_seconds = p->hotness->window_seconds();
    p->stats.write_fault_seconds = p->hotness->write_fault_seconds();
    p->stats.scan_chunks = p->hotness->scan_chunks();
    return std::unique_ptr<tiering_engine>(new tiering_engine(std::move(p)));
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "tiering: out of memory"};
  }
}

tiering_engine::tiering_engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

tiering_engine::~tiering_engine() { stop(); }

result<void> tiering_engine::step() { return impl_->step(); }

result<void> tiering_engine::start() {
  if (impl_->worker.joinable()) return error{EALREADY, "tiering: the engine is running already"};
  try {
    impl_->stopping = false;
    impl_->worker = std::thread([p = impl_.get()] { p->loop(); });
  } catch (const std::system_error &e) {
    return error{e.code().value(), std::string("tiering: cannot start the engine's thread: ") + e.what()};
  }
  return {};
}

void tiering_engine::stop() noexcept {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> g(impl_->wake_lock);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

tiering_statistics tiering_engine::statistics() const { return impl_->statistics(); }

const tier &tiering_engine::fast_tier() const noexcept { return impl_->fast; }
const tier &tiering_engine::slow_tier() const noexcept { return impl_->slow; }

void tiering_engine::close_after_fork() noexcept {
  if (impl_ && impl_->hotness) impl_->hotness->close_after_fork();
}

}  // namespace hetmem
