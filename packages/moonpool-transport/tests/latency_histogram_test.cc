// The per-method latency histogram (src/latency_histogram.h): bucket
// layout, relative error, percentiles and the exact maximum.
#include "latency_histogram.h"

#include <cstdint>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace moonpool::transport::internal {
namespace {

TEST(LatencyHistogram, EveryValueFallsInABucketThatHoldsIt) {
  for (uint64_t v :
       {uint64_t{0}, uint64_t{1}, uint64_t{15}, uint64_t{16}, uint64_t{17},
        uint64_t{31}, uint64_t{32}, uint64_t{1000}, uint64_t{123456789},
        uint64_t{1} << 40, (uint64_t{1} << 62) + 12345,
        uint64_t{0x7fffffffffffffff}}) {
    SCOPED_TRACE(v);
    const size_t i = LatencyHistogram::Index(v);
    ASSERT_LT(i, LatencyHistogram::kBuckets);
    EXPECT_LE(LatencyHistogram::Low(i), v);
    EXPECT_LT(v - LatencyHistogram::Low(i), LatencyHistogram::Width(i));
    // A bucket is at most 1/16 of its lower bound wide.
    if (v >= 16) {
      EXPECT_LE(LatencyHistogram::Width(i) * 16, LatencyHistogram::Low(i));
    }
  }
}

TEST(LatencyHistogram, BucketsAreContiguous) {
  for (size_t i = 0; i + 1 < LatencyHistogram::kBuckets; ++i) {
    ASSERT_EQ(LatencyHistogram::Low(i) + LatencyHistogram::Width(i),
              LatencyHistogram::Low(i + 1))
        << i;
  }
}

TEST(LatencyHistogram, PercentilesAreWithinOneSixteenth) {
  LatencyHistogram h;
  EXPECT_EQ(h.Percentile(50), absl::ZeroDuration());
  for (int i = 1; i <= 1000; ++i) h.Record(absl::Microseconds(i));
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.max(), absl::Microseconds(1000));
  for (auto [p, want] : {std::pair{50.0, 500}, {90.0, 900}, {99.0, 990}}) {
    SCOPED_TRACE(p);
    const double got = absl::ToDoubleMicroseconds(h.Percentile(p));
    EXPECT_NEAR(got, want, want / 16.0);
  }
  EXPECT_EQ(h.Percentile(100), absl::Microseconds(1000));  // clamped to max
}

TEST(LatencyHistogram, NegativeCountsAsZeroAndOneValueIsItsOwnPercentiles) {
  LatencyHistogram h;
  h.Record(-absl::Seconds(1));
  EXPECT_EQ(h.Percentile(99), absl::ZeroDuration());
  LatencyHistogram one;
  one.Record(absl::Milliseconds(3));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(one.Percentile(50)), 3.0, 3.0 / 16);
  EXPECT_LE(one.Percentile(50), one.max());
  EXPECT_EQ(one.max(), absl::Milliseconds(3));
}

}  // namespace
}  // namespace moonpool::transport::internal
