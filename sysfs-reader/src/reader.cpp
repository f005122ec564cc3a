#include "hetmem/sysfs/reader.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "hetmem/sysfs/environment.hpp"
#include "root_dir.hpp"

namespace hetmem::sysfs {
namespace {

using detail::root_dir;

// Not a std::string: no dynamic initialiser (the preload reads sysfs from its constructor,
// which may run before this library's static initialisers).
constexpr const char *node_dir = "sys/devices/system/node";

// Digits after `prefix` ("node12" -> 12); nullopt when the name is not prefix + decimal.
std::optional<std::uint64_t> numbered(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::string_view digits = name.substr(prefix.size());
  if (digits.size() > 9) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

bool has_substr(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }

class reader {
 public:
  reader(const root_dir &root, snapshot &snap) : root_(root), snap_(snap) {}

  void run() {
    read_node_masks();
    read_nodes();
    read_memory_tiers();
    read_dax();
    read_nvidia();
    if (everything()) read_kernel_knobs();
    read_allowed_mems();
    read_cpu();
  }

 private:
  const root_dir &root_;
  snapshot &snap_;

  bool everything() const { return snap_.scope == read_scope::everything; }

  void diag(const std::string &path, const error &e) { snap_.diagnostics.push_back({path, e.message, e.code}); }

  // Reads an attribute; absent -> nullopt silently; unreadable -> nullopt + diagnostic.
  std::optional<std::string> text(const std::string &path, std::size_t limit = max_attribute_bytes,
                                  bool truncate = false) {
    auto r = root_.read(path, limit, truncate);
    if (r) return std::move(r).value();
    if (r.error().code != ENOENT && r.error().code != ENOTDIR) diag(path, r.error());
    return std::nullopt;
  }

  // Reads and parses an attribute: absent -> nullopt; malformed -> nullopt + diagnostic.
  template <class Parse>
  auto attr(const std::string &path, Parse parse)
      -> std::optional<std::decay_t<decltype(parse(std::string_view{}).value())>> {
    auto t = text(path);
    if (!t) return std::nullopt;
    auto v = parse(std::string_view(*t));
    if (!v) {
      diag(path, v.error());
      return std::nullopt;
    }
    return std::move(v).value();
  }

  // The answer of a path check (root_.is_directory); one that could not be told
  // (EACCES, EIO, ...) is a diagnostic and counts as absent.
  bool checked(const std::string &path, const result<bool> &r) {
    if (r) return *r;
    diag(path, r.error());
    return false;
  }
  bool is_dir(const std::string &path) { return checked(path, root_.is_directory(path)); }

  // A symlink's target; absent -> nullopt silently; unreadable -> nullopt + diagnostic.
  std::optional<std::string> link(const std::string &path) {
    auto r = root_.read_link(path);
    if (r) return std::move(r).value();
    if (r.error().code != ENOENT && r.error().code != ENOTDIR) diag(path, r.error());
    return std::nullopt;
  }

  std::optional<std::vector<std::string>> entries(const std::string &path) {
    auto r = root_.list(path, max_dir_entries);
    if (r) return std::move(r).value();
    if (r.error().code != ENOENT && r.error().code != ENOTDIR) diag(path, r.error());
    return std::nullopt;
  }

  static auto node_list() {
    return [](std::string_view t) { return parse_id_list(t, max_node_id); };
  }

  // ------------------------------------------------------------------------------------------
  void read_node_masks() {
    if (!is_dir(node_dir)) {
      snap_.numa_dir_present = false;
      return;
    }
    snap_.possible = attr(std::string(node_dir) + "/possible", node_list());
    snap_.online = attr(std::string(node_dir) + "/online", node_list());
    if (everything()) snap_.has_cpu = attr(std::string(node_dir) + "/has_cpu", node_list());  // shown, not used
    snap_.has_memory = attr(std::string(node_dir) + "/has_memory", node_list());
    snap_.has_normal_memory = attr(std::string(node_dir) + "/has_normal_memory", node_list());
    snap_.has_generic_initiator = attr(std::string(node_dir) + "/has_generic_initiator", node_list());
  }

  void read_nodes() {
    if (!snap_.numa_dir_present) {
      synthesize_single_node();
      return;
    }
    // Which nodes exist: the directories, filtered by `online` when it is reported. When the
    // directory cannot be listed (the error is a diagnostic), `online`, then `possible`, say
    // which nodeN/ to read; with neither, the machine is taken as one node.
    id_set dirs;
    auto names = entries(node_dir);
    if (!names) {
      if (snap_.online || snap_.possible)
        for (std::uint32_t id : (snap_.online ? *snap_.online : *snap_.possible).to_vector())
          snap_.nodes.push_back(read_node(id));
      if (snap_.nodes.empty()) synthesize_single_node();
      return;
    }
    for (const auto &name : *names) {
      auto id = numbered(name, "node");
      if (!id) continue;
      if (*id > max_node_id) {
        diag(std::string(node_dir) + "/" + name,
             error{ERANGE, "node id " + std::to_string(*id) + " exceeds the limit " + std::to_string(max_node_id) +
                               "; node ignored"});
        continue;
      }
      dirs.insert(static_cast<std::uint32_t>(*id));
    }
    id_set ids = dirs;
    if (snap_.online) {
      ids = snap_.online->intersect(dirs);
      for (std::uint32_t id : snap_.online->to_vector()) {
        if (!dirs.contains(id))
          diag(std::string(node_dir) + "/online",
               error{ENOENT, "lists node " + std::to_string(id) + " but node" + std::to_string(id) +
                                 "/ does not exist; node ignored"});
      }
    }
    for (std::uint32_t id : ids.to_vector()) snap_.nodes.push_back(read_node(id));
  }

  node read_node(std::uint32_t id) {
    node n;
    n.id = id;
    const std::string dir = std::string(node_dir) + "/node" + std::to_string(id);
    auto cpu_list = [](std::string_view t) { return parse_id_list(t, max_cpu_id); };
    auto cpu_mask = [](std::string_view t) { return parse_id_mask(t, max_cpu_id); };
    if (auto cpus = attr(dir + "/cpulist", cpu_list)) {
      n.cpus = std::move(*cpus);
      n.cpus_reported = true;
    } else if (auto mask = attr(dir + "/cpumap", cpu_mask)) {
      n.cpus = std::move(*mask);
      n.cpus_reported = true;
    } else if (auto names = entries(dir)) {  // last resort: the cpuN links
      for (const auto &name : *names)
        if (auto cpu = numbered(name, "cpu"); cpu && *cpu <= max_cpu_id)
          n.cpus.insert(static_cast<std::uint32_t>(*cpu));
      n.cpus_reported = !n.cpus.empty();
    }
    if (auto mi = attr(dir + "/meminfo", [id](std::string_view t) { return parse_node_meminfo(t, id); })) {
      n.mem_total_kb = mi->total_kb;
      n.mem_free_kb = mi->free_kb;
    }
    if (auto row = attr(dir + "/distance", parse_distance_row)) n.distance_row = std::move(*row);
    // access1 (CPU initiators) first: where it names its initiators and gives performance,
    // classification never looks at access0, which the placement scope then leaves unread.
    read_access(dir + "/access1", n.access[1]);
    if (everything() || !n.access[1].performance.any() || n.access[1].initiators.empty())
      read_access(dir + "/access0", n.access[0]);
    read_memory_side_caches(dir + "/memory_side_cache", n);
    if (everything()) read_hugepages(dir + "/hugepages", n);
    return n;
  }

  void read_access(const std::string &dir, access_class &ac) {
    // The class is there when its initiators directory is: listed at once, without a lookup of
    // accessY first (two system calls fewer per class at every start-up under the preload).
    for (const char *sub : {"initiators", "targets"}) {
      if (sub[0] == 't' && !everything()) break;
      const std::string subdir = dir + "/" + sub;
      auto listed = root_.list(subdir, max_dir_entries);
      const bool absent = !listed && (listed.error().code == ENOENT || listed.error().code == ENOTDIR);
      if (!listed && !absent) diag(subdir, listed.error());
      if (sub[0] == 'i') {
        if (absent) return;
        ac.present = true;
      }
      if (!listed) continue;
      id_set &set = sub[0] == 'i' ? ac.initiators : ac.targets;
      for (const auto &name : *listed) {
        auto id = numbered(name, "node");
        if (!id) continue;
        if (*id > max_node_id) {
          diag(subdir + "/" + name, error{ERANGE, "node id exceeds the limit " + std::to_string(max_node_id)});
          continue;
        }
        set.insert(static_cast<std::uint32_t>(*id));
      }
    }
    auto &p = ac.performance;
    auto value = [&](const char *file, std::optional<std::uint64_t> &out) {
      auto v = attr(dir + "/initiators/" + file, parse_uint64);
      if (!v) return;
      if (*v == 0) {
        p.zero_values_seen = true;  // 0 = not reported
        return;
      }
      out = *v;
    };
    // Classification and placement take a write figure only where the read one is missing (or
    // 0): the placement scope reads it only then.
    value("read_latency", p.read_latency_ns);
    if (everything() || !p.read_latency_ns) value("write_latency", p.write_latency_ns);
    value("read_bandwidth", p.read_bandwidth_mbps);
    if (everything() || !p.read_bandwidth_mbps) value("write_bandwidth", p.write_bandwidth_mbps);
  }

  void read_memory_side_caches(const std::string &dir, node &n) {
    auto names = entries(dir);
    if (!names) return;
    for (const auto &name : *names) {
      auto idx = numbered(name, "index");
      if (!idx) continue;
      memory_side_cache c;
      c.index = static_cast<std::uint32_t>(*idx);
      const std::string d = dir + "/" + name;
      c.size_bytes = attr(d + "/size", parse_uint64);
      c.line_size_bytes = attr(d + "/line_size", parse_uint64);
      auto small = [&](const char *file) -> std::optional<std::uint32_t> {
        auto v = attr(d + "/" + file, parse_uint64);
        if (!v) return std::nullopt;
        if (*v > 0xffffffffu) {
          diag(d + "/" + file, error{ERANGE, "value out of range"});
          return std::nullopt;
        }
        return static_cast<std::uint32_t>(*v);
      };
      c.indexing = small("indexing");
      c.write_policy = small("write_policy");
      c.address_mode = small("address_mode");
      n.memory_side_caches.push_back(c);
    }
    std::sort(n.memory_side_caches.begin(), n.memory_side_caches.end(),
              [](const auto &a, const auto &b) { return a.index < b.index; });
  }

  void read_hugepages(const std::string &dir, node &n) {
    auto names = entries(dir);
    if (!names) return;
    for (const auto &name : *names) {
      // "hugepages-2048kB"
      if (name.size() < 13 || name.compare(0, 10, "hugepages-") != 0 || name.compare(name.size() - 2, 2, "kB") != 0)
        continue;
      auto kb = parse_uint64(std::string_view(name).substr(10, name.size() - 12));
      if (!kb) {
        diag(dir + "/" + name, kb.error());
        continue;
      }
      hugepage_pool pool;
      pool.page_size_kb = *kb;
      const std::string d = dir + "/" + name;
      pool.total = attr(d + "/nr_hugepages", parse_uint64);
      pool.free = attr(d + "/free_hugepages", parse_uint64);
      pool.surplus = attr(d + "/surplus_hugepages", parse_uint64);
      n.hugepages.push_back(pool);
    }
    std::sort(n.hugepages.begin(), n.hugepages.end(),
              [](const auto &a, const auto &b) { return a.page_size_kb < b.page_size_kb; });
  }

  // A kernel without CONFIG_NUMA: one node 0 holding every CPU and all memory.
  void synthesize_single_node() {
    node n;
    n.id = 0;
    if (auto cpus =
            attr("sys/devices/system/cpu/online", [](std::string_view t) { return parse_id_list(t, max_cpu_id); })) {
      n.cpus = std::move(*cpus);
      n.cpus_reported = true;
    }
    if (auto mi = text("proc/meminfo")) {
      for (auto key : {"MemTotal", "MemFree"}) {
        if (auto v = find_status_field(*mi, key)) {
          std::string_view val = *v;
          if (val.size() > 2 && val.substr(val.size() - 2) == "kB") val = trim(val.substr(0, val.size() - 2));
          if (auto kb = parse_uint64(val)) (std::string_view(key) == "MemTotal" ? n.mem_total_kb : n.mem_free_kb) = *kb;
        }
      }
    }
    n.distance_row = {10};
    snap_.nodes.push_back(std::move(n));
  }

  void read_memory_tiers() {
    const std::string dir = "sys/devices/virtual/memory_tiering";
    auto names = entries(dir);
    if (!names) return;
    snap_.memory_tiers_reported = true;
    for (const auto &name : *names) {
      auto id = numbered(name, "memory_tier");
      if (!id) continue;
      if (auto nodes = attr(dir + "/" + name + "/nodelist", node_list()))
        snap_.memory_tiers.push_back({static_cast<std::uint32_t>(*id), std::move(*nodes)});
    }
    std::sort(snap_.memory_tiers.begin(), snap_.memory_tiers.end(),
              [](const auto &a, const auto &b) { return a.id < b.id; });
  }

  static dax_parent classify_dax_path(std::string_view p) {
    if (has_substr(p, "ACPI0017") || has_substr(p, "/cxl")) {
      if (has_substr(p, "nvdimm-bridge") || has_substr(p, "/ndbus")) return dax_parent::cxl_pmem;
      return dax_parent::cxl_ram;
    }
    if (has_substr(p, "e820_pmem")) return dax_parent::legacy_pmem;
    if (has_substr(p, "/ndbus")) return dax_parent::nvdimm;
    if (has_substr(p, "/hmem.")) return dax_parent::soft_reserved;
    return dax_parent::unknown;
  }

  void read_dax() {
    const std::string dir = "sys/bus/dax/devices";
    auto names = entries(dir);
    if (!names) return;
    std::sort(names->begin(), names->end());
    // The devices' own links first, all in one directory (root_dir keeps it open between them).
    for (const auto &name : *names) {
      if (name.compare(0, 3, "dax") != 0) continue;
      dax_device d;
      d.name = name;
      if (auto target = link(dir + "/" + name)) {
        d.device_path = detail::join_lexically("bus/dax/devices", *target);
        d.parent = classify_dax_path("/" + d.device_path);
      }
      snap_.dax_devices.push_back(std::move(d));
    }
    for (auto &d : snap_.dax_devices) {
      const std::string p = dir + "/" + d.name;
      if (auto drv = link(p + "/driver")) {
        auto slash = drv->rfind('/');
        d.driver_name = slash == std::string::npos ? *drv : drv->substr(slash + 1);
        d.driver = d.driver_name == "kmem"         ? dax_driver::kmem
                   : d.driver_name == "device_dax" ? dax_driver::device_dax
                                                   : dax_driver::other;
      }
      d.target_node = attr(p + "/target_node", parse_int64);
      if (everything()) {
        d.numa_node = attr(p + "/numa_node", parse_int64);
        d.size_bytes = attr(p + "/size", parse_uint64);
      }
    }
  }

  void read_nvidia() {
    const std::string dir = "proc/driver/nvidia/gpus";
    auto names = entries(dir);
    if (!names) return;
    std::sort(names->begin(), names->end());
    for (const auto &name : *names) {
      if (auto st = attr(dir + "/" + name + "/numa_status", parse_nvidia_numa_status))
        snap_.nvidia_gpus.push_back({name, std::move(*st)});
    }
  }

  void read_kernel_knobs() {
    snap_.demotion_enabled = attr("sys/kernel/mm/numa/demotion_enabled", parse_bool);
    if (auto v = attr("proc/sys/kernel/numa_balancing", parse_uint64)) {
      if (*v > 0xffff)
        diag("proc/sys/kernel/numa_balancing", error{ERANGE, "value out of range"});
      else
        snap_.numa_balancing = static_cast<std::uint32_t>(*v);
    }
    const std::string wi = "sys/kernel/mm/mempolicy/weighted_interleave";
    if (auto names = entries(wi)) {
      snap_.weighted_interleave.present = true;
      for (const auto &name : *names) {
        if (name == "auto") {
          snap_.weighted_interleave.auto_mode = attr(wi + "/auto", parse_bool);
          continue;
        }
        auto id = numbered(name, "node");
        if (!id || *id > max_node_id) continue;
        if (auto w = attr(wi + "/" + name, parse_uint64)) {
          if (*w > 255)
            diag(wi + "/" + name, error{ERANGE, "weight " + std::to_string(*w) + " exceeds 255"});
          else
            snap_.weighted_interleave.weights.emplace_back(static_cast<std::uint32_t>(*id),
                                                           static_cast<std::uint32_t>(*w));
        }
      }
      std::sort(snap_.weighted_interleave.weights.begin(), snap_.weighted_interleave.weights.end());
    }
    if (auto cmdline = text("proc/cmdline")) snap_.numa_fake = has_substr(*cmdline, "numa=fake=");
  }

  void read_allowed_mems() {
    auto cg = attr("proc/self/cgroup", parse_proc_self_cgroup);
    auto try_file = [&](const std::string &path) {  // absent: nullopt, no diagnostic
      if (auto set = attr(path, node_list())) {
        snap_.allowed_mems = std::move(*set);
        snap_.allowed_mems_source = path;
        return true;
      }
      return false;
    };
    auto walk_up = [&](const std::string &base, std::string cg_path, const char *file) {
      // The nearest ancestor that has the file decides (a cgroup without the cpuset
      // controller inherits its parent's effective mems).
      while (true) {
        std::string rel = base + cg_path;
        while (!rel.empty() && rel.back() == '/') rel.pop_back();
        if (try_file(rel + "/" + file)) return true;
        if (cg_path.empty() || cg_path == "/") return false;
        auto slash = cg_path.rfind('/');
        cg_path = slash == std::string::npos || slash == 0 ? "/" : cg_path.substr(0, slash);
      }
    };
    if (cg && cg->unified_path && walk_up("sys/fs/cgroup", *cg->unified_path, "cpuset.mems.effective")) return;
    if (cg && cg->cpuset_path) {
      if (walk_up("sys/fs/cgroup/cpuset", *cg->cpuset_path, "cpuset.effective_mems")) return;
      if (walk_up("sys/fs/cgroup/cpuset", *cg->cpuset_path, "cpuset.mems")) return;
    }
    if (auto status = text("proc/self/status")) {
      if (auto v = find_status_field(*status, "Mems_allowed_list")) {
        auto set = parse_id_list(*v, max_node_id);
        if (set) {
          snap_.allowed_mems = std::move(set).value();
          snap_.allowed_mems_source = "proc/self/status";
        } else {
          diag("proc/self/status", error{EINVAL, "Mems_allowed_list: " + set.error().message});
        }
      }
    }
  }

  void read_cpu() {
    // Only the first processor block matters: read a bounded prefix. The kernel writes the
    // text of every CPU a read covers (microseconds each), so the prefix is two pages: the
    // first block of an x86 server (its flags lines the longest) fits with room to spare.
    if (auto t = text("proc/cpuinfo", std::size_t{8} * 1024, /*truncate=*/true)) {
      if (auto id = parse_cpuinfo(*t))
        snap_.cpu = std::move(id).value();
      else
        diag("proc/cpuinfo", id.error());
    }
    snap_.knl = attr("var/run/hwloc/knl_memoryside_cache", parse_knl_hwdata);
  }
};

}  // namespace

const node *snapshot::find_node(std::uint32_t id) const noexcept {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), id, [](const node &n, std::uint32_t v) { return n.id < v; });
  return it != nodes.end() && it->id == id ? &*it : nullptr;
}

