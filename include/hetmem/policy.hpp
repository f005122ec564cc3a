// hetmem/policy.hpp — the policy language: which tier each allocation of an unaware program
// goes to. Parsed once (HETMEM_POLICY, a file named by HETMEM_CONFIG, or memkind's and
// autohbw's variables), resolved against the topology into a plan, explained on request.
// The language is documented in docs/policy.md.
//
// Contract:
// - parse() and the compatibility readers are pure: text in, a policy or an error out. An
//   error names the source, the column and the offending token, and shows the line with a
//   caret under it.
// - resolve() turns tier names into tiers of this machine (kinds, ranks, nodes, files). A name
//   the machine has no memory for is an error naming what it has.
// - The plan's rules are tried in order; the first whose size condition holds decides. A plan
//   always ends with an unconditional rule (the policy's own, or the default's).
// - The default (no configuration): local memory first (each thread its own node's, like the
//   kernel), spilling to the next tiers before the local node passes its watermark (90%), and
//   to the kernel's default placement as the last resort; HBM and device memory only when a
//   policy names them. On a machine with one memory node it is the kernel's default itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hetmem/result.hpp"
#include "hetmem/tier.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::policy {

// A tier as written in a policy.
struct tier_ref {
  enum class form { kind, fastest, largest, local, rank, nodes, file };
  form what = form::kind;
  memory_kind kind = memory_kind::unknown;  // form::kind
  std::uint32_t rank = 0;                   // form::rank
  node_set nodes;                           // form::nodes
  std::string path;                         // form::file: devdax device or DAX directory
  std::uint64_t file_bytes = 0;             // form::file: size limit
  std::string text;                         // as written ("hbm", "node 2+3", ...)
};

enum class route_kind {
  chain,       // a>b>c: a until its watermark, then b, ... (placement preferred: never the OOM killer)
  bind,        // strict: only these tiers; a full tier fails the allocation (ENOMEM)
  interleave,  // page-wise round robin over the tiers' nodes
  weighted,    // interleave weighted by HMAT bandwidth (the kernel's MPOL_WEIGHTED_INTERLEAVE where present)
  ratio,       // bytes split between tiers in fixed shares
  threshold,   // a size threshold between two tiers that moves to hold their shares (memkind's DYNAMIC_THRESHOLD)
};
[[nodiscard]] const char *to_string(route_kind k) noexcept;

struct route {
  route_kind kind = route_kind::chain;
  std::vector<tier_ref> tiers;
  std::vector<std::uint64_t> shares;  // ratio / threshold: one per tier
  // threshold: the start value and bounds of each threshold between consecutive tiers
  struct bounds {
    std::uint64_t start = 1024, min = 513, max = 1536;  // memkind's defaults
  };
  std::vector<bounds> thresholds;
};

struct rule {
  std::uint64_t min_size = 0;  // applies to sizes in [min_size, max_size]
  std::uint64_t max_size = UINT64_MAX;
  route where;
  std::string text;    // as written
  std::string origin;  // "HETMEM_POLICY", "/etc/hetmem.conf:3", "MEMKIND_MEM_TIERS", "default"
  [[nodiscard]] bool unconditional() const noexcept { return min_size == 0 && max_size == UINT64_MAX; }
};

struct watermark {
  std::optional<tier_ref> tier;  // nullopt: every tier
  unsigned percent = 90;
  std::string origin;
};

struct policy {
  std::vector<rule> rules;
  std::vector<watermark> watermarks;
  bool strict = false;             // a bad configuration ends the program instead of falling back
  bool callsite = false;           // ratio / threshold decisions are made once per call site
  std::vector<std::string> notes;  // what the sources said besides rules ("MEMKIND_MEM_THRESHOLDS ignored: ...")
};

// The policy language (docs/policy.md). `origin` names the source in messages.
[[nodiscard]] result<policy> parse(std::string_view text, std::string_view origin = "HETMEM_POLICY");
// memkind's libmemtier variables (MEMKIND_MEM_TIERS, MEMKIND_MEM_THRESHOLDS), as its man page defines them.
[[nodiscard]] result<policy> from_memkind(std::string_view tiers, std::string_view thresholds = {});
// autohbw's AUTO_HBW_SIZE ("x[:y]": sizes over x, under y, go to HBM) and AUTO_HBW_MEM_TYPE.
[[nodiscard]] result<policy> from_autohbw(std::string_view size, std::string_view mem_type = {});
// "4K", "1M", "2G", "4096" -> bytes; the error names the token.
[[nodiscard]] result<std::uint64_t> parse_size(std::string_view text);
// One tier as the language writes it ("cxl", "node 1+2", "rank 1", "fastest", "file PATH SIZE"),
// the whole text; errors point at the token as parse() does.
[[nodiscard]] result<tier_ref> parse_tier(std::string_view text, std::string_view origin = "tier");

