// doctor_cmd.hpp — `hetmem doctor`: what this machine and kernel offer for tiered memory, what
// is off, and for each finding the command that changes it.
#pragma once

#include <string>
#include <vector>

#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::cli {

enum class finding_status { ok, note, warn };

struct finding {
  std::string check;  // short key: "hmat", "thp", "cpuset", ...
  finding_status status = finding_status::ok;
  std::string summary;  // one line
  std::string fix;      // the command that changes it; empty when nothing to do
};

// Every check, in a fixed order; a pure function of the topology (its snapshot), the kernel's
// tiering state and the few files read below `root` (THP, zone_reclaim_mode, memory blocks).
std::vector<finding> diagnose(const topology &t, const kernel_tiering_state &k, const std::string &root);

struct doctor_args {
  std::string root;
  bool json = false;
};

// Exit codes: 0 nothing needs attention (notes at most); 1 the topology could not be read;
// 2 bad usage; 4 at least one warning.
int run_doctor(const doctor_args &a);

}  // namespace hetmem::cli
