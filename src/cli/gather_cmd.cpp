// gather_cmd.cpp — `hetmem gather NAME [--out DIR] [--root DIR]` (see gather_cmd.hpp).
//
// Collected, relative to the root: the node masks and nodeN/{cpulist,cpumap,meminfo,distance,
// accessY,memory_side_cache,hugepages}, the memory tiers, /sys/kernel/mm/{numa,mempolicy}, THP's
// mode, dax devices (with the device folders their links point to) and their drivers' links,
// the CPU masks, NVIDIA's numa_status, /proc/{cpuinfo,meminfo,cmdline,version}, this process's
// cgroup and status, numa_balancing, and the cpuset.mems.effective of this process's cgroup
// and of each of its ancestors.
#include "gather_cmd.hpp"

#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common.hpp"
#include "hetmem/placement.hpp"
#include "hetmem/sysfs/environment.hpp"
#include "hetmem/sysfs/reader.hpp"

extern char **environ;  // NOLINT(readability-redundant-declaration): for posix_spawnp

namespace hetmem::cli {
namespace {
namespace fs = std::filesystem;

bool valid_name(const std::string &n) {
  if (n.empty() || n.size() > 128) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(n[0])) return false;
  for (char c : n)
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

class gatherer {
 public:
  gatherer(std::string root, fs::path dest) : root_(std::move(root)), dest_(std::move(dest)) {}

  // One file or link, `rel` relative to the root; nothing when it is absent or neither.
  void copy(const std::string &rel) {
    const std::string src = root_ + "/" + rel;
    struct stat st {};
    if (::lstat(src.c_str(), &st) != 0) return;
    const fs::path to = dest_ / rel;
    std::error_code ec;
    fs::create_directories(to.parent_path(), ec);
    if (S_ISLNK(st.st_mode)) {
      std::vector<char> target(4096);
      const ssize_t n = ::readlink(src.c_str(), target.data(), target.size() - 1);
      if (n <= 0) return;
      fs::remove(to, ec);
      fs::create_symlink(std::string(target.data(), static_cast<std::size_t>(n)), to, ec);
      return;
    }
    if (!S_ISREG(st.st_mode)) return;  // FIFOs, devices, sockets: never opened
    // Write-only sysfs attributes, files we may not read, reads that fail (EIO, EINVAL): as if
    // absent. No file hetmem reads comes near the limit.
    auto read = sysfs::read_text_file(src, std::size_t{16} << 20);
    if (!read) return;
    const std::string data = std::move(*read);
    std::FILE *out = std::fopen(to.c_str(), "wb");
    if (!out) {
      failed_ = "cannot write " + to.string() + ": " + detail::error_text(errno);
      return;
    }
    if (std::fwrite(data.data(), 1, data.size(), out) != data.size())
      failed_ = "cannot write " + to.string() + ": " + detail::error_text(errno);
    if (std::fclose(out) != 0 && failed_.empty())
      failed_ = "cannot write " + to.string() + ": " + detail::error_text(errno);
  }

  // Files and links below folder `rel`, at most `depth` levels down, links not followed.
  void tree(const std::string &rel, int depth = 8) {
    std::error_code ec;
    const fs::path base = fs::path(root_) / rel;
    if (!fs::is_directory(fs::symlink_status(base, ec))) return;
    for (auto it = fs::recursive_directory_iterator(base, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it.depth() >= depth) {
        it.disable_recursion_pending();
        continue;
      }
      const std::string name = it->path().filename().string();
      // power/: device power state; tried_regions/: a DAMON scheme's last regions (thousands).
      if ((name == "power" || name == "tried_regions") && it->is_directory(ec)) {
        it.disable_recursion_pending();
        continue;
      }
      if (name == "uevent" || name == "subsystem" || name == "driver_override") continue;
      const auto type = it->symlink_status(ec).type();
      if (type == fs::file_type::regular || type == fs::file_type::symlink)
        copy(it->path().lexically_relative(root_).string());
    }
  }

  // The entries of folder `rel` whose names start with `prefix`, as paths relative to the root.
  [[nodiscard]] std::vector<std::string> entries(const std::string &rel, const std::string &prefix) const {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(fs::path(root_) / rel, ec); !ec && it != fs::directory_iterator();
         it.increment(ec))
      if (it->path().filename().string().rfind(prefix, 0) == 0)
        out.push_back(rel + "/" + it->path().filename().string());
    return out;
  }

  [[nodiscard]] const std::string &root() const { return root_; }
  [[nodiscard]] const std::string &failure() const { return failed_; }

