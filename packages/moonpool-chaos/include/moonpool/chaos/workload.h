// Workload is one simulated scenario that the seed runner (seed_runner.h,
// and RunSimMain in sim_main.h) runs on a fresh SimLoop per seed: it builds
// its hosts, clients and servers on the SimLoop, drives them through a chaos
// phase and a quiet phase, and says whether every invariant held.
//
// What it is not: a test fixture with its own clock or threads. Everything a
// workload does happens in the SimLoop's virtual time, from the SimLoop's one
// random source, so a seed replays it exactly.
//
// Writing one (see README.md, "Your own workloads and runner"):
//
//   class Mine final : public Workload {
//    public:
//     absl::string_view name() const override { return "mine"; }
//     absl::Status Simulate(WorkloadContext& ctx) override {
//       SimLoop& sim = ctx.sim();
//       ... AddHost, spawn tasks, sim.RunUntil(...) ...
//       if (ctx.Elapsed() > absl::Seconds(300)) return ...;  // virtual time
//       ++ctx.stats().requests;
//       if (broken) return absl::InternalError("invariant mine.x: ...");
//       return absl::OkStatus();
//     }
//   };
//   // In main(), before RunSimMain (captures allowed):
//   WorkloadRegistry::Global().Register("mine", [] {
//     return std::make_unique<Mine>();
//   });
//
// Simulate returns OK or the first broken invariant (a hang is
// DeadlineExceeded). The runner then checks SimLoop::CheckInvariants()
// (stream integrity, failed Always) itself. Simulate must destroy everything
// it made on the SimLoop (transports, scopes, timers) before it returns.
//
// Ownership: the registry owns factories; the runner owns each Workload it
// makes (one per seed) and the WorkloadContext it passes, which lives for
// one Simulate call.
#ifndef MOONPOOL_CHAOS_WORKLOAD_H_
#define MOONPOOL_CHAOS_WORKLOAD_H_

#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/chaos/sim_loop.h"

namespace moonpool::chaos {

// What a run did, for the runner's figures (not invariants).
struct WorkloadStats {
  uint64_t requests = 0;     // requests issued
  uint64_t round_trips = 0;  // requests that got their reply
  // Virtual time the run took: set by the runner after Simulate returns
  // (WorkloadContext::Elapsed()); a workload need not fill it.
  absl::Duration virtual_time = absl::ZeroDuration();
};

// Per-run switches the runner passes to the workload's factory (none yet;
// the factory signature keeps room for them). Planted bugs, for tests of the
// sweep itself, are not among them: they exist only in a test-only build
// (tests/planted/CMakeLists.txt).
struct WorkloadOptions {};

// What a workload can read about the run it is in, and where it reports.
// Made by the runner (or a test) around one SimLoop for one Simulate call;
// it borrows `sim` and `stats`, which must outlive it.
class WorkloadContext {
 public:
  // `start` is the virtual time the run started at (SimLoopOptions::start
  // of `sim`), from which Elapsed() counts.
  WorkloadContext(SimLoop& sim, WorkloadStats& stats, absl::Time start)
      : sim_(sim), stats_(stats), start_(start) {}
  // The common case: a run that starts now.
  WorkloadContext(SimLoop& sim, WorkloadStats& stats)
      : WorkloadContext(sim, stats, sim.Now()) {}

  WorkloadContext(const WorkloadContext&) = delete;
  WorkloadContext& operator=(const WorkloadContext&) = delete;

  SimLoop& sim() const { return sim_; }
  WorkloadStats& stats() const { return stats_; }
  // The run's seed (the SimLoop's).
  uint64_t seed() const { return sim_.seed(); }
  absl::Time start() const { return start_; }
  // Virtual time since the run started: Now() - start(). Use it for phase
  // budgets and hang checks; it never reads a real clock.
  absl::Duration Elapsed() const { return sim_.Now() - start_; }

 private:
  SimLoop& sim_;
  WorkloadStats& stats_;
  absl::Time start_;
};

class Workload {
 public:
  virtual ~Workload() = default;
  virtual absl::string_view name() const = 0;

  // Runs one seed on ctx.sim() (freshly made, seeded, with its chaos plan).
  // Override this. The default calls the two-argument Run below, so
  // workloads written against it keep working.
  [[nodiscard]] virtual absl::Status Simulate(WorkloadContext& ctx) {
    return Run(ctx.sim(), ctx.stats());
  }

