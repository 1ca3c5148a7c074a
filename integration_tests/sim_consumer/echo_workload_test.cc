// The echo workload as a GoogleTest test: 50 seeds, the first 5 twice.
#include "echo_workload.h"

#include "gtest/gtest.h"
#include "moonpool/chaos/gtest_sweep.h"

TEST(Echo, SurvivesFiftySeeds) {
  echo::RegisterEchoWorkload();
  EXPECT_TRUE(moonpool::chaos::SweepSeeds("echo", {.first = 1,
                                                   .count = 50,
                                                   .check_determinism = 5,
                                                   .runner = "./echo-sim"}));
}
