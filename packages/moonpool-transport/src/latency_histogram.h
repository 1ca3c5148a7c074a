// LatencyHistogram: a fixed-size log-linear histogram of durations, for the
// per-method latency percentiles (method_stats.h). Private to the transport.
//
// Values are whole nanoseconds. Below 16 each value has its bucket; above,
// every power of two [2^e, 2^(e+1)) is cut into 16 equal buckets, so a
// bucket is at most 1/16 of its lower bound wide (HdrHistogram's layout with
// 4 bits of precision). 976 counters cover every int64 value: 7.6 KiB, no
// allocation after construction, O(1) Record. Percentiles report the
// bucket's midpoint, clamped to the exact maximum (which the 100th
// percentile is).
//
// Hand-written because Abseil 20220623 has no histogram and DESIGN.md
// section 4 admits no other library for it.
#ifndef MOONPOOL_TRANSPORT_SRC_LATENCY_HISTOGRAM_H_
#define MOONPOOL_TRANSPORT_SRC_LATENCY_HISTOGRAM_H_

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace moonpool::transport::internal {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  // Exact buckets [0, kSub), then kSub per power of two from 2^kSubBits up
  // to 2^63.
  static constexpr size_t kBuckets = kSub + (63 - kSubBits + 1) * kSub;

  // Negative durations count as zero; infinite ones as the largest value.
  void Record(absl::Duration d) {
    const int64_t ns =
        d < absl::ZeroDuration() ? 0 : absl::ToInt64Nanoseconds(d);
    const uint64_t v = static_cast<uint64_t>(ns);
    ++counts_[Index(v)];
    ++count_;
    if (v > max_) max_ = v;
  }

  uint64_t count() const { return count_; }
  absl::Duration max() const {
    return absl::Nanoseconds(static_cast<int64_t>(max_));
  }

  // The smallest recorded value at or above which lie (100 - p)% of the
  // values, to within a bucket; zero when nothing was recorded.
  // REQUIRES: 0 < p <= 100.
  absl::Duration Percentile(double p) const {
    if (count_ == 0) return absl::ZeroDuration();
    // The rank of the value wanted, 1-based: ceil(p% of count).
    uint64_t rank =
        static_cast<uint64_t>(p / 100.0 * static_cast<double>(count_));
    if (static_cast<double>(rank) < p / 100.0 * static_cast<double>(count_)) {
      ++rank;
    }
    if (rank == 0) rank = 1;
    if (rank >= count_) return max();  // the top value is known exactly
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        uint64_t mid = Low(i) + Width(i) / 2;
        if (mid > max_) mid = max_;
        return absl::Nanoseconds(static_cast<int64_t>(mid));
      }
    }
    return max();
  }

  static size_t Index(uint64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    const int e = std::bit_width(v) - 1;  // >= kSubBits
    const uint64_t sub = (v >> (e - kSubBits)) & (kSub - 1);
    return static_cast<size_t>((e - kSubBits + 1) * kSub + sub);
  }
  static uint64_t Low(size_t i) {
    if (i < kSub) return i;
    const int e = static_cast<int>(i / kSub) + kSubBits - 1;
    const uint64_t sub = i % kSub;
    return (kSub + sub) << (e - kSubBits);
  }
  static uint64_t Width(size_t i) {
    if (i < kSub) return 1;
    const int e = static_cast<int>(i / kSub) + kSubBits - 1;
    return uint64_t{1} << (e - kSubBits);
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

}  // namespace moonpool::transport::internal

#endif  // MOONPOOL_TRANSPORT_SRC_LATENCY_HISTOGRAM_H_
