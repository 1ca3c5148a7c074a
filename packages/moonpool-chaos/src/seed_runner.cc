#include "moonpool/chaos/seed_runner.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moonpool/chaos/sim_loop.h"

namespace moonpool::chaos {
namespace {

// The plan's own stream, apart from the SimLoop's (same seed, other salt).
constexpr uint64_t kPlanSalt = 0x9e3779b97f4a7c15ULL;

// The plan of `spec` for `seed` before RunSpec's overrides (tls).
ChaosConfig PlanWithoutOverrides(const RunSpec& spec, uint64_t seed) {
  switch (spec.config) {
    case ConfigMode::kNone:
      return ChaosConfig{};
    case ConfigMode::kFile:
      return spec.file_config;
    case ConfigMode::kRandom:
      break;
  }
  SimRandom plan(seed ^ kPlanSalt);
  return ChaosConfig::Random(plan);
}

}  // namespace

ChaosConfig PlanFor(const RunSpec& spec, uint64_t seed) {
  ChaosConfig c = PlanWithoutOverrides(spec, seed);
  if (spec.tls.has_value()) c.tls = *spec.tls;
  return c;
}

std::string CompareRuns(const SeedResult& first, const SeedResult& again) {
  if (first.trace_hash != again.trace_hash) {
    return absl::StrFormat("nondeterminism: trace hash %016x then %016x",
                           first.trace_hash, again.trace_hash);
  }
  if (first.wire_hash != again.wire_hash) {
    return absl::StrFormat(
        "nondeterminism: same trace, other bytes on the wire (wire hash "
        "%016x then %016x)",
        first.wire_hash, again.wire_hash);
  }
  return "";
}

SeedResult RunSeed(const RunSpec& spec, uint64_t seed) {
  SeedResult r;
  r.seed = seed;
  const ChaosConfig chaos = PlanFor(spec, seed);
  r.chaos = chaos.ToString();
  absl::StatusOr<std::unique_ptr<Workload>> workload =
      WorkloadRegistry::Global().Make(spec.workload, WorkloadOptions{});
  if (!workload.ok()) {
    r.status = workload.status();
    return r;
  }
  SimLoopOptions o;
  o.seed = seed;
  o.chaos = chaos;
  o.buggify = spec.buggify;
  o.trace.tail_size = 48;
  o.trace.keep_full = spec.keep_full_trace;
  {
    SimLoop sim(o);
    WorkloadContext context(sim, r.stats, o.start);
    r.status = (*workload)->Simulate(context);
    r.stats.virtual_time = context.Elapsed();
    if (r.status.ok()) r.status = sim.CheckInvariants();
    r.trace_hash = sim.trace().hash();
    r.wire_hash = sim.wire_hash();
    r.trace_events = sim.trace().size();
    if (!r.status.ok()) {
      for (const TraceEvent& e : sim.trace().Tail()) {
        absl::StrAppend(&r.trace_tail, e.ToString(), "\n");
      }
    }
    if (spec.keep_full_trace) r.full_trace = sim.trace().full();
    r.assertions.Merge(sim.assertions());
  }
  return r;
}

absl::Status SetConfig(absl::string_view arg, RunSpec& spec) {
  if (arg == "random") {
    spec.config = ConfigMode::kRandom;
  } else if (arg == "none") {
    spec.config = ConfigMode::kNone;
  } else {
    absl::StatusOr<ChaosConfig> c = ReadChaosConfigFile(std::string(arg));
    if (!c.ok()) return c.status();
    spec.config = ConfigMode::kFile;
    spec.file_config = *c;
    spec.config_file = std::string(arg);
  }
  return absl::OkStatus();
}

std::string ConfigArg(const RunSpec& spec) {
  switch (spec.config) {
    case ConfigMode::kNone:
      return "none";
    case ConfigMode::kRandom:
      return "random";
    case ConfigMode::kFile:
      break;
  }
  return spec.config_file.empty() ? "FILE" : spec.config_file;
}

}  // namespace moonpool::chaos
