#include "hetmem/hwloc_check.hpp"

#include <fcntl.h>
#include <hwloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "hetmem/sysfs/environment.hpp"

namespace hetmem {
namespace {

// hwloc subtype -> kind; nullopt when the subtype says nothing about the kind.
std::optional<memory_kind> kind_of_subtype(const std::string &s) {
  if (s == "DRAM") return memory_kind::ddr;
  if (s == "HBM" || s == "MCDRAM") return memory_kind::hbm;
  if (s == "NVM") return memory_kind::pmem;
  if (s == "CXL-DRAM" || s == "CXL-NVM") return memory_kind::cxl;
  if (s == "GPUMemory") return memory_kind::device;
  return std::nullopt;  // "SPM" (specific-purpose) and anything new
}

class env_guard {
 public:
  env_guard(const char *name, const std::string &value) : name_(name) {
    if (const char *old = sysfs::environment(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~env_guard() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  env_guard(const env_guard &) = delete;
  env_guard &operator=(const env_guard &) = delete;

 private:
  const char *name_;
  std::optional<std::string> old_;
};

}  // namespace

namespace {
// hwloc's own view of `root`, in this process (HWLOC_FSROOT set for the call).
result<hwloc_report> load_in_process(const std::string &root) {
  hwloc_report report;
  unsigned v = hwloc_get_api_version();
  report.hwloc_version =
      std::to_string(v >> 16) + "." + std::to_string((v >> 8) & 0xff) + "." + std::to_string(v & 0xff);
  // For a captured tree, hwloc must not mix in the host's CPUID (its x86 backend ignores the root).
  std::optional<env_guard> fsroot, components;
  if (!root.empty() && root != "/") {
    fsroot.emplace("HWLOC_FSROOT", root);
    components.emplace("HWLOC_COMPONENTS", "-x86");
  }
  env_guard quiet("HWLOC_HIDE_ERRORS", "2");
  hwloc_topology_t topo = nullptr;
  if (hwloc_topology_init(&topo) != 0) return error{errno ? errno : ENOMEM, "hwloc_topology_init failed"};
  hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
  if (hwloc_topology_load(topo) != 0) {
    int err = errno ? errno : EINVAL;
    hwloc_topology_destroy(topo);
    return error{err, "hwloc could not load the topology of '" + root + "'"};
  }
  int depth = hwloc_get_type_depth(topo, HWLOC_OBJ_NUMANODE);
  unsigned count = depth == HWLOC_TYPE_DEPTH_UNKNOWN ? 0 : hwloc_get_nbobjs_by_depth(topo, depth);
  for (unsigned i = 0; i < count; ++i) {
    hwloc_obj_t o = hwloc_get_obj_by_depth(topo, depth, i);
    report.nodes.push_back({o->os_index, o->subtype ? o->subtype : "", o->attr ? o->attr->numanode.local_memory : 0});
  }
  hwloc_topology_destroy(topo);
  return report;
}

// The first file of a captured tree that an open() could block on or that is not a file at
// all (a FIFO, a socket, a device, or a link to one), as a path relative to the tree; "" when
// there is none. hwloc
// opens what it finds with a plain, blocking open(); hetmem's reader opens nothing but regular
// files. At most `limit` entries are looked at (a captured tree holds a few thousand).
std::string special_file_in(const std::string &root, std::size_t limit) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::size_t seen = 0;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator() && ++seen <= limit; it.increment(ec)) {
    std::error_code entry_ec;  // an entry that cannot be stat'ed ends nothing: the walk goes on
    const auto own = it->symlink_status(entry_ec).type();
    if (own == fs::file_type::directory || own == fs::file_type::regular) continue;
    // A link is followed by hwloc, possibly out of the tree (an absolute target): what it
    // points at must be a file or a folder too. status() follows it without opening anything.
    const auto target = own == fs::file_type::symlink ? it->status(entry_ec).type() : own;
    if (target == fs::file_type::directory || target == fs::file_type::regular || target == fs::file_type::not_found)
      continue;
    return it->path().string().substr(root.size());
  }
  return "";
}

// Text for a file type, for the message that names it.
const char *file_type_name(const std::string &path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) return "link to a special file";
  if (::lstat(path.c_str(), &st) != 0) return "special file";
  if (S_ISFIFO(st.st_mode)) return "FIFO";
  if (S_ISSOCK(st.st_mode)) return "socket";
  if (S_ISCHR(st.st_mode)) return "character device";
  if (S_ISBLK(st.st_mode)) return "block device";
  return "special file";
}

// The report as lines "version\nid subtype bytes\n..." (subtypes never hold spaces) and back.
std::string serialize(const hwloc_report &r) {
  std::string out = r.hwloc_version + "\n";
  for (const auto &n : r.nodes)
    out += std::to_string(n.os_index) + " " + (n.subtype.empty() ? "-" : n.subtype) + " " +
           std::to_string(n.local_memory_bytes) + "\n";
  return out;
}

std::optional<hwloc_report> deserialize(const std::string &text) {
  std::istringstream in(text);
  hwloc_report r;
  if (!std::getline(in, r.hwloc_version) || r.hwloc_version.empty()) return std::nullopt;
  hwloc_node n;
  std::string subtype;
  while (in >> n.os_index >> subtype >> n.local_memory_bytes) {
    n.subtype = subtype == "-" ? "" : subtype;
    r.nodes.push_back(n);
  }
  return r;
}

// load_in_process() in a child process, waited for at most `deadline`: whatever hwloc meets in
// a captured tree, the caller gets an answer.
result<hwloc_report> load_in_child(const std::string &root, std::chrono::milliseconds deadline) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return error{errno, "hwloc cross-check: cannot make a pipe to a child process"};
  const pid_t child = ::fork();
  if (child < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return error{err, "hwloc cross-check: cannot start a child process (fork)"};
  }
  if (child == 0) {
    ::close(fds[0]);
    auto r = load_in_process(root);
    const std::string text =
        r ? "ok\n" + serialize(*r) : "error " + std::to_string(r.error().code) + "\n" + r.error().message;
    std::size_t off = 0;
    while (off < text.size()) {
      const ssize_t n = ::write(fds[1], text.data() + off, text.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  const auto until = std::chrono::steady_clock::now() + deadline;
  bool finished = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      finished = true;  // the child closed its end: done
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (!finished) ::kill(child, SIGKILL);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!finished)
    return error{ETIMEDOUT, "hwloc did not finish loading the topology of '" + root + "' within " +
                                std::to_string(deadline.count() / 1000) + " s: no hwloc cross-check"};
  if (text.rfind("ok\n", 0) == 0) {
    if (auto r = deserialize(text.substr(3))) return *r;
    return error{EPROTO, "hwloc cross-check: the child's answer could not be read"};
  }
  if (text.rfind("error ", 0) == 0) {
    const auto nl = text.find('\n');
    const int code = std::atoi(text.c_str() + 6);
    return error{code ? code : EINVAL, nl == std::string::npos ? text : text.substr(nl + 1)};
  }
  return error{ECHILD, "hwloc cross-check: the child loading '" + root + "' ended without an answer (status " +
                           std::to_string(status) + ")"};
}
}  // namespace

result<hwloc_report> hwloc_view(const std::string &root) {
  if (root.empty() || root == "/") return load_in_process(root);
  // A captured tree may hold anything: FIFOs (a blocking open for hwloc), devices, sockets.
  // hetmem's reader skips them; hwloc would hang on the first, so it is not asked, and a
  // child process with a deadline covers whatever else it might meet.
  if (const std::string special = special_file_in(root, 200000); !special.empty())
    return error{EINVAL, "'" + root + special + "' is a " + file_type_name(root + special) +
                             ", not a regular file: hwloc would block or fail opening it, so no hwloc cross-check"};
  return load_in_child(root, std::chrono::seconds(20));
}

void crosscheck(topology &t, const hwloc_report &report) {
  // hwloc does not list every memory node (it hides GPU memory nodes, and on a gathered
  // tree it lacks CPU files it needs): compare the nodes it lists, and say which it does not.
  std::string missing;
  for (const auto &n : t.nodes) {
    if (!n.has_memory) continue;
    bool found = false;
    for (const auto &hn : report.nodes) found = found || hn.os_index == n.id;
    if (!found) missing += (missing.empty() ? "" : ",") + std::to_string(n.id);
  }
  if (!missing.empty())
    t.notes.push_back("hwloc " + report.hwloc_version + " does not list memory node(s) " + missing +
                      ": no hwloc cross-check for them");
  for (auto &n : t.nodes) {
    if (!n.has_memory) continue;
    const hwloc_node *h = nullptr;
    for (const auto &hn : report.nodes)
      if (hn.os_index == n.id) h = &hn;
    if (!h) continue;  // not a memory node for hwloc either (checked above)
    if (h->subtype.empty()) {
      // hwloc leaves plain DRAM (and 2LM far memory) without a subtype: not a verdict.
      n.reasons.push_back({evidence_source::hwloc, "hwloc: no subtype (plain memory)"});
      continue;
    }
    auto k = kind_of_subtype(h->subtype);
    n.reasons.push_back({evidence_source::hwloc, "hwloc: subtype " + h->subtype});
    if (k && *k != n.kind)
      n.disagreements.push_back("hwloc says " + h->subtype + ", hetmem says " + std::string(to_string(n.kind)));
  }
}

}  // namespace hetmem
