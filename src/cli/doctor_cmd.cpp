// doctor_cmd.cpp — `hetmem doctor [--root DIR] [--json]`.
#include "doctor_cmd.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "common.hpp"
#include "hetmem/format.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"

namespace hetmem::cli {
namespace {

// A small file below the root (at most 4 KiB), blank-trimmed; nullopt when unreadable.
std::optional<std::string> small_file(const std::string &root, const std::string &rel) {
  auto text = sysfs::read_text_file(under_root(root, rel), 4096);
  if (!text) return std::nullopt;
  return std::string(sysfs::trim(*text));
}

// "always [madvise] never" -> "madvise".
std::string bracketed(const std::string &s) {
  const auto a = s.find('['), b = s.find(']');
  if (a == std::string::npos || b == std::string::npos || b < a) return s;
  return s.substr(a + 1, b - a - 1);
}

std::string_view status_word(finding_status s) {
  switch (s) {
    case finding_status::ok:
      return "ok";
    case finding_status::note:
      return "note";
    case finding_status::warn:
      return "warn";
  }
  return "?";
}

}  // namespace

std::vector<finding> diagnose(const topology &t, const kernel_tiering_state &k, const std::string &root) {
  std::vector<finding> out;
  const auto &s = t.snapshot;
  // A captured tree may simply not contain a file: say so instead of blaming the kernel.
  const bool captured = !(root.empty() || root == "/");
  const std::string absent = captured ? " (or not captured in this tree)" : "";
  auto add = [&](std::string check, finding_status st, std::string summary, std::string fix = {}) {
    out.push_back({std::move(check), st, std::move(summary), std::move(fix)});
  };
  std::vector<const node_info *> memory;
  for (const auto &n : t.nodes)
    if (n.has_memory) memory.push_back(&n);
  const bool tiered = memory.size() > 1;
  std::vector<memory_kind> kinds;
  for (const auto *n : memory)
    if (std::find(kinds.begin(), kinds.end(), n->kind) == kinds.end()) kinds.push_back(n->kind);

  // What there is.
  {
    std::string list;
    for (const auto *n : memory)
      list += fmt::format("{}node {} {} {}", list.empty() ? "" : ", ", n->id, to_string(n->kind),
                          n->capacity_bytes ? format_bytes(*n->capacity_bytes) : "?");
    if (memory.empty())
      add("nodes", finding_status::warn, "no memory node could be read", "hetmem topo --explain");
    else if (!tiered)
      add("nodes", finding_status::note,
          "one memory node (" + list + "): nothing to tier; placement and migration have one choice");
    else
      add("nodes", finding_status::ok, fmt::format("{} memory nodes: {}", memory.size(), list));
  }

  // HMAT.
  if (t.hmat_reported) {
    add("hmat", finding_status::ok, fmt::format("HMAT reported (access class {})", t.hmat_access_class));
  } else if (tiered && (kinds.size() > 1 || std::any_of(memory.begin(), memory.end(), [](const node_info *n) {
                          return n->cpus.empty() || n->certainty == confidence::low;
                        }))) {
    add("hmat", finding_status::warn,
        "no HMAT performance data: node kinds are inferred from distances, dax links and CPU model, with less "
        "confidence",
        "enable HMAT (ACPI) in the firmware setup; meanwhile name kinds by hand: hetmem topo --kind N=hbm "
        "(or HETMEM_NODE_KINDS)");
  } else {
    add("hmat", finding_status::note,
        tiered ? "no HMAT performance data; every memory node is the same kind with CPUs, told apart by distance"
               : "no HMAT performance data (none needed with one memory node)");
  }
  for (const auto *n : memory)
    if (n->certainty == confidence::low && tiered)
      add("classification", finding_status::note,
          fmt::format("node {} is {} with low confidence: {}", n->id, to_string(n->kind),
                      n->reasons.empty() ? "no evidence" : n->reasons.front().text),
          fmt::format("hetmem topo --explain (or hetmem topo --kind {}=KIND)", n->id));

  // Kernel memory tiers and demotion.
  if (s.memory_tiers_reported) {
    add("memory_tiers", finding_status::ok, "kernel memory tiers: " + describe_memory_tiers(s));
  } else if (tiered) {
    add("memory_tiers", finding_status::note,
        "the kernel reports no memory tiers (/sys/devices/virtual/memory_tiering: Linux 6.1+)" + absent);
  }
  if (k.demotion_enabled == 1) {
    add("demotion", finding_status::ok,
        "demotion enabled: reclaim moves cold pages to slower tiers instead of dropping them");
  } else if (k.demotion_enabled == 0 && tiered && s.memory_tiers.size() > 1) {
    add("demotion", finding_status::warn,
        "demotion disabled: under memory pressure the fast tier's cold pages are swapped or dropped, not moved to "
        "the slower tier",
        "echo 1 > /sys/kernel/mm/numa/demotion_enabled");
  } else if (k.demotion_enabled < 0 && tiered) {
    add("demotion", finding_status::note, "no /sys/kernel/mm/numa/demotion_enabled (Linux 5.15+)" + absent);
  }

  // NUMA balancing.
  if (k.numa_balancing < 0) {
    add("numa_balancing", finding_status::note, "kernel.numa_balancing absent (CONFIG_NUMA_BALANCING off)" + absent);
  } else if (!tiered) {
    add("numa_balancing", finding_status::ok, fmt::format("kernel.numa_balancing = {}", k.numa_balancing));
  } else if (k.kernel_promotes()) {
    std::string limits;
    if (k.promote_rate_limit_mbps >= 0) limits += fmt::format(", at most {} MB/s", k.promote_rate_limit_mbps);
    if (k.hot_threshold_ms >= 0) limits += fmt::format(", hot threshold {} ms", k.hot_threshold_ms);
    add("numa_balancing", finding_status::ok,
        fmt::format("kernel.numa_balancing = {}: the kernel promotes hot pages itself{} (hetmem tierd coexists: it "
                    "only demotes)",
                    k.numa_balancing, limits));
  } else {
    add("numa_balancing", finding_status::note,
        fmt::format("kernel.numa_balancing = {}: nothing promotes hot pages from slower tiers unless hetmem tierd "
                    "(or HETMEM_TIERING=1 under the preload) runs",
                    k.numa_balancing),
        "sysctl kernel.numa_balancing=2   (the kernel's tiering mode), or: hetmem tierd --pid PID");
  }

  // Weighted interleave.
  if (!s.weighted_interleave.present) {
    if (tiered)
      add("weighted_interleave", finding_status::note,
          "no MPOL_WEIGHTED_INTERLEAVE (Linux 6.9+)" + absent +
              ": hetmem emulates bandwidth-weighted interleave with chunked binds");
  } else {
    bool all_one = !s.weighted_interleave.weights.empty();
    std::string w;
    for (auto [node, weight] : s.weighted_interleave.weights) {
      all_one = all_one && weight <= 1;
      w += fmt::format(" {}:{}", node, weight);
    }
    const bool auto_on = s.weighted_interleave.auto_mode.value_or(false);
    if (tiered && all_one && !auto_on)
      add("weighted_interleave", finding_status::note,
          "weighted interleave present but every weight is 1 (plain interleave); hetmem's `weighted` policy sets "
          "its own weights per range",
          "echo true > /sys/kernel/mm/mempolicy/weighted_interleave/auto   (Linux 6.16+), or write nodeN weights");
    else {
      // Do the weights share pages as HMAT's bandwidths would?
      const auto check = check_interleave_weights(t);
      const bool differ = check.differ;
      const std::string shares = check.comparable ? "; " + check.shares_text() : std::string();
      add("weighted_interleave", differ ? finding_status::note : finding_status::ok,
          fmt::format("weighted interleave present (auto={}, weights{}){}",
                      s.weighted_interleave.auto_mode ? (auto_on ? "true" : "false") : "n/a", w.empty() ? " none" : w,
                      shares),
          differ ? (auto_on ? "the kernel derived them: check HMAT (hetmem topo --explain), or write nodeN weights"
                            : "echo true > /sys/kernel/mm/mempolicy/weighted_interleave/auto   (Linux 6.16+)")
                 : std::string());
    }
  }

  // Hotness sources.
  if (k.damon_sysfs) {
    const bool writable =
        ::access(under_root(root, "sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds").c_str(), W_OK) == 0;
    add("damon", finding_status::ok,
        fmt::format("DAMON sysfs present ({} kdamond(s) configured, {} running{}){}", k.damon_kdamonds, k.damon_running,
                    k.damon_schemes.empty() ? "" : ", schemes: " + std::to_string(k.damon_schemes.size()),
                    writable ? "" : "; only root can start it, others get soft-dirty or write-protect sampling"));
  } else {
    add("damon", finding_status::note,
        "no DAMON sysfs (CONFIG_DAMON_SYSFS)" + absent +
            ": hetmem's tiering samples soft-dirty or write-protect bits instead (more CPU, coarser, writes only)");
  }
  if (k.damon_stat)
    add("damon_stat", finding_status::warn,
        "DAMON_STAT is running (the kernel's own monitor, started at boot by Debian's 7.x kernels): while it runs the "
        "kernel starts no other kdamond, so hetmem's DAMON source cannot; hetmem stops it only when told to",
        "hetmem tierd --damon-takeover (HETMEM_TIERING=...,damon-takeover=on) stops it while hetmem uses DAMON and "
        "starts it again at exit; or echo N > /sys/module/damon_stat/parameters/enabled");
  if (k.damon_reclaim || k.damon_lru_sort)
    add("damon_modules", finding_status::note,
        fmt::format("DAMON modules active:{}{}: they reclaim/sort pages on their own; hetmem does not fight them",
                    k.damon_reclaim ? " DAMON_RECLAIM" : "", k.damon_lru_sort ? " DAMON_LRU_SORT" : ""));
  if (k.psi)
    add("psi", finding_status::ok, "memory pressure (PSI) readable: tiering demotes harder as pressure rises");
  else
    add("psi", finding_status::note, "no /proc/pressure/memory" + absent + ": tiering cannot see memory pressure",
        "boot with psi=1 (CONFIG_PSI)");

  // Transparent huge pages.
  if (auto thp = small_file(root, "sys/kernel/mm/transparent_hugepage/enabled")) {
    const auto mode = bracketed(*thp);
    if (mode == "never")
      add("thp", finding_status::warn,
          "transparent huge pages off: heaps asked for huge pages (hetmem's thp option, hbw_posix_memalign_psize "
          "2MB) get 4 KiB pages",
          "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
    else
      add("thp", finding_status::ok, "transparent huge pages: " + mode);
  }

  // The caller's cpuset.
  if (s.allowed_mems) {
    std::string excluded;
    for (const auto *n : memory)
      if (!s.allowed_mems->contains(n->id)) excluded += (excluded.empty() ? "" : ",") + std::to_string(n->id);
    if (excluded.empty())
      add("cpuset", finding_status::ok,
          "every memory node is allowed to this process (cpuset mems " + s.allowed_mems->to_string() + ")");
    else
      add("cpuset", finding_status::warn,
          fmt::format("the cpuset allows mems {} only ({}): node(s) {} cannot be used from here",
                      s.allowed_mems->to_string(), s.allowed_mems_source, excluded),
          "echo <nodes> > /sys/fs/cgroup/<group>/cpuset.mems   (or run outside that cgroup)");
  }

  // dax devices that are not memory yet.
  for (const auto &d : s.dax_devices) {
    if (d.driver == sysfs::dax_driver::kmem) continue;
    const std::string size = d.size_bytes ? format_bytes(*d.size_bytes) : "?";
    add("dax", finding_status::note,
        fmt::format("{} ({}) is {}: not system RAM; usable as a hetmem file tier (file /dev/{} SIZE) or onlined as "
                    "a NUMA node",
                    d.name, size,
                    d.driver == sysfs::dax_driver::device_dax ? "a device-DAX character device"
                                                              : "bound to no driver (" + d.driver_name + ")",
                    d.name),
        fmt::format("daxctl reconfigure-device --mode=system-ram {}", d.name));
  }

  // Memory blocks left offline (hot-added CXL or dax kmem memory under auto_online_blocks=offline).
  if (auto policy = small_file(root, "sys/devices/system/memory/auto_online_blocks")) {
    std::size_t offline = 0;
    std::error_code ec;
    const std::string dir = under_root(root, "sys/devices/system/memory");
    for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
      const auto name = it->path().filename().string();
      if (!name.starts_with("memory")) continue;
      if (auto st = small_file(root, "sys/devices/system/memory/" + name + "/state"); st && *st == "offline") ++offline;
      if (offline > 100000) break;
    }
    if (offline > 0)
      add("memory_blocks", finding_status::warn,
          fmt::format("{} memory block(s) offline (auto_online_blocks = {}): hot-added memory is not in use", offline,
                      *policy),
          "echo online_movable > /sys/devices/system/memory/memoryN/state   (for each offline block), or daxctl "
          "online-memory");
  }

  // zone_reclaim_mode: reclaiming locally instead of falling back to the next node defeats tiers.
  if (auto z = small_file(root, "proc/sys/vm/zone_reclaim_mode"); z && tiered) {
    if (*z != "0")
      add("zone_reclaim", finding_status::warn,
          "vm.zone_reclaim_mode = " + *z + ": the kernel reclaims on a full node instead of using the next one",
          "sysctl vm.zone_reclaim_mode=0");
  }

  // Files the topology reader could not use.
  if (!s.diagnostics.empty())
    add("sysfs", finding_status::warn,
        fmt::format("{} sysfs file(s) could not be used (first: {}: {})", s.diagnostics.size(),
                    s.diagnostics.front().path, s.diagnostics.front().message),
        "hetmem topo --explain");
  return out;
}

int run_doctor(const doctor_args &a) {
  load_options lo;
  lo.root = a.root;
  auto topo = load_topology(lo);
  if (!topo) {
    std::fprintf(stderr, "hetmem doctor: cannot read the memory topology: %s\n", topo.error().message.c_str());
    return exit_failure;
  }
  const std::string root = topo->root == "/" ? std::string() : topo->root;
  const auto k = detect_kernel_tiering(root, topo->snapshot);
  const auto findings = diagnose(*topo, k, root);
  std::size_t warnings = 0, notes = 0;
  for (const auto &f : findings) {
    warnings += f.status == finding_status::warn ? 1u : 0u;
    notes += f.status == finding_status::note ? 1u : 0u;
  }
  if (a.json) {
    nlohmann::ordered_json j;
    j["schema"] = "hetmem.doctor/1";
    j["root"] = topo->root;
    auto arr = nlohmann::ordered_json::array();
    for (const auto &f : findings)
      arr.push_back({{"check", f.check},
                     {"status", std::string(status_word(f.status))},
                     {"summary", f.summary},
                     {"fix", f.fix.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(f.fix)}});
    j["findings"] = arr;
    j["warnings"] = warnings;
    j["notes"] = notes;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::string out = fmt::format("hetmem doctor: {}\n", topo->root);
    for (const auto &f : findings) {
      out += fmt::format("{:<5} {:<20} {}\n", status_word(f.status), f.check, f.summary);
      if (!f.fix.empty()) out += fmt::format("{:<26} fix: {}\n", "", f.fix);
    }
    out += fmt::format("{} warning{}, {} note{}.\n", warnings, warnings == 1 ? "" : "s", notes, notes == 1 ? "" : "s");
    std::fputs(out.c_str(), stdout);
  }
  return warnings ? exit_partial : exit_ok;
}

}  // namespace hetmem::cli
