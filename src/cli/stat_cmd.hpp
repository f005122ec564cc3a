// stat_cmd.hpp — `hetmem stat PID | --cgroup PATH`: memory per node and per tier, as the kernel
// counts it (/proc/PID/numa_maps; a cgroup's memory.numa_stat, v2 or v1).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace hetmem::cli {

struct stat_args {
  std::optional<pid_t> pid;
  std::optional<std::string> cgroup;   // a cgroup directory, v2 or v1 memory (under --root when given)
  std::string root;                    // a captured tree: its proc/, sys/ (default: the live system)
  std::optional<double> watch;         // seconds between samples; absent: one sample
  std::optional<std::uint64_t> count;  // stop after this many samples (with --watch)
  bool json = false;
};

// Exit codes: 0 shown (with --watch: until --count samples, a signal, or the process ending);
// 1 the process, cgroup or topology could not be read (no such process, permission, not a
// cgroup v2 directory with the memory controller); 2 bad usage.
int run_stat(const stat_args &a);

}  // namespace hetmem::cli