 private:
  std::string root_;
  fs::path dest_;
  std::string failed_;
};

void collect(gatherer &g) {
  const std::string n = "sys/devices/system/node";
  for (const char *f :
       {"possible", "online", "has_cpu", "has_memory", "has_normal_memory", "has_generic_initiator", "has_high_memory"})
    g.copy(n + "/" + f);
  for (const auto &node : g.entries(n, "node")) {
    const std::string id = node.substr(node.rfind("/node") + 5);
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) continue;
    for (const char *f : {"cpulist", "cpumap", "meminfo", "distance"}) g.copy(node + "/" + f);
    for (const char *d : {"access0", "access1", "memory_side_cache", "hugepages"}) g.tree(node + "/" + d);
  }
  g.copy("sys/devices/system/cpu/online");
  g.copy("sys/devices/system/cpu/possible");
  g.tree("sys/devices/virtual/memory_tiering", 2);
  g.copy("sys/kernel/mm/numa/demotion_enabled");
  g.tree("sys/kernel/mm/mempolicy");
  g.copy("sys/kernel/mm/transparent_hugepage/enabled");
  // DAMON: the kdamonds configured through sysfs (their contexts, targets, schemes and goals)
  // and the kernel's own DAMON modules, whose running kdamond keeps any other from starting.
  g.tree("sys/kernel/mm/damon/admin", 12);
  for (const char *m : {"damon_stat", "damon_reclaim", "damon_lru_sort"})
    g.tree(std::string("sys/module/") + m + "/parameters", 1);
  g.copy("proc/sys/kernel/numa_balancing_promote_rate_limit_MBps");
  // dax devices: the link, and the files of the device folder it points to.
  for (const auto &link : g.entries("sys/bus/dax/devices", "")) {
    g.copy(link);
    std::error_code ec;
    const fs::path target = fs::canonical(fs::path(g.root()) / link, ec);
    if (ec) continue;
    const std::string rel = target.lexically_relative(fs::canonical(g.root(), ec)).string();
    if (rel.empty() || rel.rfind("..", 0) == 0) continue;  // points outside the root
    for (const char *f : {"target_node", "numa_node", "size", "resource", "align", "state", "driver"})
      g.copy(rel + "/" + f);
  }
  for (const auto &driver : g.entries("sys/bus/dax/drivers", ""))
    for (const auto &dev : g.entries(driver, "dax")) g.copy(dev);
  g.tree("proc/driver/nvidia/gpus", 2);
  for (const char *f :
       {"cpuinfo", "meminfo", "cmdline", "version", "self/cgroup", "self/status", "sys/kernel/numa_balancing"})
    g.copy(std::string("proc/") + f);
  // The cpuset of this process: its cgroup v2 folder and every ancestor's cpuset.mems.effective.
  if (std::FILE *f = std::fopen((g.root() + "/proc/self/cgroup").c_str(), "r")) {
    char line[4096];
    std::string cg;
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "0::", 3) == 0) {
        cg = line + 3;
        while (!cg.empty() && (cg.back() == '\n' || cg.back() == '/')) cg.pop_back();
      }
    std::fclose(f);
    for (;;) {
      if (cg.find("..") != std::string::npos) break;
      g.copy("sys/fs/cgroup" + cg + "/cpuset.mems.effective");
      if (cg.empty()) break;
      cg.erase(cg.rfind('/'));
    }
  }
}

// tar -C STAGE -czf OUT -- NAME, as a child process; "" on success, else what went wrong.
std::string run_tar(const std::string &stage, const std::string &out, const std::string &name) {
  std::vector<std::string> args = {"tar", "-C", stage, "-czf", out, "--", name};
  std::vector<char *> argv;
  argv.reserve(args.size() + 1);
  for (auto &a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (const int rc = ::posix_spawnp(&pid, "tar", nullptr, nullptr, argv.data(), environ); rc != 0)
    return std::string("cannot run tar: ") + detail::error_text(rc);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return std::string("waiting for tar: ") + detail::error_text(errno);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  return WIFEXITED(status) ? "tar failed with status " + std::to_string(WEXITSTATUS(status))
                           : "tar was killed by signal " + std::to_string(WTERMSIG(status));
}

}  // namespace

int run_gather(const gather_args &a) {
  if (!valid_name(a.name)) {
    std::fprintf(stderr,
                 "hetmem gather: NAME '%s': expected one file name of letters, digits, '.', '_' and '-', starting "
                 "with a letter or digit (at most 128 characters)\n",
                 a.name.c_str());
    return exit_usage;
  }
  std::string root = a.root;
  if (root.empty()) {
    const char *env = sysfs::environment("HETMEM_SYSFS_ROOT");
    root = env && *env ? env : "/";
  }
  while (root.size() > 1 && root.back() == '/') root.pop_back();  // paths are root + "/" + rel
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    std::fprintf(stderr, "hetmem gather: --root '%s' is not a folder\n", a.root.c_str());
    return exit_failure;
  }
  const fs::path out_dir = a.out.empty() ? fs::path(".") : fs::path(a.out);
  if (!fs::is_directory(out_dir, ec)) {
    std::fprintf(stderr, "hetmem gather: --out '%s' is not a folder\n", out_dir.c_str());
    return exit_failure;
  }
  // Everything is staged inside OUT (same file system: the rename is atomic) and removed on
  // every way out.
  std::string stage_template = (out_dir / ".hetmem-gather-XXXXXX").string();
  if (!::mkdtemp(stage_template.data())) {
    std::fprintf(stderr, "hetmem gather: cannot make a staging folder in %s: %s\n", out_dir.c_str(),
                 detail::error_text(errno));
    return exit_failure;
  }
  const fs::path stage = stage_template;
  const fs::path partial = stage / (a.name + ".tar.gz");
  const fs::path final_path = out_dir / (a.name + ".tar.gz");
  auto fail = [&](const std::string &why) {
    fs::remove_all(stage, ec);
    std::fprintf(stderr, "hetmem gather: %s; nothing was written\n", why.c_str());
    return exit_failure;
  };
  gatherer g(root, stage / "tree" / a.name);
  fs::create_directories(stage / "tree" / a.name, ec);
  if (ec) return fail("cannot make " + (stage / "tree" / a.name).string() + ": " + ec.message());
  collect(g);
  if (!g.failure().empty()) return fail(g.failure());
  if (!fs::exists(stage / "tree" / a.name / "sys/devices/system/node", ec))
    return fail("no " + (root == "/" ? std::string() : root) + "/sys/devices/system/node to gather");
  if (auto why = run_tar((stage / "tree").string(), partial.string(), a.name); !why.empty()) return fail(why);
  fs::rename(partial, final_path, ec);
  if (ec) return fail("cannot move the tarball to " + final_path.string() + ": " + ec.message());
  fs::remove_all(stage, ec);
  std::printf("gathered %s into %s\n", a.name.c_str(), final_path.c_str());
  return exit_ok;
}

}  // namespace hetmem::cli
