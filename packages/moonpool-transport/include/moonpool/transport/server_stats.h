// ServerStats: the counters of a ServerTransport, read with
// ServerTransport::stats(). Plain numbers; counters only grow, gauges (marked)
// are the value now.
#ifndef MOONPOOL_TRANSPORT_SERVER_STATS_H_
#define MOONPOOL_TRANSPORT_SERVER_STATS_H_

#include <cstdint>

#include "moonpool/protocol/outcome_table.h"

namespace moonpool::transport {

struct ServerStats {
  uint64_t connections_accepted = 0;  // taken on (not refused)
  uint64_t connections_open = 0;      // gauge
  uint64_t connections_refused = 0;   // closed at once: max_connections
  uint64_t accept_errors = 0;         // accept(2) failed (out of fds, ...)
  // TLS (ServerOptions::tls): handshakes that succeeded, and those that
  // failed (certificate refused, timeout, not TLS, alert, reset); a failed
  // one is closed and counted nowhere else.
  uint64_t tls_handshakes = 0;
  uint64_t tls_handshake_failures = 0;
  uint64_t tls_handshaking = 0;  // gauge: accepted, handshake not yet done
  uint64_t requests_received = 0;
  uint64_t one_way_received = 0;
  uint64_t replies_sent = 0;        // Reply
  uint64_t error_replies_sent = 0;  // ReplyError
  // Requests whose deadline had passed when NextMessage would have handed
  // them out: dropped, the handler never saw them.
  uint64_t expired_dropped = 0;
  // Requests whose connection closed before a handler took them: dropped.
  uint64_t orphaned_dropped = 0;
  // Requests for an endpoint token nothing serves, answered Unimplemented,
  // and one-way messages for one, dropped (they take no answer).
  uint64_t unimplemented = 0;
  // Cancel frames received (protocol version 2) for requests not yet
  // answered; of those, requests still queued (the default queue or a
  // method's), dropped unanswered before any handler saw them.
  uint64_t cancels_received = 0;
  uint64_t cancelled_before_handler = 0;
  // Times a connection stopped being read because a bound was reached.
  uint64_t backpressure_pauses = 0;
  // Connections closed for the peer's fault (corrupt, malformed or oversized
  // frames, failed handshakes, unexpected frames, ping floods).
  uint64_t protocol_errors = 0;
  uint64_t keepalive_timeouts = 0;
  // Connections closed because a frame did not arrive whole within
  // ServerOptions::read_timeout (slowloris).
  uint64_t read_timeouts = 0;
  // Connections closed after ServerOptions::idle_timeout without requests.
  uint64_t idle_timeouts = 0;
  uint64_t bytes_in = 0;            // received
  uint64_t bytes_out = 0;           // taken by the kernel
  uint64_t requests_in_flight = 0;  // gauge: received, not yet answered
  uint64_t queued_messages = 0;     // gauge: waiting for NextMessage
  uint64_t queued_bytes = 0;        // gauge: their payload bytes
  uint64_t paused_connections = 0;  // gauge: not being read (backpressure)
  // Exactly-once requests: the outcome records, their duplicates and what
  // was forgotten (counters and gauges of protocol::OutcomeTable).
  protocol::OutcomeTableStats exactly_once;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SERVER_STATS_H_