id_set snapshot::node_ids() const {
  id_set s;
  for (const auto &n : nodes) s.insert(n.id);
  return s;
}

namespace {
// Which node each column of a distance row of `len` values stands for. The row has one value
// per online node in id order; old or edited trees may instead have one per possible node,
// accepted when the count says so. -1: the row cannot be mapped.
std::int64_t distance_column(const snapshot &s, std::size_t len, std::uint32_t to) noexcept {
  if (s.online && len == s.online->count()) return s.online->index_of(to);
  if (s.possible && len == s.possible->count()) return s.possible->index_of(to);
  if (!s.online && len == s.nodes.size()) {
    for (std::size_t i = 0; i < s.nodes.size(); ++i)
      if (s.nodes[i].id == to) return static_cast<std::int64_t>(i);
    return -1;
  }
  return -2;  // no basis fits this length
}
}  // namespace

std::optional<std::uint32_t> snapshot::distance(std::uint32_t from, std::uint32_t to) const noexcept {
  const node *f = find_node(from);
  if (!f || f->distance_row.empty()) return std::nullopt;
  const std::int64_t col = distance_column(*this, f->distance_row.size(), to);
  if (col < 0 || static_cast<std::size_t>(col) >= f->distance_row.size()) return std::nullopt;
  return f->distance_row[static_cast<std::size_t>(col)];
}

std::string default_root() {
  const char *env = hetmem::sysfs::environment("HETMEM_SYSFS_ROOT");
  return env && *env ? std::string(env) : std::string("/");
}

result<snapshot> read_snapshot(const read_options &options) noexcept {
  try {
    auto root = root_dir::open(options.root);
    if (!root) return root.error();
    snapshot snap;
    snap.root = options.root;
    snap.scope = options.scope;
    reader(*root, snap).run();
    // A row whose length matches neither the online nor the possible count cannot be mapped.
    for (const auto &n : snap.nodes) {
      if (n.distance_row.empty()) continue;
      std::size_t len = n.distance_row.size();
      if (distance_column(snap, len, n.id) == -2)
        snap.diagnostics.push_back({std::string(node_dir) + "/node" + std::to_string(n.id) + "/distance",
                                    "has " + std::to_string(len) + " values but " +
                                        std::to_string(snap.online ? snap.online->count() : snap.nodes.size()) +
                                        " nodes are online; distances from this node are not used",
                                    EINVAL});
    }
    return snap;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};  // short enough not to allocate
  } catch (...) {
    return error{EIO, "internal error"};
  }
}

}  // namespace hetmem::sysfs
