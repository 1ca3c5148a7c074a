// Always / Sometimes, the coverage report, and Buggify decisions of each
// Loop.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/buggify.h"
#include "moonpool/chaos/faulty_loop.h"
#include "moonpool/chaos/sim_host.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/protocol/buggify.h"

namespace moonpool::chaos {
namespace {

TEST(Assertions, OutsideASimulationNothingIsRecorded) {
  EXPECT_EQ(CurrentAssertionRegistry(), nullptr);
  EXPECT_TRUE(Sometimes(true, "x"));
  EXPECT_FALSE(Always(false, "y"));
}

TEST(Assertions, RegistryCountsAndReportsHolesAndFailures) {
  AssertionRegistry r;
  {
    ScopedAssertionRegistry scope(&r);
    r.Declare("never");
    Sometimes(false, "rare");
    Sometimes(true, "rare");
    Sometimes(false, "rare");
    Always(true, "ok");
    Always(false, "broken", "detail 1");
    Always(false, "broken", "detail 2");
  }
  EXPECT_EQ(CurrentAssertionRegistry(), nullptr);
  EXPECT_EQ(r.points().at("rare").reached, 3u);
  EXPECT_EQ(r.points().at("rare").held, 1u);
  EXPECT_EQ(r.NeverHeld(), (std::vector<std::string>{"never"}));
  EXPECT_EQ(r.AlwaysFailures(), (std::vector<std::string>{"broken"}));
  EXPECT_EQ(r.points().at("broken").first_failure, "detail 1");
  EXPECT_EQ(r.always_failures(), 2u);
  const std::string report = r.CoverageReport();
  EXPECT_NE(report.find("never  NEVER"), std::string::npos) << report;
  EXPECT_NE(report.find("broken  FAILED"), std::string::npos) << report;

  AssertionRegistry total;
  total.Merge(r);
  total.Merge(r);
  EXPECT_EQ(total.points().at("rare").held, 2u);
  EXPECT_EQ(total.always_failures(), 4u);
}

TEST(Assertions, SimLoopInstallsItsRegistryAndDeclaresEveryFaultKind) {
  SimLoop sim;
  EXPECT_EQ(CurrentAssertionRegistry(), &sim.assertions());
  for (const char* point :
       {"fault.stall", "fault.clog", "fault.reset", "fault.half_close",
        "fault.connect_refused", "fault.connect_hang", "fault.partial_write",
        "fault.short_read", "fault.bit_flip", "fault.host_killed",
        "fault.latency_tail"}) {
    EXPECT_TRUE(sim.assertions().points().contains(point)) << point;
  }
  Always(false, "workload.bad", "planted");
  absl::Status s = sim.CheckInvariants();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("workload.bad"), std::string::npos) << s;
}

std::string FiringPattern(driver::Loop& loop, int sites, int evaluations) {
  std::string fired;
  for (int site = 0; site < sites; ++site) {
    for (int i = 0; i < evaluations; ++i) {
      fired += loop.Buggify("test.site" + std::to_string(site)) ? '1' : '0';
    }
  }
  return fired;
}

TEST(Buggify, UvLoopNeverFiresAndFaultyLoopAsksItsInnerLoop) {
  driver::UvLoop uv;
  FaultyLoop faulty(uv, {});
  for (absl::string_view site : KnownBuggifySites()) {
    EXPECT_FALSE(uv.Buggify(site)) << site;
    EXPECT_FALSE(faulty.Buggify(site)) << site;
  }
  EXPECT_EQ(FiringPattern(uv, 8, 8).find('1'), std::string::npos);

  SimLoop sim({.seed = 3,
               .buggify = true,
               .buggify_site_probability = 1.0,
               .buggify_fire_probability = 1.0});
  FaultyLoop over_sim(sim, {});
  EXPECT_TRUE(over_sim.Buggify("test.forwarded"));
  EXPECT_EQ(sim.assertions().points().at("buggify.test.forwarded").held, 1u);
}

TEST(Buggify, OffUnlessTheSimulationAsks) {
  SimLoop sim({.seed = 1});
  SimHost& host = **sim.AddHost("10.0.0.2");
  EXPECT_EQ(FiringPattern(sim, 16, 16).find('1'), std::string::npos);
  EXPECT_EQ(FiringPattern(host, 16, 16).find('1'), std::string::npos);
  // Nothing declared, nothing recorded: off is not a coverage hole.
  for (const auto& [name, point] : sim.assertions().points()) {
    EXPECT_FALSE(absl::StartsWith(name, "buggify.")) << name;
  }
}

TEST(Buggify, DecidedByTheSeedPerSiteForTheWholeRun) {
  auto pattern = [](uint64_t seed) {
    SimLoop sim({.seed = seed, .buggify = true});
    return FiringPattern(sim, 64, 8);
  };
  EXPECT_EQ(pattern(5), pattern(5));
  EXPECT_NE(pattern(5), pattern(6));
  // Some site of 64 is enabled and fires; most evaluations do not.
  const std::string p = pattern(5);
  EXPECT_NE(p.find('1'), std::string::npos);
  EXPECT_NE(p.find('0'), std::string::npos);

  // An enabled site fires on every evaluation when told to, a disabled one
  // on none: so a site's 8 evaluations are all 1 or all 0, and the hosts
  // share the SimLoop's decisions.
  SimLoop sim({.seed = 5, .buggify = true, .buggify_fire_probability = 1.0});
  SimHost& host = **sim.AddHost("10.0.0.2");
  const std::string on_loop = FiringPattern(sim, 64, 4);
  const std::string on_host = FiringPattern(host, 64, 4);
  EXPECT_EQ(on_loop, on_host);
  int enabled = 0;
  for (int site = 0; site < 64; ++site) {
    const std::string one = on_loop.substr(site * 4, 4);
    EXPECT_TRUE(one == "1111" || one == "0000")
        << "site " << site << ": " << one;
    enabled += one == "1111";
  }
  // 1/4 of 64, give or take.
  EXPECT_GT(enabled, 4);
  EXPECT_LT(enabled, 32);
}

TEST(Buggify, EveryEvaluationIsRecordedAndEveryKnownSiteDeclared) {
  SimLoop sim({.seed = 9, .buggify = true, .buggify_site_probability = 0.0});
  // Declared up front: holes until they fire.
  ASSERT_FALSE(KnownBuggifySites().empty());
  for (absl::string_view site : protocol::kBuggifySites) {
    const std::string point = BuggifyPointName(site);
    ASSERT_TRUE(sim.assertions().points().contains(point)) << point;
    EXPECT_EQ(sim.assertions().points().at(point).reached, 0u) << point;
  }
  const std::vector<std::string> holes = sim.assertions().NeverHeld();
  for (absl::string_view site : KnownBuggifySites()) {
    EXPECT_NE(std::find(holes.begin(), holes.end(), BuggifyPointName(site)),
              holes.end())
        << site;
  }
  // Disabled (probability 0): evaluated, never fired, still counted.
  const uint64_t traced = sim.trace().size();
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(sim.Buggify(protocol::buggify_sites::kEarlyPing));
  }
  const auto& point =
      sim.assertions().points().at("buggify.protocol.early_ping");
  EXPECT_EQ(point.reached, 5u);
  EXPECT_EQ(point.held, 0u);
  EXPECT_EQ(sim.trace().size(), traced + 5);

  SimLoop always({.seed = 9,
                  .buggify = true,
                  .buggify_site_probability = 1.0,
                  .buggify_fire_probability = 1.0});
  EXPECT_TRUE(always.Buggify("test.unlisted"));
  EXPECT_TRUE(always.Buggify("test.unlisted"));
  EXPECT_EQ(always.assertions().points().at("buggify.test.unlisted").held, 2u);
}

}  // namespace
}  // namespace moonpool::chaos
