// The seed runner: runs one workload on one seed (a fresh SimLoop, its
// fault plan, the workload's invariants, the SimLoop's own checks) and
// reports the outcome with the trace hash. RunSimMain (sim_main.h, and so
// moonpool-sim) is a command line around it; tests (gtest_sweep.h) and
// benchmarks call it directly.
//
//   RunSpec spec{.workload = "pingpong", .config = ConfigMode::kRandom};
//   SeedResult r = RunSeed(spec, 42);
//   if (!r.status.ok()) std::cerr << r.status << "\n" << r.trace_tail;
//
// Config modes: kNone (no faults), kRandom (ChaosConfig::Random from the
// seed, swarm mode), kFile (a fixed plan, ParseChaosConfig). The plan for a
// random seed is drawn from SimRandom(seed ^ kPlanSalt), not the SimLoop's
// stream. RunSpec::tls, when set, overrides the plan's TLS switch.
//
// Determinism: a seed replays when two runs agree on the trace hash and on
// the wire hash (every byte on the simulated wire); SameRun compares both.
//
// Ownership: plain values; nothing outlives the call.
#ifndef MOONPOOL_CHAOS_SEED_RUNNER_H_
#define MOONPOOL_CHAOS_SEED_RUNNER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/chaos/workload.h"

namespace moonpool::chaos {

enum class ConfigMode { kNone, kRandom, kFile };

struct RunSpec {
  std::string workload = "pingpong";
  ConfigMode config = ConfigMode::kRandom;
  ChaosConfig file_config = {};  // kFile's plan
  std::string config_file = {};  // kFile: the file it came from, if any
  bool buggify = true;
  // Set: overrides the plan's ChaosConfig::tls (the runner's --tls on|off)
  // in every config mode; unset: the plan decides (a quarter of the random
  // plans, a file's tls key, never with kNone).
  std::optional<bool> tls = std::nullopt;
  // Keep the full trace (for divergence reports; costs memory).
  bool keep_full_trace = false;
};

struct SeedResult {
  uint64_t seed = 0;
  absl::Status status;  // the broken invariant, or OK
  uint64_t trace_hash = 0;
  uint64_t wire_hash = 0;  // SimLoop::wire_hash: the bytes on the wire
  uint64_t trace_events = 0;
  std::string trace_tail;  // the last events, one per line (failures only)
  std::string chaos;       // the plan, ChaosConfig::ToString
  WorkloadStats stats;
  AssertionRegistry assertions;
  std::vector<TraceEvent> full_trace;  // with keep_full_trace
};

// Whether two results of one seed are the same run: equal trace and wire
// hashes. Empty if so, else what differs, for a report.
std::string CompareRuns(const SeedResult& first, const SeedResult& again);

// The plan a seed runs with under `spec`.
ChaosConfig PlanFor(const RunSpec& spec, uint64_t seed);

// Runs `seed`: makes spec.workload from WorkloadRegistry::Global(), a
// SimLoop with the seed's plan, calls Workload::Simulate with a
// WorkloadContext, then SimLoop::CheckInvariants(). The result's
// stats.virtual_time is the context's Elapsed() when Simulate returned.
SeedResult RunSeed(const RunSpec& spec, uint64_t seed);

// Sets spec.config from the runner's --config value: "random", "none", or
// the path of a plan file (read and parsed now, see ParseChaosConfig).
// The file's errors come back as they are (NotFound, InvalidArgument).
[[nodiscard]] absl::Status SetConfig(absl::string_view arg, RunSpec& spec);
// The --config value that gives `spec` its plan: "random", "none", or
// spec.config_file ("FILE" when a kFile plan has no file).
std::string ConfigArg(const RunSpec& spec);

// Parses the key=value plan format (README.md, "Config files"): one field
// per line, '#' comments, durations as absl ("250ms", "3s"), unknown keys
// and bad values are InvalidArgument naming the line. Fields not given keep
// ChaosConfig{}'s value.
[[nodiscard]] absl::StatusOr<ChaosConfig> ParseChaosConfig(
    absl::string_view text);
[[nodiscard]] absl::StatusOr<ChaosConfig> ReadChaosConfigFile(
    const std::string& path);

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SEED_RUNNER_H_
