// tierd_cmd.hpp — `hetmem tierd`: automatic tiering of other processes (or a cgroup) from outside.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace hetmem::cli {

struct tierd_args {
  std::vector<pid_t> pids;
  std::string cgroup;
  std::optional<std::string> fast, slow;  // tiers in the policy language's syntax
  std::string fast_limit;                 // size ("512M"); empty: free memory above the reserve
  std::string rate = "256M";              // bytes per second
  double interval = 1.0;
  double duration = 0;  // 0: until SIGINT/SIGTERM or no process is left
  std::string source = "auto";
  std::string coexist = "coexist";
  double threshold = 0.05;
  std::optional<double> max_overhead;  // the write-bit sources' share of the program's time (default 0.05)
  bool damon_takeover = false;         // stop DAMON_STAT while DAMON is used, start it again at exit
  bool json = false;
  bool quiet = false;
};

// Exit codes: 0 ran until the duration, a signal, or the managed processes ended; 1 the engine
// could not start (no hotness source, no permission, topology unreadable, kernel tiering with
// --coexist yield); 2 bad usage (a tier this machine lacks, a bad size or pid).
int run_tierd(const tierd_args &a);

}  // namespace hetmem::cli
