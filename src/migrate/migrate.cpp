// migrate.cpp — page migration on request (hetmem/migrate.hpp): ask the kernel where pages are,
// move the ones that should move in batches with move_pages, ask again about the failures.
#include "hetmem/migrate.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <optional>
#include <thread>

#include "hetmem/detail/os.hpp"
#include "hetmem/detail/tier_arena.hpp"
#include "hetmem/format.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"

namespace hetmem {
namespace {

// Adds `n` pages moved to `node` in a per-node list.
void count_moved(std::vector<std::pair<std::uint32_t, std::uint64_t>> &per_node, std::uint32_t node, std::uint64_t n) {
  for (auto &e : per_node)
    if (e.first == node) {
      e.second += n;
      return;
    }
  per_node.emplace_back(node, n);
}

std::string errno_text(int err) { return detail::error_text(err); }

std::string who(pid_t pid) { return pid == 0 ? std::string("this process") : "process " + std::to_string(pid); }

// Why a whole move_pages call failed, in words a user can act on.
error call_failed(int err, pid_t pid, const char *what) {
  std::string m = std::string("move_pages (") + what + ") on " + who(pid) + " failed: " + errno_text(err);
  if (err == ESRCH) m = "no process " + std::to_string(pid) + " (move_pages: " + errno_text(err) + ")";
  if (err == EPERM || err == EACCES)
    m += pid == 0 ? std::string(" (a target node outside this process's cpuset?)")
                  : " (moving another user's pages needs CAP_SYS_NICE; reading them needs ptrace access)";
  if (err == ENODEV) m += " (a target node has no memory or is offline)";
  return error{err, m};
}

// The node of `targets` nearest to `from` by SLIT distance (ties: the lower id), from the
// sysfs snapshot (read once, and only for a target of several nodes); the first target when
// distances are unknown.
class nearest_target {
 public:
  explicit nearest_target(std::vector<std::uint32_t> targets) : targets_(std::move(targets)) {}
  std::uint32_t operator()(std::uint32_t from) {
    if (targets_.size() == 1) return targets_[0];
    if (auto it = cache_.find(from); it != cache_.end()) return it->second;
    if (!snap_) snap_ = sysfs::read_snapshot({});
    std::uint32_t best = targets_[0], best_d = UINT32_MAX;
    if (*snap_)
      for (std::uint32_t t : targets_)
        if (auto d = (**snap_).distance(from, t); d && *d < best_d) {
          best_d = *d;
          best = t;
        }
    cache_[from] = best;
    return best;
  }

 private:
  std::vector<std::uint32_t> targets_;
  std::map<std::uint32_t, std::uint32_t> cache_;
  std::optional<result<sysfs::snapshot>> snap_;
};

class mover {
 public:
  mover(const tier &to, const migration_options &o)
      : o_(o), targets_(to.where.nodes), nearest_(to.where.nodes.to_vector()) {
    r_.page_size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  }

  result<void> run(const std::vector<address_range> &ranges) {
    const std::size_t ps = r_.page_size;
    std::uint64_t total = 0;
    for (const auto &rg : ranges) total += (rg.end - rg.start) / ps;
    const std::size_t batch =
        std::clamp<std::size_t>(o_.batch_pages ? o_.batch_pages : automatic_batch(ps), 1, std::size_t{1} << 20);
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t done = 0;
    std::vector<void *> pages;
    for (const auto &rg : ranges) {
      for (std::uintptr_t a = rg.start; a < rg.end;) {
        const std::size_t n = std::min<std::uint64_t>(batch, (rg.end - a) / ps);
        pages.resize(n);
        for (std::size_t i = 0; i < n; ++i) pages[i] = reinterpret_cast<void *>(a + i * ps);
        if (auto b = one_batch(pages); !b) return b.error();
        a += n * ps;
        done += n;
        r_.pages += n;
        throttle(start);
        if (o_.progress) o_.progress(done, total);
      }
    }
    r_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return {};
  }

  migration_report &report() { return r_; }

 private:
  result<void> one_batch(std::vector<void *> &pages) {
    const pid_t pid = o_.pid;
    sel_.clear();
    nodes_.clear();
    if (!o_.ask_first && o_.only_from.empty() && targets_.count() == 1) {
      sel_ = pages;
      nodes_.assign(pages.size(), static_cast<int>(targets_.first()));
      return move_selected();
    }
    status_.assign(pages.size(), -ENOENT);
    if (detail::os().move_pages(pid, pages.size(), pages.data(), nullptr, status_.data(), 0) != 0)
      return call_failed(errno, pid, "asking where pages are");
    for (std::size_t i = 0; i < pages.size(); ++i) {
      const int s = status_[i];
      if (s < 0) {
        ++r_.not_present;  // -ENOENT (not faulted in) or -EFAULT (not mapped any more)
        continue;
      }
      const auto node = static_cast<std::uint32_t>(s);
      if (targets_.contains(node)) {
        ++r_.already_there;
      } else if (!o_.only_from.empty() && !o_.only_from.contains(node)) {
        ++r_.not_selected;
      } else {
        sel_.push_back(pages[i]);
        nodes_.push_back(static_cast<int>(nearest_(node)));
      }
    }
    return move_selected();
  }

