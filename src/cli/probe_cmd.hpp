// probe_cmd.hpp — `hetmem probe`: measure each node's latency and bandwidth from one initiator,
// show them beside what HMAT claims, flag disagreements, and save them for the classifier.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace hetmem::cli {

struct probe_args {
  std::optional<std::uint32_t> initiator, cpu;
  std::optional<std::string> nodes;  // "0,2-3"
  std::optional<std::string> size;   // "512M"
  unsigned threads = 0;
  double seconds = 0.25;
  bool latency_only = false, bandwidth_only = false;
  std::optional<std::string> save;
  bool json = false;
  bool progress = false;
};

// Exit codes: 0 measured, agrees with HMAT (or there is no HMAT to compare with); 4 measured,
// and at least one node disagrees with HMAT; 1 nothing could be measured (or the save failed);
// 2 bad usage.
int run_probe(const probe_args &a);

}  // namespace hetmem::cli
