// Workload is one simulated scenario that the seed runner (moonpool-sim,
// seed_runner.h) runs on a fresh SimLoop per seed: it builds its hosts,
// clients and servers on the SimLoop, drives them through a chaos phase and
// a quiet phase, and says whether every invariant held.
//
// What it is not: a test fixture with its own clock or threads. Everything a
// workload does happens in the SimLoop's virtual time, from the SimLoop's one
// random source, so a seed replays it exactly.
//
// Writing one (see README.md, "Writing a workload"):
//
//   class MyWorkload final : public Workload {
//    public:
//     absl::string_view name() const override { return "mine"; }
//     absl::Status Run(SimLoop& sim, WorkloadStats& stats) override {
//       ... AddHost, spawn tasks, sim.RunUntil(...) ...
//       if (broken) return absl::InternalError("invariant: ...");
//       return absl::OkStatus();
//     }
//   };
//   MOONPOOL_REGISTER_WORKLOAD(MyWorkload);   // or WorkloadRegistry::Register
//
// Run returns OK or the first broken invariant (a hang is
// DeadlineExceeded). The runner then checks SimLoop::CheckInvariants()
// (stream integrity, failed Always) itself. Run must destroy everything it
// made on the SimLoop (transports, scopes, timers) before it returns.
//
// Ownership: the registry owns factories; the runner owns each Workload it
// makes, one per seed.
#ifndef MOONPOOL_CHAOS_WORKLOAD_H_
#define MOONPOOL_CHAOS_WORKLOAD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/chaos/sim_loop.h"

namespace moonpool::chaos {

// What a run did, for the runner's figures (not invariants).
struct WorkloadStats {
  uint64_t requests = 0;     // requests issued
  uint64_t round_trips = 0;  // requests that got their reply
  absl::Duration virtual_time = absl::ZeroDuration();
};

// Per-run switches the runner passes to the workload.
struct WorkloadOptions {
  // Test only: a workload may plant a bug of its own when set (pingpong has
  // none; the stall-is-close bug lives in SimLoopOptions).
  bool test_only_bug = false;
};

class Workload {
 public:
  virtual ~Workload() = default;
  virtual absl::string_view name() const = 0;
  // Runs one seed on `sim` (freshly made, seeded, with its chaos plan).
  virtual absl::Status Run(SimLoop& sim, WorkloadStats& stats) = 0;
};

using WorkloadFactory =
    std::function<std::unique_ptr<Workload>(const WorkloadOptions&)>;

// Name to factory. Built-in workloads ("pingpong") are always registered.
class WorkloadRegistry {
 public:
  static WorkloadRegistry& Global();
  // False if the name is taken.
  bool Register(std::string name, WorkloadFactory factory);
  // NotFound naming the known workloads.
  absl::StatusOr<std::unique_ptr<Workload>> Make(
      absl::string_view name, const WorkloadOptions& options = {}) const;
  std::vector<std::string> Names() const;

 private:
  std::vector<std::pair<std::string, WorkloadFactory>> factories_;
};

}  // namespace moonpool::chaos

// Registers `Type` (default-constructible from WorkloadOptions or not at
// all) under its name() at static initialisation. In a static library, the
// object file must be referenced (or linked whole) for this to run; prefer
// WorkloadRegistry::Global().Register in main() there.
#define MOONPOOL_REGISTER_WORKLOAD(Type)                                  \
  static const bool moonpool_workload_registered_##Type =                 \
      ::moonpool::chaos::WorkloadRegistry::Global().Register(             \
          std::string(Type(::moonpool::chaos::WorkloadOptions{}).name()), \
          [](const ::moonpool::chaos::WorkloadOptions& o) {               \
            return std::unique_ptr<::moonpool::chaos::Workload>(          \
                std::make_unique<Type>(o));                               \
          })

#endif  // MOONPOOL_CHAOS_WORKLOAD_H_