  // Moves sel_ to nodes_ and counts what the kernel says.
  result<void> move_selected() {
    const pid_t pid = o_.pid;
    if (sel_.empty()) return {};
    result_.resize(sel_.size());
    if (int err = detail::move_pages_confirmed(pid, sel_.size(), sel_.data(), nodes_.data(), result_.data()))
      return call_failed(err, pid, "moving pages");
    for (std::size_t i = 0; i < sel_.size(); ++i) {
      const int s = result_[i];
      if (s == nodes_[i]) {
        ++r_.moved;
        count_moved(r_.moved_to, static_cast<std::uint32_t>(s), 1);
        continue;
      }
      if (s == -ENOENT || s == -EFAULT) {  // gone (unmapped or freed) meanwhile
        ++r_.not_present;
        continue;
      }
      const int err = s < 0 ? -s : EIO;  // a page left on another node without an error: odd
      if (r_.first_error == 0) r_.first_error = err;
      if (err == EBUSY)
        ++r_.busy;
      else if (err == ENOMEM)
        ++r_.no_memory;
      else if (err == EACCES)
        ++r_.shared;
      else
        ++r_.other_failed;
    }
    return {};
  }

  // migration_options::batch_pages = 0: the largest batch, or ~50 ms worth at the rate limit.
  [[nodiscard]] std::size_t automatic_batch(std::size_t page_size) const {
    constexpr std::size_t largest = std::size_t{1} << 18, smallest = 512;
    if (o_.max_bytes_per_second == 0) return largest;
    const std::uint64_t per_50ms = o_.max_bytes_per_second / 20 / page_size;
    return static_cast<std::size_t>(std::clamp<std::uint64_t>(per_50ms, smallest, largest));
  }

  // Keeps the average rate at or under max_bytes_per_second by sleeping between batches.
  void throttle(std::chrono::steady_clock::time_point start) const {
    if (o_.max_bytes_per_second == 0) return;
    const double should_take =
        static_cast<double>(r_.moved * r_.page_size) / static_cast<double>(o_.max_bytes_per_second);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (should_take > took) std::this_thread::sleep_for(std::chrono::duration<double>(should_take - took));
  }

