#include "moonpool/chaos/sim_random.h"

#include <cmath>

#include "absl/numeric/int128.h"

namespace moonpool::chaos {
namespace {

constexpr uint64_t Rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

SimRandom::SimRandom(uint64_t seed) {
  // splitmix64 never yields four zero words, the one state xoshiro cannot
  // leave.
  uint64_t sm = seed;
  for (uint64_t& word : s_) word = SplitMix64(sm);
}

uint64_t SimRandom::Next() {
  // xoshiro256** (Blackman and Vigna, 2018).
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

uint64_t SimRandom::Uniform(uint64_t n) {
  if (n == 0) return 0;
  // Lemire's multiply-shift with rejection: unbiased, and fixed by this
  // code rather than by a library's distribution.
  absl::uint128 m = absl::uint128(Next()) * n;
  uint64_t low = absl::Uint128Low64(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = absl::uint128(Next()) * n;
      low = absl::Uint128Low64(m);
    }
  }
  return absl::Uint128High64(m);
}

int64_t SimRandom::UniformInRange(int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span == UINT64_MAX) return static_cast<int64_t>(Next());
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + Uniform(span + 1));
}

double SimRandom::UnitDouble() {
  return static_cast<double>(Next() >> 11) * 0x1.0p-53;
}

bool SimRandom::Bernoulli(double p) {
  if (p <= 0) return false;
  if (p >= 1) return true;
  return UnitDouble() < p;
}

absl::Duration SimRandom::UniformDuration(absl::Duration lo,
                                          absl::Duration hi) {
  const int64_t lo_ns = absl::ToInt64Nanoseconds(lo);
  const int64_t hi_ns = absl::ToInt64Nanoseconds(hi);
  return absl::Nanoseconds(UniformInRange(lo_ns, hi_ns));
}

absl::Duration SimRandom::Exponential(absl::Duration mean, absl::Duration cap) {
  // 1 - u is in (0, 1], so the log is finite.
  const double u = 1.0 - UnitDouble();
  const double ns =
      -std::log(u) * static_cast<double>(absl::ToInt64Nanoseconds(mean));
  const double cap_ns = static_cast<double>(absl::ToInt64Nanoseconds(cap));
  return absl::Nanoseconds(static_cast<int64_t>(ns < cap_ns ? ns : cap_ns));
}

double SimRandom::LogUniform(double lo, double hi) {
  return std::exp(std::log(lo) + UnitDouble() * (std::log(hi) - std::log(lo)));
}

SimRandom SimRandom::Fork() { return SimRandom(Next()); }

}  // namespace moonpool::chaos
