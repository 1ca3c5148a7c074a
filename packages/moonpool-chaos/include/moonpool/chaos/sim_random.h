// SimRandom is the one seeded random source of a simulation: xoshiro256**
// seeded through splitmix64, with its own mappings to integers in a range,
// probabilities, durations and exponential draws.
//
// It is hand-written on purpose. The standard engines are portable, but the
// standard distributions (std::uniform_int_distribution, ...) are not: each
// library may map engine output to values differently, so the same seed would
// replay differently under libstdc++ and libc++. Every mapping here is a few
// lines of integer arithmetic whose result is fixed by this file. The one
// floating-point step is Exponential's std::log, which is deterministic on
// one platform (glibc) but not promised across libms; see README.
//
// Not thread-safe; a simulation and its source live on one thread.
//
// Example:
//
//   moonpool::chaos::SimRandom rng(42);
//   if (rng.Bernoulli(0.01)) { ... }              // 1% of the time
//   absl::Duration d = rng.UniformDuration(absl::Milliseconds(1),
//                                          absl::Milliseconds(5));
#ifndef MOONPOOL_CHAOS_SIM_RANDOM_H_
#define MOONPOOL_CHAOS_SIM_RANDOM_H_

#include <array>
#include <cstdint>

#include "absl/time/time.h"

namespace moonpool::chaos {

class SimRandom {
 public:
  explicit SimRandom(uint64_t seed);

  // The next 64 raw bits.
  uint64_t Next();
  // Uniform in [0, n); 0 when n == 0. Unbiased (rejection sampling).
  uint64_t Uniform(uint64_t n);
  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  int64_t UniformInRange(int64_t lo, int64_t hi);
  // Uniform in [0, 1), 53 bits.
  double UnitDouble();
  // True with probability p. p <= 0 and p >= 1 draw no number: a fault that
  // is off costs nothing, and its check is not a hidden consumer of the
  // stream.
  bool Bernoulli(double p);
  // Uniform in [lo, hi] at nanosecond resolution. REQUIRES: lo <= hi.
  absl::Duration UniformDuration(absl::Duration lo, absl::Duration hi);
  // Exponentially distributed with the given mean, capped at `cap`.
  absl::Duration Exponential(absl::Duration mean, absl::Duration cap);
  // exp(uniform(log lo, log hi)): for rates that span orders of magnitude.
  // REQUIRES: 0 < lo <= hi.
  double LogUniform(double lo, double hi);

  // A new independent source derived from this one (for a child component
  // that must not perturb this stream).
  SimRandom Fork();

 private:
  std::array<uint64_t, 4> s_;
};

// One splitmix64 step: the seed expander, also a good 64-bit mixer.
uint64_t SplitMix64(uint64_t& state);

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SIM_RANDOM_H_
