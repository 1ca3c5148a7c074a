// Always / Sometimes, the coverage report, and Buggify.
#include <string>

#include "gtest/gtest.h"
#include "moonpool/chaos/buggify.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/chaos/sometimes.h"

namespace moonpool::chaos {
namespace {

TEST(Assertions, OutsideASimulationNothingIsRecorded) {
  EXPECT_EQ(CurrentAssertionRegistry(), nullptr);
  EXPECT_TRUE(Sometimes(true, "x"));
  EXPECT_FALSE(Always(false, "y"));
  EXPECT_FALSE(Buggify("site"));
  EXPECT_FALSE(BuggifyEnabled());
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

TEST(Buggify, OffUnlessTheSimulationAsksAndDecidedByTheSeed) {
  {
    SimLoop sim({.seed = 1});
    EXPECT_FALSE(BuggifyEnabled());
    EXPECT_FALSE(Buggify("a", 1.0));
  }
  auto pattern = [](uint64_t seed) {
    SimLoop sim({.seed = seed, .buggify = true});
    EXPECT_TRUE(BuggifyEnabled());
    std::string fired;
    for (int site = 0; site < 64; ++site) {
      for (int i = 0; i < 8; ++i) {
        fired += Buggify("site" + std::to_string(site)) ? '1' : '0';
      }
    }
    return fired;
  };
  EXPECT_EQ(pattern(5), pattern(5));
  EXPECT_NE(pattern(5), pattern(6));
  // Some site of 64 is enabled and fires; most evaluations do not.
  const std::string p = pattern(5);
  EXPECT_NE(p.find('1'), std::string::npos);
  EXPECT_NE(p.find('0'), std::string::npos);
  EXPECT_FALSE(BuggifyEnabled());
}

}  // namespace
}  // namespace moonpool::chaos
