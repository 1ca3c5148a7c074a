// Counters of one Connection, readable at any time through
// Connection::stats(). Plain numbers; a transport sums them over its
// connections.
#ifndef MOONPOOL_PROTOCOL_CONNECTION_STATS_H_
#define MOONPOOL_PROTOCOL_CONNECTION_STATS_H_

#include <cstdint>

namespace moonpool::protocol {

// Why a connection was closed for the peer's fault. A connection closes on
// its first protocol error, so per connection at most one is non-zero.
struct ProtocolErrors {
  uint64_t corrupt_frames = 0;      // header check or checksum (DataLoss)
  uint64_t malformed_frames = 0;    // bad length or body (InvalidArgument)
  uint64_t oversized_frames = 0;    // over max_frame_bytes
  uint64_t handshake_failures = 0;  // not a Hello first, magic, version
  uint64_t unexpected_frames = 0;   // e.g. a request id that went backwards
  uint64_t ping_floods = 0;         // pinged faster than it read pongs
  uint64_t credit_overruns = 0;     // sent a stream item past its credit
};

struct ConnectionStats {
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t bytes_in = 0;   // received
  uint64_t bytes_out = 0;  // taken by the driver (ConsumeOutput)
  uint64_t requests_sent = 0;
  uint64_t requests_in_flight = 0;  // sent, no outcome yet
  uint64_t requests_received = 0;
  uint64_t replies_received = 0;    // replies and error replies matched
  uint64_t replies_dropped = 0;     // for an id not (or no longer) pending
  uint64_t requests_refused = 0;    // arrived above our Goodbye's last id
  uint64_t requests_abandoned = 0;  // forgotten unanswered (AbandonRequest)
  // Cancellation (protocol version 2).
  uint64_t requests_cancelled = 0;  // forgotten by CancelRequest
  uint64_t cancels_sent = 0;        // cancel frames encoded
  uint64_t cancels_received = 0;    // delivered as CancelReceived
  // Cancel frames with no effect: on a version 1 connection, or for an id
  // that is unknown, answered, or already cancelled.
  uint64_t cancels_ignored = 0;
  // Reply streams (protocol version 2).
  uint64_t stream_items_sent = 0;
  uint64_t stream_items_received = 0;  // for a pending stream (not dropped)
  uint64_t credits_sent = 0;           // credit frames encoded
  uint64_t credits_received = 0;       // credit frames applied to a stream
  // Credit frames with no effect: on a version 1 connection, or for a
  // stream that has ended (the credit crossed its end).
  uint64_t credits_ignored = 0;
  uint64_t pings_sent = 0;
  uint64_t pings_received = 0;
  uint64_t keepalive_timeouts = 0;
  ProtocolErrors protocol_errors;
};

}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_CONNECTION_STATS_H_
