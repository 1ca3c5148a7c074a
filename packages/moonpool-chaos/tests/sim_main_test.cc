// RunSimMain, the runner a user's program calls, and the registry it runs
// from: workloads registered by factory (captures included) and by type,
// the elapsed virtual time a workload reads, failures with a reproducing
// command naming the program, JSON and merge, the determinism check, and the
// program's own ABSL_FLAGs on the same command line.
#include "moonpool/chaos/sim_main.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/workload.h"

ABSL_FLAG(int, sim_main_test_requests, 1,
          "requests the sim_main_test.flagged workload reports");

namespace moonpool::chaos {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Waits `wait` of virtual time, reports `requests`, and breaks an invariant
// on seeds whose last digit is `bad_digit` (none if negative).
class TinyWorkload final : public Workload {
 public:
  TinyWorkload(std::string name, absl::Duration wait, int bad_digit,
               uint64_t requests = 1)
      : name_(std::move(name)),
        wait_(wait),
        bad_digit_(bad_digit),
        requests_(requests) {}
  absl::string_view name() const override { return name_; }
  absl::Status Simulate(WorkloadContext& ctx) override {
    ctx.sim().RunUntil([] { return false; }, ctx.start() + wait_);
    if (ctx.Elapsed() != wait_) {
      return absl::InternalError(absl::StrCat(
          "invariant elapsed: ", absl::FormatDuration(ctx.Elapsed())));
    }
    ctx.sim().TraceUser(ctx.sim().random_source().Next());
    ctx.stats().requests = requests_;
    ctx.stats().round_trips = requests_;
    if (bad_digit_ >= 0 &&
        ctx.seed() % 10 == static_cast<uint64_t>(bad_digit_)) {
      return absl::InternalError(absl::StrCat("invariant unlucky_digit: seed ",
                                              ctx.seed(), " ends in ",
                                              bad_digit_));
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
  absl::Duration wait_;
  int bad_digit_;
  uint64_t requests_;
};

// Trace differs on every run: a workload that keeps state across runs.
class LeakyWorkload final : public Workload {
 public:
  absl::string_view name() const override { return "sim_main_test.leaky"; }
  absl::Status Simulate(WorkloadContext& ctx) override {
    static uint64_t runs = 0;
    ctx.sim().TraceUser(++runs);
    return absl::OkStatus();
  }
};

// A workload written against the older two-argument Run.
class OldStyleWorkload final : public Workload {
 public:
  explicit OldStyleWorkload(const WorkloadOptions&) {}
  absl::string_view name() const override { return "sim_main_test.old"; }
  absl::Status Run(SimLoop& sim, WorkloadStats& stats) override {
    sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(3));
    stats.requests = 7;
    return absl::OkStatus();
  }
};

// Default-constructible only, registered by the macro.
class MacroWorkload final : public Workload {
 public:
  absl::string_view name() const override { return "sim_main_test.macro"; }
  absl::Status Simulate(WorkloadContext&) override { return absl::OkStatus(); }
};
MOONPOOL_REGISTER_WORKLOAD(MacroWorkload);

void RegisterTestWorkloads() {
  static const bool done = [] {
    WorkloadRegistry& r = WorkloadRegistry::Global();
    // A capturing factory: the digit and the wait travel in the lambda.
    r.Register("sim_main_test.sevens", [digit = 7, wait = absl::Seconds(2)] {
      return std::make_unique<TinyWorkload>("sim_main_test.sevens", wait,
                                            digit);
    });
    r.Register("sim_main_test.clean", [](const WorkloadOptions&) {
      return std::make_unique<TinyWorkload>("sim_main_test.clean",
                                            absl::Milliseconds(250), -1);
    });
    r.Register("sim_main_test.flagged", [] {
      return std::make_unique<TinyWorkload>(
          "sim_main_test.flagged", absl::Seconds(1), -1,
          absl::GetFlag(FLAGS_sim_main_test_requests));
    });
    r.Register<LeakyWorkload>("sim_main_test.leaky");
    r.Register<OldStyleWorkload>("sim_main_test.old");
    r.Register("sim_main_test.null",
               [] { return std::unique_ptr<Workload>(); });
    return true;
  }();
  (void)done;
}

struct Result {
  int rc = 0;
  std::string out;
  std::string err;
};

Result Main(std::vector<std::string> args) {
  RegisterTestWorkloads();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream out, err;
  Result r;
  r.rc = RunSimMain(static_cast<int>(args.size()), argv.data(), out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

TEST(WorkloadRegistry, RegistersCapturingFactoriesTypesAndTheMacro) {
  RegisterTestWorkloads();
  const WorkloadRegistry& r = WorkloadRegistry::Global();
  EXPECT_TRUE(r.Contains("pingpong"));
  EXPECT_TRUE(r.Contains("sim_main_test.sevens"));
  EXPECT_TRUE(r.Contains("sim_main_test.leaky"));
  EXPECT_TRUE(r.Contains("sim_main_test.macro"));
  absl::StatusOr<std::unique_ptr<Workload>> w = r.Make("sim_main_test.sevens");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->name(), "sim_main_test.sevens");
}

TEST(WorkloadRegistry, RefusesATakenName) {
  RegisterTestWorkloads();
  EXPECT_FALSE(WorkloadRegistry::Global().Register<LeakyWorkload>("pingpong"));
}

TEST(WorkloadRegistry, AFactoryReturningNullIsInternal) {
  RegisterTestWorkloads();
  EXPECT_EQ(
      WorkloadRegistry::Global().Make("sim_main_test.null").status().code(),
      absl::StatusCode::kInternal);
}

TEST(SeedRunner, ReportsElapsedVirtualTimeInStats) {
  RegisterTestWorkloads();
  SeedResult r = RunSeed({.workload = "sim_main_test.sevens"}, 3);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.stats.virtual_time, absl::Seconds(2));
}

TEST(SeedRunner, RunsAWorkloadWrittenAgainstTheOldRun) {
  RegisterTestWorkloads();
  SeedResult r = RunSeed({.workload = "sim_main_test.old"}, 1);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.stats.requests, 7u);
  EXPECT_EQ(r.stats.virtual_time, absl::Seconds(3));
}

TEST(RunSimMain, PassingSeedsExitZeroWithOneLinePerSeed) {
  Result r =
      Main({"my-sim", "--workload", "sim_main_test.clean", "--seeds", "1..3"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("seed 1 ok"));
  EXPECT_THAT(r.out, HasSubstr("seed 3 ok"));
  EXPECT_THAT(r.out, HasSubstr("vt=250ms"));
  EXPECT_THAT(r.out, HasSubstr("== summary: 3 seeds, 0 failed"));
}

TEST(RunSimMain, AFailingSeedPrintsTheInvariantAndACommandNamingTheProgram) {
  Result r = Main({"/opt/me/my-own-sim", "--workload", "sim_main_test.sevens",
                   "--seeds", "1..10", "--failures-only"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.out, HasSubstr("seed 7 FAILED"));
  EXPECT_THAT(r.out, HasSubstr("invariant unlucky_digit: seed 7 ends in 7"));
  EXPECT_THAT(r.out,
              HasSubstr("reproduce: /opt/me/my-own-sim --workload "
                        "sim_main_test.sevens --seed 7 --config random\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("moonpool-sim")));
  EXPECT_THAT(r.out, Not(HasSubstr("seed 6 ok")));  // --failures-only
  EXPECT_THAT(r.out, HasSubstr("== summary: 10 seeds, 1 failed"));
}

TEST(RunSimMain, TheReproducingCommandReproduces) {
  Result r = Main({"my-sim", "--workload=sim_main_test.sevens", "--seed=17",
                   "--config=none", "--no-buggify"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.out, HasSubstr("reproduce: my-sim --workload "
                               "sim_main_test.sevens --seed 17 --config none "
                               "--no-buggify\n"));
}

TEST(RunSimMain, ShardsSplitTheRangeAndMergeAddsThemUp) {
  const std::string dir = ::testing::TempDir();
  const std::string a = dir + "/sim_main_test_shard0.json";
  const std::string b = dir + "/sim_main_test_shard1.json";
  Result r0 = Main({"my-sim", "--workload", "sim_main_test.sevens", "--seeds",
                    "1..10", "--shard", "0/2", "--json", a});
  Result r1 = Main({"my-sim", "--workload", "sim_main_test.sevens", "--seeds",
                    "1..10", "--shard", "1/2", "--json", b});
  EXPECT_EQ(r0.rc, 1);  // 1, 3, 5, 7, 9: seed 7 fails
  EXPECT_THAT(r0.out, HasSubstr("seed 9 ok"));
  EXPECT_THAT(r0.out, Not(HasSubstr("seed 2 ok")));
  EXPECT_EQ(r1.rc, 0) << r1.out;  // 2, 4, 6, 8, 10
  EXPECT_THAT(r1.out, HasSubstr("seed 10 ok"));
  Result m = Main({"my-sim", "merge", a, b});
  EXPECT_EQ(m.rc, 1);
  EXPECT_THAT(m.out, HasSubstr("merged 2 reports"));
  EXPECT_THAT(m.out, HasSubstr("== summary: 10 seeds, 1 failed"));
  EXPECT_THAT(m.out, HasSubstr("FAILED seed 7"));
  EXPECT_THAT(m.out, HasSubstr("reproduce: my-sim --workload "
                               "sim_main_test.sevens --seed 7"));
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(RunSimMain, TheDeterminismCheckCatchesAWorkloadThatKeepsState) {
  Result r = Main({"my-sim", "--workload", "sim_main_test.leaky", "--seeds",
                   "1..2", "--check-determinism", "1"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.out, HasSubstr("seed 1 FAILED"));
  EXPECT_THAT(r.out, HasSubstr("nondeterminism: trace hash"));
  EXPECT_THAT(r.out, HasSubstr("first divergent event"));
  EXPECT_THAT(r.out, HasSubstr("--check-determinism\n"));
  EXPECT_THAT(r.out, HasSubstr("seed 2 ok"));  // only the first N twice
}

TEST(RunSimMain, RequiredCoverageThatNeverHeldFails) {
  Result r = Main({"my-sim", "--workload", "sim_main_test.clean", "--seed", "1",
                   "--require-coverage", "fault.stall"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.out, HasSubstr("coverage holes (required): fault.stall"));
}

TEST(RunSimMain, TheProgramsOwnAbslFlagsWorkAndGoIntoTheReproducingCommand) {
  Result r = Main({"my-sim", "--workload", "sim_main_test.flagged", "--seed",
                   "4", "--sim_main_test_requests=5"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("requests=5"));
  EXPECT_EQ(absl::GetFlag(FLAGS_sim_main_test_requests), 5);
  absl::SetFlag(&FLAGS_sim_main_test_requests, 1);
  RunSpec spec{.workload = "sim_main_test.flagged"};
  EXPECT_EQ(ReproduceCommand("my-sim", spec, 4, {"--sim_main_test_requests=5"}),
            "my-sim --workload sim_main_test.flagged --seed 4 --config random "
            "--sim_main_test_requests=5");
}

TEST(RunSimMain, BadUsageExitsTwoWithTheUsage) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"my-sim", "--seeds", "5..1"},
           {"my-sim", "--bogus", "--seed", "1"},
           {"my-sim"},
           {"my-sim", "--seed", "1", "--shard", "2/2"},
           {"my-sim", "--seed", "1", "--workload", "nope"},
           {"my-sim", "--seed", "1", "--config", "/nonexistent.conf"},
           {"my-sim", "merge"}}) {
    SCOPED_TRACE(args.size() > 1 ? args[1] : "(none)");
    Result r = Main(args);
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("my-sim"));
  }
}

TEST(RunSimMain, HelpListsTheFlagsTheWorkloadsAndTheProgramsFlags) {
  Result r = Main({"my-sim", "--help"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_THAT(r.err, HasSubstr("usage: my-sim"));
  EXPECT_THAT(r.err, HasSubstr("--check-determinism [N]"));
  EXPECT_THAT(r.err, HasSubstr("sim_main_test.sevens"));
  EXPECT_THAT(r.err, HasSubstr("--sim_main_test_requests"));
}

TEST(ReproduceCommand, QuotesWordsTheShellWouldSplit) {
  RunSpec spec{.workload = "it's"};
  EXPECT_EQ(ReproduceCommand("/my dir/sim", spec, 3),
            "'/my dir/sim' --workload 'it'\\''s' --seed 3 --config random");
}

}  // namespace
}  // namespace moonpool::chaos
