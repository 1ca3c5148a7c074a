// The built-in workloads with TLS (ChaosConfig::tls, issue 17): a seed
// replays with TLS on (the same trace and the same bytes on the simulated
// wire), sweeps with TLS forced on pass, the plan's switch is a swarm
// switch that leaves TLS-off plans as they were, and the plan file and
// runner flag set it.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/gtest_sweep.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/sim_main.h"

namespace moonpool::chaos {
namespace {

using ::testing::HasSubstr;

bool Held(const SeedResult& r, const std::string& point) {
  auto it = r.assertions.points().find(point);
  return it != r.assertions.points().end() && it->second.held > 0;
}

TEST(TlsSweep, ASeedWithTlsReplaysItsTraceAndItsBytesOnTheWire) {
  RunSpec spec;
  spec.tls = true;
  for (uint64_t seed : {3, 4}) {
    const SeedResult a = RunSeed(spec, seed);
    const SeedResult b = RunSeed(spec, seed);
    ASSERT_TRUE(a.status.ok()) << "seed " << seed << ": " << a.status << "\n"
                               << a.trace_tail;
    EXPECT_EQ(CompareRuns(a, b), "") << "seed " << seed;
    EXPECT_EQ(a.wire_hash, b.wire_hash);
    EXPECT_TRUE(Held(a, "tls.handshake_done")) << "seed " << seed;
    EXPECT_THAT(a.chaos, HasSubstr(" tls"));
    // The same seed without TLS is another run: TLS was really on.
    RunSpec plain = spec;
    plain.tls = false;
    EXPECT_NE(RunSeed(plain, seed).wire_hash, a.wire_hash);
  }
}

TEST(TlsSweep, PingPongSeedsWithTlsForcedOnPass) {
  SweepOptions o;
  o.first = 101;
  o.count = 12;
  o.tls = true;
  o.check_determinism = 3;
  EXPECT_TRUE(SweepSeeds("pingpong", o));
}

TEST(TlsSweep, StreamSeedsWithTlsForcedOnPass) {
  SweepOptions o;
  o.first = 201;
  o.count = 4;
  o.tls = true;
  o.check_determinism = 1;
  EXPECT_TRUE(SweepSeeds("stream", o));
}

TEST(TlsSweep, TheSwitchIsOnInAQuarterOfTheRandomPlans) {
  RunSpec spec;
  int on = 0;
  for (uint64_t seed = 1; seed <= 400; ++seed) on += PlanFor(spec, seed).tls;
  EXPECT_GT(on, 70);  // 100 expected; 3.5 standard deviations either way
  EXPECT_LT(on, 130);
}

TEST(TlsSweep, APlanWithTlsOffRunsAsIfTheSwitchDidNotExist) {
  // The switch is drawn last, from the resolver's fork: forcing it off
  // changes nothing else of the plan, and a seed whose plan drew it off
  // runs exactly as with --tls off.
  RunSpec drawn;
  RunSpec off;
  off.tls = false;
  int checked = 0;
  for (uint64_t seed = 1; seed <= 40 && checked < 2; ++seed) {
    ChaosConfig forced = PlanFor(off, seed);
    ChaosConfig plan = PlanFor(drawn, seed);
    plan.tls = false;
    EXPECT_EQ(plan.ToString(), forced.ToString()) << seed;
    if (PlanFor(drawn, seed).tls) continue;
    ++checked;
    const SeedResult a = RunSeed(drawn, seed);
    const SeedResult b = RunSeed(off, seed);
    EXPECT_EQ(CompareRuns(a, b), "") << "seed " << seed;
    EXPECT_FALSE(Held(a, "tls.handshake_done"));
  }
  EXPECT_EQ(checked, 2);
}

TEST(TlsSweep, APlanFileAndTheRunnerFlagSetIt) {
  absl::StatusOr<ChaosConfig> c = ParseChaosConfig("tls = true\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tls);
  EXPECT_FALSE(c->any_fault());
  EXPECT_FALSE(ParseChaosConfig("tls = maybe").ok());

  RunSpec spec;
  spec.tls = true;
  EXPECT_THAT(ReproduceCommand("moonpool-sim", spec, 9), HasSubstr("--tls on"));
  std::vector<std::string> args = {"moonpool-sim", "--workload", "pingpong",
                                   "--seed",       "5",          "--config",
                                   "none",         "--tls",      "on"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::ostringstream out, err;
  EXPECT_EQ(RunSimMain(static_cast<int>(argv.size()), argv.data(), out, err), 0)
      << out.str() << err.str();
  EXPECT_THAT(out.str(), HasSubstr("tls.handshake_done"));
  EXPECT_THAT(out.str(), ::testing::ContainsRegex(
                             "[1-9]/[0-9]+ +sometimes  tls.handshake_done\n"));
}

}  // namespace
}  // namespace moonpool::chaos
