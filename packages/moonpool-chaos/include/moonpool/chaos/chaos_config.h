// ChaosConfig is the fault plan of a simulated network: which faults SimLoop
// injects and how often. A plain struct; every fault is off by default, so
// `ChaosConfig{}` is a well-behaved network with a small fixed latency.
//
// Probabilities are per opportunity, named in each field: per segment put on
// the wire, per write, per read delivery, per connect. Durations are virtual
// time. `Random(rng)` draws a whole plan from a seed; in swarm mode (the
// default) it first switches each fault family on or off (half the time
// each), so that across many seeds rare combinations are reached and no one
// family drowns out the others (Groce et al., "Swarm Testing", ISSTA 2012).
//
// Example:
//
//   ChaosConfig c;                        // no faults
//   c.reset_probability = 0.001;          // one segment in a thousand resets
//   SimRandom rng(seed);
//   ChaosConfig r = ChaosConfig::Random(rng);   // drawn from the seed
#ifndef MOONPOOL_CHAOS_CHAOS_CONFIG_H_
#define MOONPOOL_CHAOS_CHAOS_CONFIG_H_

#include <cstddef>
#include <string>

#include "absl/time/time.h"
#include "moonpool/chaos/sim_random.h"

namespace moonpool::chaos {

// One-way latency of each segment: uniform in [min, typical], and with
// probability tail_probability an exponential extra of mean tail_mean
// (capped at max): mostly small, with a long tail.
struct LatencyConfig {
  absl::Duration min = absl::Microseconds(50);
  absl::Duration typical = absl::Microseconds(50);
  double tail_probability = 0;
  absl::Duration tail_mean = absl::Milliseconds(20);
  absl::Duration max = absl::Seconds(2);
};

struct ChaosConfig {
  LatencyConfig latency = {};

  // Stalls: no byte moves in the chosen direction(s) for a duration drawn
  // from [stall_min, stall_max]; then everything held is released in order.
  // A stall is not a close: writes keep succeeding into the bounded buffer.
  // Per segment put on the wire. stall_probability holds both directions
  // (a cut); clog_probability holds one (the segment's).
  double stall_probability = 0;
  double clog_probability = 0;
  absl::Duration stall_min = absl::Milliseconds(10);
  absl::Duration stall_max = absl::Seconds(3);

  // Per segment: the connection is reset; both ends see Unavailable.
  double reset_probability = 0;
  // Per segment: the segment's direction is shut as if its writer had died
  // on that half: the writer's writes fail (broken pipe), the reader sees
  // end of stream after what was already sent. The other direction goes on.
  double half_close_probability = 0;

  // Per connect: refused (Unavailable after a round trip), or no answer at
  // all until the caller gives up (its own timeout).
  double connect_refused_probability = 0;
  double connect_hang_probability = 0;

  // Per write: the kernel takes only a random prefix of what it could take.
  double partial_write_probability = 0;
  // Per read delivery: only a random prefix of what is available.
  double short_read_probability = 0;

  // Per segment: one to max_bit_flips bits of it flipped in transit (the
  // wire checksums must catch it). Recorded, so the integrity checker
  // accounts for it.
  double bit_flip_probability = 0;
  int max_bit_flips = 8;

  // Per host-name lookup (Loop::Resolve of a name, not of a literal): the
  // lookup fails with Unavailable, as when no name server answers
  // (EAI_AGAIN); or it is slow, answered after a duration drawn from
  // [resolve_slow_min, resolve_slow_max] rather than one round trip.
  double resolve_failed_probability = 0;
  double resolve_slow_probability = 0;
  absl::Duration resolve_slow_min = absl::Milliseconds(200);
  absl::Duration resolve_slow_max = absl::Seconds(10);

  // Bytes one direction holds in the "kernel" (the writer's send buffer plus
  // the reader's receive buffer): Write takes at most this much that is not
  // yet read; the rest waits in the stream's own queue.
  size_t kernel_buffer_bytes = 256 * 1024;

  // Not a fault: whether the workloads' transports speak mutual TLS
  // (driver/tls_stream.h) over the simulated network, with certificates
  // made from the seed (sim_certificates.h). A switch of the plan so that a
  // swarm covers both, a plan file can force it (tls=true), and a failing
  // seed's plan says which it ran. SimLoop itself ignores it; FaultyLoop
  // too. Random() turns it on in a quarter of the plans.
  bool tls = false;

  // No faults at all (the default).
  static ChaosConfig None() { return ChaosConfig{}; }
  // A plan drawn from `rng`; with `swarm`, each family is on or off per
  // draw, otherwise every family is on.
  static ChaosConfig Random(SimRandom& rng, bool swarm = true);

  // True if any fault probability is non-zero (tls is not a fault).
  bool any_fault() const;
  // "latency=[50us,500us] tail=0.01/20ms stall=0.001 ..." (not load bearing).
  std::string ToString() const;
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_CHAOS_CONFIG_H_
