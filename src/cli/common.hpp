// common.hpp — what the `hetmem` subcommands share: exit codes, tier arguments, file reading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hetmem/policy.hpp"
#include "hetmem/result.hpp"
#include "hetmem/tier.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::cli {

// 0 done; 1 the system refused or data could not be read; 2 bad usage; 3 --strict and some
// file could not be used (topo); 4 some pages could not be moved (migrate).
constexpr int exit_ok = 0, exit_failure = 1, exit_usage = 2, exit_strict = 3, exit_partial = 4;

// A tier given on the command line as the policy language writes one ("cxl", "node 1+2",
// "rank 1"), resolved on `topo`; errors name the option and the token.
inline result<tier> tier_named(const std::string &text, const char *option, const topology &topo) {
  auto ref = policy::parse_tier(text, option);
  if (!ref) return ref.error();
  return policy::resolve_tier(*ref, topo);
}

// `path` below a captured tree's root ("" or "/": the live system).
std::string under_root(const std::string &root, const std::string &path);

// Rows as columns two blanks apart, trailing blanks trimmed; columns from `right_from` on are
// right-aligned (numbers), the others left-aligned.
std::string render_table(const std::vector<std::vector<std::string>> &rows, std::size_t right_from = SIZE_MAX);

// "tier1: 1 (abstract distance 128-255), tier4: 0 (abstract distance 512-639, DRAM's default)";
// "none" when the kernel lists none.
std::string describe_memory_tiers(const sysfs::snapshot &s);

}  // namespace hetmem::cli
