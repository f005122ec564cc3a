// migrate_cmd.hpp — `hetmem migrate`: move a process's pages to a tier.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hetmem::cli {

struct migrate_args {
  pid_t pid = 0;
  std::string to;
  std::optional<std::string> from;
  std::vector<std::string> ranges;  // "START-END", hex (0x optional)
  bool all_mappings = false;
  std::optional<double> rate_mib_s;  // --rate; unset: as fast as the kernel goes
  bool json = false;
  bool quiet = false;
  bool progress = false;  // force the progress bar (default: when stderr is a terminal)
};

// Exit codes: 0 every selected page is where it was asked to be (or nothing needed to move);
// 1 the system refused (no such process, no permission, topology unreadable); 2 bad usage (a
// tier or range that does not parse or is not on this machine); 4 some pages could not be moved
// (busy, target full, shared): the report says how many and why.
int run_migrate(const migrate_args &a);

}  // namespace hetmem::cli
