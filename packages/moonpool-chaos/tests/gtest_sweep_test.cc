// SweepSeeds (gtest_sweep.h): passes when every seed passes, and otherwise
// fails naming the first failing seed, its broken invariant and the commands
// that reproduce it.
#include "moonpool/chaos/gtest_sweep.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/workload.h"

namespace moonpool::chaos {
namespace {

using ::testing::HasSubstr;

// Breaks an invariant on seed 13 and on seeds past 40.
class PickyWorkload final : public Workload {
 public:
  absl::string_view name() const override { return "gtest_sweep_test.picky"; }
  absl::Status Simulate(WorkloadContext& ctx) override {
    ctx.sim().RunUntil([] { return false; }, ctx.start() + absl::Seconds(1));
    ctx.sim().TraceUser(ctx.sim().random_source().Next());
    if (ctx.seed() == 13 || ctx.seed() > 40) {
      return absl::InternalError(
          absl::StrCat("invariant picky.seed: seed ", ctx.seed()));
    }
    return absl::OkStatus();
  }
};

void Register() {
  static const bool done = WorkloadRegistry::Global().Register<PickyWorkload>(
      "gtest_sweep_test.picky");
  (void)done;
}

TEST(SweepSeeds, PassesWhenEverySeedPasses) {
  Register();
  EXPECT_TRUE(SweepSeeds("gtest_sweep_test.picky", {.first = 1, .count = 12}));
  EXPECT_TRUE(SweepSeeds("gtest_sweep_test.picky",
                         {.first = 14, .count = 5, .check_determinism = 5}));
}

TEST(SweepSeeds, FailsWithTheFirstFailingSeedItsInvariantAndTheReproduction) {
  Register();
  const ::testing::AssertionResult r = SweepSeeds(
      "gtest_sweep_test.picky",
      {.first = 1, .count = 50, .config = "none", .runner = "./my-sim"});
  ASSERT_FALSE(r);
  const std::string m = r.message();
  EXPECT_THAT(m, HasSubstr("failed on seed 13 (sweep of seeds 1..50"));
  EXPECT_THAT(m, HasSubstr("invariant picky.seed: seed 13"));
  EXPECT_THAT(m,
              HasSubstr(absl::StrCat(
                  "reproduce: MOONPOOL_SWEEP_SEED=13 ", program_invocation_name,
                  " --gtest_filter=SweepSeeds."
                  "FailsWithTheFirstFailingSeedItsInvariantAndTheReproduc"
                  "tion")));
  EXPECT_THAT(m, HasSubstr("reproduce with the runner: ./my-sim --workload "
                           "gtest_sweep_test.picky --seed 13 --config none"));
  EXPECT_THAT(m, HasSubstr("trace tail:"));
}

TEST(SweepSeeds, TheEnvironmentPinsTheSweepToTheFailingSeed) {
  Register();
  ASSERT_EQ(setenv(kSweepSeedEnv, "41", 1), 0);
  const ::testing::AssertionResult pinned =
      SweepSeeds("gtest_sweep_test.picky", {.first = 1, .count = 5});
  ASSERT_EQ(unsetenv(kSweepSeedEnv), 0);
  ASSERT_FALSE(pinned);
  EXPECT_THAT(std::string(pinned.message()),
              HasSubstr("failed on seed 41 (sweep of seeds 41..41"));
}

TEST(SweepSeeds, AnUnknownWorkloadFails) {
  const ::testing::AssertionResult r = SweepSeeds("gtest_sweep_test.nope");
  ASSERT_FALSE(r);
  EXPECT_THAT(std::string(r.message()), HasSubstr("no workload"));
}

TEST(SweepSeeds, ABadConfigFails) {
  Register();
  const ::testing::AssertionResult r = SweepSeeds(
      "gtest_sweep_test.picky", {.config = "/nonexistent/plan.conf"});
  ASSERT_FALSE(r);
  EXPECT_THAT(std::string(r.message()), HasSubstr("config"));
}

}  // namespace
}  // namespace moonpool::chaos
