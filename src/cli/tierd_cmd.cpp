// `hetmem tierd`: runs the tiering engine (hetmem/tiering.hpp) in this process for other
// processes or a cgroup, one line (or JSON object) per interval.
#include "tierd_cmd.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::cli {
namespace {

volatile sig_atomic_t stop_requested = 0;
extern "C" void on_stop_signal(int) { stop_requested = 1; }

nlohmann::json to_json(const tiering_statistics &s) {
  return {{"interval", s.intervals},
          {"seconds", s.elapsed_seconds},
          {"processes", s.processes},
          {"fast_bytes", s.fast_bytes},
          {"slow_bytes", s.slow_bytes},
          {"hot_bytes", s.hot_bytes},
          {"managed_bytes", s.managed_bytes},
          {"pages_promoted", s.pages_promoted},
          {"pages_demoted", s.pages_demoted},
          {"promote_failed", s.promote_failed},
          {"demote_failed", s.demote_failed},
          {"chunks", s.chunks},
          {"psi_some_avg10", s.psi_some_avg10},
          {"fast_reserve_bytes", s.fast_reserve_bytes},
          {"engine_cpu_seconds", s.engine_cpu_seconds},
          {"observe_cpu_seconds", s.observe_cpu_seconds},
          {"migrate_cpu_seconds", s.migrate_cpu_seconds},
          {"source_cpu_seconds", s.source_cpu_seconds},
          {"window_seconds", s.window_seconds},
          {"sample_period", s.sample_period},
          {"write_fault_seconds", s.write_fault_seconds},
          {"source_overhead", s.source_overhead},
          {"scan_chunks", s.scan_chunks},
          {"last_error", s.last_error}};
}

}  // namespace

int run_tierd(const tierd_args &a) {
  std::string spec = "rate=" + a.rate + ",interval=" + std::to_string(a.interval) + ",source=" + a.source +
                     ",coexist=" + a.coexist + ",threshold=" + std::to_string(a.threshold);
  if (!a.fast_limit.empty()) spec += ",fast-limit=" + a.fast_limit;
  if (a.damon_takeover) spec += ",damon-takeover=on";
  if (a.max_overhead) {
    char share[32];
    std::snprintf(share, sizeof share, "%g", *a.max_overhead);
    spec += ",max-overhead=" + std::string(share);
  }
  if (a.interval <= 0.1) spec += ",window=" + std::to_string(a.interval / 2);
  auto o = parse_tiering_options(spec);
  if (!o) {
    std::fprintf(stderr, "hetmem tierd: %s\n", o.error().message.c_str());
    return exit_usage;
  }
  for (pid_t p : a.pids)
    if (p <= 0) {
      std::fprintf(stderr, "hetmem tierd: --pid must name a process (a positive number)\n");
      return exit_usage;
    }
  if (a.pids.empty() && a.cgroup.empty()) {
    std::fprintf(stderr, "hetmem tierd: name the processes to manage: --pid PID (repeatable) or --cgroup PATH\n");
    return exit_usage;
  }
  o->pids = a.pids;
  o->cgroup = a.cgroup;
  if (a.fast || a.slow) {
    auto topo = load_topology();
    if (!topo) {
      std::fprintf(stderr, "hetmem tierd: cannot read the memory topology: %s\n", topo.error().message.c_str());
      return exit_failure;
    }
    if (a.fast) {
      auto t = tier_named(*a.fast, "--fast", *topo);
      if (!t) {
        std::fprintf(stderr, "hetmem tierd: %s\n", t.error().message.c_str());
        return exit_usage;
      }
      o->fast = *t;
      if (!a.slow && !t->next.empty()) o->slow = t->next.front();
    }
    if (a.slow) {
      auto t = tier_named(*a.slow, "--slow", *topo);
      if (!t) {
        std::fprintf(stderr, "hetmem tierd: %s\n", t.error().message.c_str());
        return exit_usage;
      }
      o->slow = *t;
    }
  }
  const bool json = a.json, quiet = a.quiet;
  o->on_interval = [json, quiet](const tiering_statistics &s) {
    if (quiet) return;
    if (json)
      std::printf("%s\n", to_json(s).dump().c_str());
    else
      std::printf("%s\n", s.summary().c_str());
    std::fflush(stdout);
  };
  auto engine = tiering_engine::create(*o);
  if (!engine) {
    std::fprintf(stderr, "hetmem tierd: %s\n", engine.error().message.c_str());
    return engine.error().code == EINVAL ? exit_usage : exit_failure;
  }
  const auto first = (*engine)->statistics();
  if (json) {
    std::printf("%s\n", nlohmann::json{{"schema", "hetmem.tierd/1"},
                                       {"source", first.source},
                                       {"promoting", first.promoting},
                                       {"kernel", first.kernel_notes}}
                            .dump()
                            .c_str());
  } else if (!quiet) {
    std::printf("hetmem tierd: hotness from %s\n", first.source.c_str());
    for (const auto &n : first.kernel_notes) std::printf("  %s\n", n.c_str());
  }
  std::fflush(stdout);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  (void)sigaction(SIGINT, &sa, nullptr);
  (void)sigaction(SIGTERM, &sa, nullptr);
  const auto started = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(a.interval);
  while (!stop_requested) {
    const auto t0 = std::chrono::steady_clock::now();
    if (a.duration > 0 && std::chrono::duration<double>(t0 - started).count() >= a.duration) break;
    auto r = (*engine)->step();
    if (!r) {
      if (r.error().code == ESRCH) {
        if (!quiet && !json) std::printf("hetmem tierd: %s; stopping\n", r.error().message.c_str());
        break;
      }
      std::fprintf(stderr, "hetmem tierd: %s\n", r.error().message.c_str());
    }
    while (!stop_requested && std::chrono::steady_clock::now() - t0 < interval)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto end = (*engine)->statistics();
  if (!quiet && !json) std::printf("hetmem tierd: done: %s\n", end.summary().c_str());
  return exit_ok;
}

}  // namespace hetmem::cli
