// SimReport: what a RunSimMain (moonpool-sim) run found (per-seed hashes,
// failures with their reproducing commands, merged Sometimes/Always coverage),
// as JSON for
// `--json` and back for `moonpool-sim merge`.
#ifndef MOONPOOL_CHAOS_SRC_SIM_REPORT_H_
#define MOONPOOL_CHAOS_SRC_SIM_REPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/chaos/sometimes.h"

namespace moonpool::chaos::internal {

// A point's counts summed over seeds: the registry's own type.
using CoveragePoint = AssertionRegistry::Point;

struct FailureEntry {
  uint64_t seed = 0;
  std::string error;
  std::string reproduce;
  std::string trace_tail;
};

class SimReport {
 public:
  std::string workload;
  std::string config;
  uint64_t seeds_run = 0;
  uint64_t requests = 0;
  uint64_t round_trips = 0;
  std::vector<std::pair<uint64_t, uint64_t>> hashes;  // seed, trace hash
  std::vector<FailureEntry> failures;
  absl::btree_map<std::string, CoveragePoint> coverage;

  void AddCoverage(const AssertionRegistry& registry);
  void Merge(const SimReport& other);
  // Sometimes points whose name starts with one of `prefixes` (all, when
  // empty) that never held.
  std::vector<std::string> Holes(
      const std::vector<std::string>& prefixes) const;
  std::string CoverageText() const;

  std::string ToJson() const;
  static absl::StatusOr<SimReport> FromJson(absl::string_view text);
};

}  // namespace moonpool::chaos::internal

#endif  // MOONPOOL_CHAOS_SRC_SIM_REPORT_H_