  // The older entry point, without the context; Simulate is preferred. The
  // two have different names on purpose: a derived class overriding one
  // would otherwise hide the other (-Woverloaded-virtual).
  [[nodiscard]] virtual absl::Status Run(SimLoop& /*sim*/,
                                         WorkloadStats& /*stats*/) {
    return absl::UnimplementedError(
        "workload overrides neither Simulate(WorkloadContext&) nor Run");
  }
};

// Makes one Workload per seed. Called through a const reference: a factory
// must not carry state from one seed to the next (seed N would then depend
// on which seeds ran before it, and would not reproduce alone).
using WorkloadFactory =
    absl::AnyInvocable<std::unique_ptr<Workload>(const WorkloadOptions&) const>;

// Name to factory. Built-in workloads ("pingpong") are always registered.
// Not thread-safe: register from main() (or static initialisers) before any
// run starts.
class WorkloadRegistry {
 public:
  static WorkloadRegistry& Global();

  // Registers `factory`, any callable, taking `const WorkloadOptions&` or
  // nothing, that returns a std::unique_ptr to a Workload (or a class
  // derived from it). Lambdas may capture (by value: the registry keeps the
  // callable). False if the name is taken.
  //
  //   registry.Register("kv", [replicas = 3] {
  //     return std::make_unique<KvWorkload>(replicas);
  //   });
  template <typename F>
  requires std::is_invocable_r_v < std::unique_ptr<Workload>,
  const F&, const WorkloadOptions& > ||
                std::is_invocable_r_v<std::unique_ptr<Workload>, const F&> bool
                Register(std::string name, F factory);

  // Registers type `T`, constructed from `const WorkloadOptions&` if it can
  // be, else default-constructed: `registry.Register<Mine>("mine")`.
  template <typename T>
  requires std::derived_from<T, Workload> &&
      (std::constructible_from<T, const WorkloadOptions&> ||
       std::default_initializable<T>)bool Register(std::string name);

  // The workload `name` makes for one seed. NotFound naming the known
  // workloads; Internal if its factory returned null.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Workload>> Make(
      absl::string_view name, const WorkloadOptions& options = {}) const;
  // In registration order.
  std::vector<std::string> Names() const;
  bool Contains(absl::string_view name) const;

 private:
  bool RegisterFactory(std::string name, WorkloadFactory factory);

  std::vector<std::pair<std::string, WorkloadFactory>> factories_;
};

template <typename F>
requires std::is_invocable_r_v < std::unique_ptr<Workload>,
const F&, const WorkloadOptions& > ||
              std::is_invocable_r_v<std::unique_ptr<Workload>, const F&> bool
              WorkloadRegistry::Register(std::string name, F factory) {
  if constexpr (std::is_invocable_r_v<std::unique_ptr<Workload>, const F&,
                                      const WorkloadOptions&>) {
    return RegisterFactory(std::move(name),
                           [f = std::move(factory)](const WorkloadOptions& o)
                               -> std::unique_ptr<Workload> { return f(o); });
  } else {
    return RegisterFactory(std::move(name),
                           [f = std::move(factory)](const WorkloadOptions&)
                               -> std::unique_ptr<Workload> { return f(); });
  }
}

template <typename T>
requires std::derived_from<T, Workload> &&
    (std::constructible_from<T, const WorkloadOptions&> ||
     std::default_initializable<T>)bool WorkloadRegistry::Register(std::string
                                                                       name) {
  return Register(
      std::move(name), []([[maybe_unused]] const WorkloadOptions& o) {
        if constexpr (std::constructible_from<T, const WorkloadOptions&>) {
          return std::make_unique<T>(o);
        } else {
          return std::make_unique<T>();
        }
      });
}

namespace internal {

// MOONPOOL_REGISTER_WORKLOAD's body: registers T under the name() of one
// instance made for the purpose.
template <typename T>
bool RegisterWorkloadType() {
  std::unique_ptr<Workload> probe;
  if constexpr (std::constructible_from<T, const WorkloadOptions&>) {
    probe = std::make_unique<T>(WorkloadOptions{});
  } else {
    probe = std::make_unique<T>();
  }
  return WorkloadRegistry::Global().Register<T>(std::string(probe->name()));
}

}  // namespace internal
}  // namespace moonpool::chaos

// Registers `Type` (constructible from WorkloadOptions, or default
// constructible) under its name() at static initialisation. In a static
// library, the object file must be referenced (or linked whole) for this to
// run; prefer WorkloadRegistry::Global().Register in main() there.
#define MOONPOOL_REGISTER_WORKLOAD(Type)                  \
  static const bool moonpool_workload_registered_##Type = \
      ::moonpool::chaos::internal::RegisterWorkloadType<Type>()

#endif  // MOONPOOL_CHAOS_WORKLOAD_H_