  const migration_options &o_;
  const node_set &targets_;
  nearest_target nearest_;
  migration_report r_;
  std::vector<int> status_, nodes_, result_;
  std::vector<void *> sel_;
};

result<void> check_target(const tier &to, pid_t pid) {
  if (to.file)
    return error{EINVAL, "cannot migrate to " + to.name + ": a file tier has no NUMA nodes to move pages to"};
  if (to.where.nodes.empty()) return error{EINVAL, "cannot migrate to " + to.name + ": it names no nodes"};
  if (to.where.nodes.last() >= 1024) return error{EINVAL, "cannot migrate to " + to.name + ": node ids beyond 1023"};
  if (pid == 0) {
    auto k = probe_kernel_policy_support();
    if (!k) return k.error();
    for (std::uint32_t n : to.where.nodes.to_vector())
      if (!k->mems_allowed.contains(n))
        return error{EINVAL, "cannot migrate to " + to.name + ": node " + std::to_string(n) +
                                 " is not allowed to this process (cpuset mems " + k->mems_allowed.to_string() + ")"};
  }
  return {};
}

}  // namespace

std::string migration_report::summary() const {
  auto count = [](std::uint64_t n) { return std::to_string(n); };
  std::string s =
      "moved " + count(moved) + (moved == 1 ? " page" : " pages") + " (" + format_bytes(bytes_moved()) + ")";
  if (!moved_to.empty()) {
    s += moved_to.size() > 1 ? " to nodes " : " to node ";
    for (std::size_t i = 0; i < moved_to.size(); ++i) s += (i ? "," : "") + std::to_string(moved_to[i].first);
  }
  char t[64];
  std::snprintf(t, sizeof t, " in %.2f s", seconds);
  s += t;
  if (seconds > 0 && moved > 0)
    s += " (" + format_bytes(static_cast<std::uint64_t>(static_cast<double>(bytes_moved()) / seconds)) + "/s)";
  if (already_there) s += "; " + count(already_there) + " already there";
  if (not_selected) s += "; " + count(not_selected) + " on other nodes, left";
  if (not_present) s += "; " + count(not_present) + " not present";
  if (busy) s += "; " + count(busy) + " busy (pinned, locked or under I/O: try again)";
  if (no_memory) s += "; " + count(no_memory) + " failed: target nodes full";
  if (shared) s += "; " + count(shared) + " shared with other processes, left";
  if (other_failed) s += "; " + count(other_failed) + " failed: " + detail::error_text(first_error);
  return s;
}

result<std::vector<address_range>> process_ranges(pid_t pid, bool include_files) {
  try {
    const std::string path = pid == 0 ? std::string("/proc/self/maps") : "/proc/" + std::to_string(pid) + "/maps";
    const auto text = sysfs::read_text_file(path, std::size_t{1} << 30);
    if (!text) {
      const int err = text.error().code;
      if (pid != 0 && (err == ENOENT || err == ESRCH)) return error{ESRCH, "no process " + std::to_string(pid)};
      if (err == EACCES || err == EPERM)
        return error{err, "cannot read the mappings of " + who(pid) + " (" + path + "): " + errno_text(err) +
                              " (another user's process: reading needs CAP_SYS_PTRACE, moving CAP_SYS_NICE)"};
      return error{err, path + ": " + errno_text(err)};
    }
    std::vector<address_range> out;
    for (const std::string_view view : sysfs::split_lines(*text)) {
      const std::string line(view);
      // "start-end perms offset dev inode   name"
      unsigned long long lo = 0, hi = 0;
      char perms[8] = {};
      int consumed = 0;
      if (std::sscanf(line.c_str(), "%llx-%llx %7s %*s %*s %*s %n", &lo, &hi, perms, &consumed) < 3) continue;
      const auto at = static_cast<std::size_t>(consumed > 0 ? consumed : 0);
      std::string name = at > 0 && at <= line.size() ? line.substr(at) : "";
      if (name == "[vsyscall]" || name == "[vvar]" || name == "[vdso]" || name == "[vvar_vclock]") continue;
      if (perms[0] != 'r' && perms[1] != 'w' && perms[2] != 'x') continue;  // PROT_NONE: reserved, no pages
      const bool anonymous =
          name.empty() || name == "[heap]" || name.rfind("[stack", 0) == 0 || name.rfind("[anon", 0) == 0;
      const bool private_writable = perms[1] == 'w' && perms[3] == 'p';
      if (!include_files && !anonymous && !private_writable) continue;  // file pages: shared page cache
      out.push_back({static_cast<std::uintptr_t>(lo), static_cast<std::uintptr_t>(hi), name});
    }
    return out;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

result<migration_report> migrate(const std::vector<address_range> &ranges, const tier &to,
                                 const migration_options &options) {
  try {
    if (auto ok = check_target(to, options.pid); !ok) return ok.error();
    const auto ps = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    std::vector<address_range> pages;
    for (const auto &r : ranges) {
      if (r.end < r.start) return error{EINVAL, "migrate: a range ends before it starts"};
      const std::uintptr_t lo = r.start & ~(ps - 1);
      if (r.end > UINTPTR_MAX - ps) return error{EINVAL, "migrate: a range wraps around"};
      const std::uintptr_t hi = (r.end + ps - 1) & ~(ps - 1);
      if (hi > lo) pages.push_back({lo, hi, r.what});
    }
    mover m(to, options);
    if (auto ok = m.run(pages); !ok) return ok.error();
    return std::move(m.report());
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

result<migration_report> migrate(const void *addr, std::size_t bytes, const tier &to,
                                 const migration_options &options) {
  if (addr == nullptr) return error{EINVAL, "migrate: null address"};
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  if (bytes > UINTPTR_MAX - a) return error{EINVAL, "migrate: range wraps around"};
  return migrate(std::vector<address_range>{{a, a + bytes, {}}}, to, options);
}

result<migration_report> migrate_allocation(const void *p, const tier &to, const migration_options &options) {
  if (p == nullptr) return error{EINVAL, "migrate_allocation: null pointer"};
  const std::size_t n = detail::tier_arena::usable_size(p);
  if (n == 0) return error{EINVAL, "migrate_allocation: hetmem did not allocate this pointer"};
  migration_options own = options;
  own.pid = 0;
  return migrate(p, n, to, own);
}

result<migration_report> migrate_tier_memory(const tier &from, const tier &to, const migration_options &options) {
  try {
    std::uintptr_t base = 0;
    std::size_t window = 0;
    detail::tier_arena::window_range(&base, &window);
    auto maps = process_ranges(0, false);
    if (!maps) return maps.error();
    // The window's mapped parts (what the arenas carved and mapped), cut at slot boundaries and
    // kept where the slot's owner is an arena of `from`.
    const std::size_t slot = detail::tier_arena::window_slot_bytes();
    std::vector<address_range> mine;
    for (const auto &m : *maps) {
      const std::uintptr_t lo = std::max(m.start, base), hi = std::min<std::uintptr_t>(m.end, base + window);
      for (std::uintptr_t a = lo; a < hi;) {
        const std::uintptr_t slot_end = std::min<std::uintptr_t>(hi, base + ((a - base) / slot + 1) * slot);
        const detail::tier_arena *arena = detail::tier_arena::of(reinterpret_cast<const void *>(a));
        if (arena && arena->description().name == from.name && arena->description().where.nodes == from.where.nodes) {
          if (!mine.empty() && mine.back().end == a)
            mine.back().end = slot_end;
          else
            mine.push_back({a, slot_end, from.name});
        }
        a = slot_end;
      }
    }
    migration_options own = options;
    own.pid = 0;
    return migrate(mine, to, own);
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

}  // namespace hetmem