// The environment a policy comes from (read with secure_getenv).
struct environment {
  std::optional<std::string> policy;              // HETMEM_POLICY
  std::optional<std::string> config;              // HETMEM_CONFIG (a file path)
  std::optional<std::string> strict;              // HETMEM_STRICT
  std::optional<std::string> memkind_tiers;       // MEMKIND_MEM_TIERS
  std::optional<std::string> memkind_thresholds;  // MEMKIND_MEM_THRESHOLDS
  std::optional<std::string> autohbw_size;        // AUTO_HBW_SIZE
  std::optional<std::string> autohbw_type;        // AUTO_HBW_MEM_TYPE
  std::optional<std::string> autohbw_log;         // AUTO_HBW_LOG
};
[[nodiscard]] environment read_environment();
// Whether the environment names a policy of any source load() reads (else the default applies).
[[nodiscard]] bool names_a_policy(const environment &env) noexcept;

// The policy the environment asks for: HETMEM_POLICY, else the file in HETMEM_CONFIG, else
// MEMKIND_MEM_TIERS, else AUTO_HBW_SIZE, else none (the default). Sources that lose are noted.
// An error means the chosen source was bad: the caller reports it and uses the default (or,
// strict, stops). `strict` in the result is also set by HETMEM_STRICT=1.
struct loaded_policy {
  policy p;
  std::string source;  // "HETMEM_POLICY", "HETMEM_CONFIG (/path)", ..., or "" for the default
};
[[nodiscard]] result<loaded_policy> load(const environment &env);
// autohbw's AUTO_HBW_LOG level (-2 .. 2; autohbw reads any integer) when AUTO_HBW_SIZE is set:
// at 0 and up the preload prints its policy at start, as autohbw prints its INFO lines (hetmem
// never logs single allocations: level 2's per-allocation backtraces are not reproduced).
// nullopt when unset or AUTO_HBW_SIZE is not; an error naming the text when it is no integer.
[[nodiscard]] result<std::optional<int>> autohbw_log_level(const environment &env);
// Whether HETMEM_STRICT (or `strict` in the text) asks for strict mode; used when load() fails.
[[nodiscard]] bool strict_requested(const environment &env);

// ---------------------------------------------------------------------------------------------
// Resolution against this machine.
struct planned_tier {
  tier where;
  unsigned fill_limit_percent = 100;
  std::string why;  // "watermark 80% (HETMEM_POLICY)", "last resort", ...
};
struct planned_route {
  route_kind kind = route_kind::chain;
  std::vector<unsigned> tiers;  // indices into plan::tiers
  std::vector<std::uint64_t> shares;
  std::vector<route::bounds> thresholds;
};
struct planned_rule {
  std::uint64_t min_size = 0, max_size = UINT64_MAX;
  planned_route where;
  std::string text, origin;
};
struct plan {
  std::vector<planned_tier> tiers;
  std::vector<planned_rule> rules;  // ends with an unconditional rule
  bool strict = false, callsite = false;
  std::string source;              // where the policy came from ("" = default)
  std::vector<std::string> notes;  // decisions worth knowing (weights used, tiers skipped, ...)
};
// The built-in default for this topology (see the contract above).
[[nodiscard]] result<plan> default_plan(const topology &topo);
// One tier on this machine: its nodes (those this process may use), kind and placement (bind).
[[nodiscard]] result<tier> resolve_tier(const tier_ref &r, const topology &topo);
// `p` on this machine, its rules followed by the default's when it has no unconditional rule.
[[nodiscard]] result<plan> resolve(const loaded_policy &p, const topology &topo);
// The plan a program runs under: the configured policy (load(env), resolved on `topo`), or,
// when it cannot be used, the default, with why in `problem` ("" when the configured policy is
// used). The preload and `hetmem run --explain` both decide with this.
struct chosen_plan {
  plan used;
  std::string problem;
};
[[nodiscard]] chosen_plan choose_plan(const environment &env, const topology &topo);
// Human-readable: every rule, its tiers with nodes, kinds, placement and watermark, and where
// each setting came from.
[[nodiscard]] std::string explain(const plan &p);
// One line: the memory nodes this process may use and their kinds ("memory nodes 0=DDR, 2=HBM").
[[nodiscard]] std::string describe_machine(const topology &topo);

}  // namespace hetmem::policy
