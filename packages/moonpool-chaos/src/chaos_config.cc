#include "moonpool/chaos/chaos_config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moonpool::chaos {

ChaosConfig ChaosConfig::Random(SimRandom& rng, bool swarm) {
  ChaosConfig c;
  // Each family draws its switch first, then its parameters, always in this
  // order and always drawing both, so a plan is a fixed function of the
  // seed whatever the switches say.
  auto on = [&] { return swarm ? rng.Bernoulli(0.5) : true; };

  const bool tail = on();
  c.latency.min =
      rng.UniformDuration(absl::Microseconds(10), absl::Microseconds(200));
  c.latency.typical =
      c.latency.min +
      rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(2));
  const double tail_p = rng.LogUniform(1e-3, 5e-2);
  c.latency.tail_mean =
      rng.UniformDuration(absl::Milliseconds(5), absl::Milliseconds(100));
  c.latency.tail_probability = tail ? tail_p : 0;

  const bool stall = on();
  const double stall_p = rng.LogUniform(1e-4, 1e-2);
  c.stall_probability = stall ? stall_p : 0;
  const bool clog = on();
  const double clog_p = rng.LogUniform(1e-4, 1e-2);
  c.clog_probability = clog ? clog_p : 0;
  c.stall_min =
      rng.UniformDuration(absl::Milliseconds(1), absl::Milliseconds(50));
  c.stall_max = c.stall_min +
                rng.UniformDuration(absl::Milliseconds(10), absl::Seconds(3));

  const bool reset = on();
  const double reset_p = rng.LogUniform(1e-4, 5e-3);
  c.reset_probability = reset ? reset_p : 0;
  const bool half = on();
  const double half_p = rng.LogUniform(1e-4, 2e-3);
  c.half_close_probability = half ? half_p : 0;

  const bool refuse = on();
  const double refuse_p = rng.LogUniform(1e-2, 0.3);
  c.connect_refused_probability = refuse ? refuse_p : 0;
  const bool hang = on();
  const double hang_p = rng.LogUniform(1e-2, 0.2);
  c.connect_hang_probability = hang ? hang_p : 0;

  const bool partial = on();
  const double partial_p = rng.LogUniform(1e-2, 0.5);
  c.partial_write_probability = partial ? partial_p : 0;
  const bool short_read = on();
  const double short_p = rng.LogUniform(1e-2, 0.5);
  c.short_read_probability = short_read ? short_p : 0;

  const bool flip = on();
  const double flip_p = rng.LogUniform(1e-4, 5e-3);
  c.bit_flip_probability = flip ? flip_p : 0;
  c.max_bit_flips = static_cast<int>(rng.UniformInRange(1, 32));

  // Small buffers make backpressure and queueing paths common.
  c.kernel_buffer_bytes =
      static_cast<size_t>(rng.UniformInRange(4 * 1024, 512 * 1024));

  // The resolver's families came later: they draw from a fork of a copy of
  // `rng`, so the plan above and what the caller draws from `rng` next are
  // what they were before, and a seed recorded earlier still replays.
  SimRandom copy = rng;
  SimRandom later = copy.Fork();
  const bool resolve_fail = swarm ? later.Bernoulli(0.5) : true;
  const double resolve_fail_p = later.LogUniform(1e-2, 0.3);
  c.resolve_failed_probability = resolve_fail ? resolve_fail_p : 0;
  const bool resolve_slow = swarm ? later.Bernoulli(0.5) : true;
  const double resolve_slow_p = later.LogUniform(1e-2, 0.3);
  c.resolve_slow_probability = resolve_slow ? resolve_slow_p : 0;
  c.resolve_slow_min =
      later.UniformDuration(absl::Milliseconds(10), absl::Milliseconds(500));
  c.resolve_slow_max =
      c.resolve_slow_min +
      later.UniformDuration(absl::Milliseconds(100), absl::Seconds(5));
  // TLS came later still: drawn after the resolver's, from the same fork,
  // so a plan's faults are what they were; a plan without TLS runs exactly
  // as before it existed. In either mode (it is not a fault family). A
  // quarter of the plans: a TLS seed costs many times a plaintext one (a
  // full handshake per connection, and faults make many connections), and
  // a quarter keeps the CI sweeps' time in bounds while 250 of 1,000 seeds
  // still run TLS under every fault.
  c.tls = later.Bernoulli(0.25);
  return c;
}

bool ChaosConfig::any_fault() const {
  return latency.tail_probability > 0 || stall_probability > 0 ||
         clog_probability > 0 || reset_probability > 0 ||
         half_close_probability > 0 || connect_refused_probability > 0 ||
         connect_hang_probability > 0 || partial_write_probability > 0 ||
         short_read_probability > 0 || bit_flip_probability > 0 ||
         resolve_failed_probability > 0 || resolve_slow_probability > 0;
}

std::string ChaosConfig::ToString() const {
  return absl::StrFormat(
      "latency=[%s,%s] tail=%g/%s stall=%g clog=%g stall_for=[%s,%s] "
      "reset=%g half_close=%g refuse=%g hang=%g partial_write=%g "
      "short_read=%g bit_flip=%g/%d kernel_buffer=%d resolve_failed=%g "
      "resolve_slow=%g resolve_slow_for=[%s,%s]%s",
      absl::FormatDuration(latency.min), absl::FormatDuration(latency.typical),
      latency.tail_probability, absl::FormatDuration(latency.tail_mean),
      stall_probability, clog_probability, absl::FormatDuration(stall_min),
      absl::FormatDuration(stall_max), reset_probability,
      half_close_probability, connect_refused_probability,
      connect_hang_probability, partial_write_probability,
      short_read_probability, bit_flip_probability, max_bit_flips,
      kernel_buffer_bytes, resolve_failed_probability, resolve_slow_probability,
      absl::FormatDuration(resolve_slow_min),
      absl::FormatDuration(resolve_slow_max), tls ? " tls" : "");
}

}  // namespace moonpool::chaos
