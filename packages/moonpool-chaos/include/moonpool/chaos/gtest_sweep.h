// SweepSeeds: one GoogleTest assertion that runs a registered workload over
// N seeds (RunSeed, seed_runner.h) and, on the first seed that breaks an
// invariant, fails with that seed, the broken invariant, the fault plan,
// the trace tail and the exact command that reproduces it.
//
//   TEST(Mine, SurvivesTwoHundredSeeds) {
//     EXPECT_TRUE(moonpool::chaos::SweepSeeds("mine", {.first = 1, .count =
//     200}));
//   }
//
// The reproducing command reruns the failing seed alone in this same test
// binary (MOONPOOL_SWEEP_SEED=<seed> <binary> --gtest_filter=<this test>),
// and, when SweepOptions::runner names your RunSimMain program, with it too.
//
// What it is not: part of the moonpool::chaos library. It is header-only so
// that the library does not link GoogleTest; a test target that includes it
// links GTest::gtest itself. It owns nothing after it returns; the workload
// must be registered (WorkloadRegistry::Global()) before it is called.
#ifndef MOONPOOL_CHAOS_GTEST_SWEEP_H_
#define MOONPOOL_CHAOS_GTEST_SWEEP_H_

#include <cerrno>  // program_invocation_name (glibc)
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/sim_main.h"

namespace moonpool::chaos {

struct SweepOptions {
  uint64_t first = 1;    // the first seed
  uint64_t count = 100;  // seeds first .. first + count - 1
  // Each seed's fault plan, as the runner's --config takes it: "random"
  // (drawn from the seed), "none", or the path of a plan file.
  std::string config = "random";
  bool buggify = true;
  // Set: every seed with mutual TLS (true) or plaintext (false), whatever
  // the plan says (RunSpec::tls).
  std::optional<bool> tls = std::nullopt;
  // The first this many seeds run twice; their trace hashes, and the bytes
  // they put on the simulated wire, must agree.
  uint64_t check_determinism = 0;
  // Your RunSimMain program, as you run it ("./my-sim"); when set, the
  // failure message also gives its reproducing command.
  std::string runner = {};
};

// The environment variable that pins a sweep to one seed: set, SweepSeeds
// runs that seed only (what its reproducing command does).
inline constexpr char kSweepSeedEnv[] = "MOONPOOL_SWEEP_SEED";

namespace internal {

// The command that reruns the current test with the sweep pinned to `seed`.
inline std::string SweepReproduceCommand(uint64_t seed) {
#if defined(__GLIBC__)
  std::string binary = program_invocation_name;
#else
  std::string binary = "<this test binary>";
#endif
  std::string cmd = absl::StrCat(kSweepSeedEnv, "=", seed, " ", binary);
  if (const ::testing::TestInfo* info =
          ::testing::UnitTest::GetInstance()->current_test_info()) {
    absl::StrAppend(&cmd, " --gtest_filter=", info->test_suite_name(), ".",
                    info->name());
  }
  return cmd;
}

}  // namespace internal

// Success if every seed of the sweep passes (and replays, for the seeds
// checked twice); else a failure naming the first failing seed.
inline ::testing::AssertionResult SweepSeeds(absl::string_view workload,
                                             const SweepOptions& options = {}) {
  RunSpec spec;
  spec.workload = std::string(workload);
  spec.buggify = options.buggify;
  spec.tls = options.tls;
  if (absl::Status s = SetConfig(options.config, spec); !s.ok()) {
    return ::testing::AssertionFailure()
           << "SweepSeeds(\"" << workload << "\"): config: " << s;
  }
  uint64_t first = options.first;
  uint64_t count = options.count;
  if (const char* pinned = std::getenv(kSweepSeedEnv);
      pinned != nullptr && *pinned != '\0') {
    if (!absl::SimpleAtoi(pinned, &first)) {
      return ::testing::AssertionFailure()
             << kSweepSeedEnv << "=" << pinned << " is not a seed";
    }
    count = 1;
  }
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t seed = first + i;
    SeedResult r = RunSeed(spec, seed);
    std::string broken;
    if (!r.status.ok()) {
      broken = r.status.ToString();
    } else if (i < options.check_determinism) {
      const SeedResult again = RunSeed(spec, seed);
      broken = CompareRuns(r, again);
    }
    if (broken.empty()) continue;
    ::testing::AssertionResult failure = ::testing::AssertionFailure();
    failure << "workload '" << workload << "' failed on seed " << seed
            << " (sweep of seeds " << first << ".." << first + count - 1
            << ", config " << options.config << ")\n  broken: " << broken
            << "\n  chaos: " << r.chaos << "\n  trace tail:\n";
    for (absl::string_view line :
         absl::StrSplit(r.trace_tail, '\n', absl::SkipEmpty())) {
      failure << "    " << line << "\n";
    }
    failure << "  reproduce: " << internal::SweepReproduceCommand(seed);
    if (!options.runner.empty()) {
      failure << "\n  reproduce with the runner: "
              << ReproduceCommand(options.runner, spec, seed);
    }
    return failure;
  }
  return ::testing::AssertionSuccess()
         << "workload '" << workload << "': " << count << " seeds passed";
}

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_GTEST_SWEEP_H_
