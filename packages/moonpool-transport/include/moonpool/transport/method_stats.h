// MethodStats: the counters of one method a ServerTransport serves (Handle),
// read with ServerTransport::method_stats(). Plain numbers: counters only
// grow, gauges (marked) are the value now. A snapshot, not a live view.
//
// Latencies run from the request's receipt (so time waiting behind the
// method's concurrency limit counts) to its answer being handed to the
// connection (an answer that then waits for output room, as
// ReplyWhenWritable does, is counted when handed over); they cover answered
// requests only (replies and error replies, not rejections, drops or one-way
// messages). Percentiles come from a
// fixed-size log-linear histogram: within 1/16 (6.25%) of the true value,
// and never above latency_max, which is exact.
#ifndef MOONPOOL_TRANSPORT_METHOD_STATS_H_
#define MOONPOOL_TRANSPORT_METHOD_STATS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace moonpool::transport {

struct MethodStats {
  std::string name;       // "Service/Method"
  uint64_t requests = 0;  // requests received for it (rejected included)
  uint64_t one_way = 0;   // one-way messages received for it
  uint64_t replies = 0;   // answered OK (a reply stream: ended OK)
  uint64_t items = 0;     // reply stream items sent (HandleStream)
  uint64_t errors = 0;    // answered with an error Status (errors_by_code)
  absl::flat_hash_map<absl::StatusCode, uint64_t> errors_by_code;
  // Client cancels seen (protocol version 2), whether the request was still
  // queued (then dropped unanswered) or its handler ran (then its token
  // fired).
  uint64_t cancelled = 0;
  // Answered ResourceExhausted at once: max_concurrent handlers ran and
  // max_queued more waited (one-way messages past it are dropped, counted
  // here too).
  uint64_t rejected = 0;
  // Refused by an authorizer (ServerOptions::authorize, Authorize,
  // HandlerOptions::authorize) before its handler ran; one-way messages
  // refused are dropped, counted here too.
  uint64_t denied = 0;
  // Dropped unanswered while queued: the deadline had passed when a handler
  // slot freed (the client had given up), or the connection was gone.
  uint64_t expired = 0;
  uint64_t orphaned = 0;
  size_t running = 0;  // gauge: handlers running now
  size_t queued = 0;   // gauge: waiting for a handler slot
  absl::Duration latency_p50 = absl::ZeroDuration();
  absl::Duration latency_p90 = absl::ZeroDuration();
  absl::Duration latency_p99 = absl::ZeroDuration();
  absl::Duration latency_max = absl::ZeroDuration();
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_METHOD_STATS_H_
