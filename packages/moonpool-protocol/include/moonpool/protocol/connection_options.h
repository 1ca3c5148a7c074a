// The settings of one protocol Connection (connection.h), and of one request
// sent on it. Every bound DESIGN.md section 6 asks for is here, with its
// default; nothing is hard-coded elsewhere.
#ifndef MOONPOOL_PROTOCOL_CONNECTION_OPTIONS_H_
#define MOONPOOL_PROTOCOL_CONNECTION_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/protocol/always.h"
#include "moonpool/protocol/buggify.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::protocol {

// The client connects and speaks first (its Hello); the server answers.
// After the handshake both sides may send requests, replies and one-way
// messages alike.
enum class Role { kClient, kServer };

struct ConnectionOptions {
  Role role = Role::kClient;
  // Sent in this side's Hello, for the peer's diagnostics.
  std::string peer_name;
  // Random per transport instance, never 0 (sent in Hello).
  uint64_t incarnation = 1;
  // The protocol versions this side speaks, [min, max] (DESIGN.md section 5,
  // "Version 2"; negotiation in connection.h). A side that speaks only
  // version 1 sets max = 1: its Hello is then byte for byte a version 1
  // Hello, and it reads the peer's as version 1 does. Tests set other ranges
  // to try version mixes.
  // REQUIRES: 1 <= min_protocol_version <= max_protocol_version <=
  // wire::kLatestProtocolVersion.
  uint32_t min_protocol_version = 1;
  uint32_t max_protocol_version = 2;
  // Where request ids come from. A client Peer owns one generator and passes
  // it to each connection it makes, so that ids are never reused across
  // reconnects. nullptr: the connection uses its own, starting at 1.
  // REQUIRES: outlives the connection.
  CorrelationIdGenerator* ids = nullptr;

  // Keepalive (DESIGN.md section 5): after `keepalive_interval` with no byte
  // received, send a ping (and another every interval while silence lasts);
  // after `keepalive_timeout` with no byte received, the peer is gone.
  absl::Duration keepalive_interval = absl::Seconds(1);
  absl::Duration keepalive_timeout = absl::Seconds(4);
  // The deadline of a request sent without one.
  absl::Duration default_request_timeout = absl::Seconds(30);

  // Bounds. Past them a command returns ResourceExhausted at once.
  // Requests sent and not yet answered.
  size_t max_pending_requests = 65536;
  // Bytes encoded and not yet taken by the driver (ConsumeOutput).
  size_t max_output_bytes = size_t{32} << 20;
  // Largest frame body sent or accepted.
  size_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  // Pongs owed while the output has not drained: a peer that pings faster
  // than it reads is flooding, and is disconnected.
  size_t max_queued_pongs = 64;

  // Whether a Buggify site of the connection takes its rare path
  // (buggify.h lists them). Empty: never. The driver passes its Loop's
  // decision (driver::BuggifyFunction(loop)), which fires only in a
  // simulation that asks for it.
  BuggifyFn buggify;
  // Where the connection reports its run-time invariants (always.h). Empty:
  // nowhere. The driver passes its Loop's (driver::AlwaysFunction(loop)).
  AlwaysFn always;
};

struct RequestOptions {
  // When the caller gives up, on this side's clock. InfiniteFuture() means
  // now + ConnectionOptions::default_request_timeout: every request has one.
  absl::Time deadline = absl::InfiniteFuture();
  // Safe to process twice. Carried into RequestFailed so that the layer above
  // can send it again when the connection died after writing it.
  bool idempotent = false;
  Endpoint endpoint = kDefaultEndpoint;
  // 0: one reply. More: a reply stream (DESIGN.md section 5, "Reply
  // streams") with this many bytes of credit: the peer may send items while
  // the payload bytes received and not granted back (GrantCredit) are below
  // it. A plain reply is a stream of one, so a version 1 peer, which ignores
  // the field, still answers correctly.
  uint64_t stream_credit = 0;
  // Version 2 (DESIGN.md section 5, "Exactly-once"): ask the server to keep
  // the outcome, keyed by this side's incarnation and the request's id, so
  // that the request can be sent again with the same id after a connection
  // loss and run at most once. Needs the server's Hello: SendRequest refuses
  // it before the handshake. On a version 1 connection it is sent as a plain
  // request (version 1 has no such field).
  bool exactly_once = false;
  // Version 2: every id of this side below it is settled, so the server may
  // drop their records. Invalid (the default): nothing said.
  CorrelationId answered_below = CorrelationId();
  // Invalid (the default): the next id of the generator. Valid: a resend,
  // with the id it was first sent with. It must be above every id sent on
  // this connection (the peer requires increasing ids: InvalidArgument
  // otherwise). REQUIRES: it was handed out by the connection's generator
  // (ConnectionOptions::ids), so that the ids the generator hands out next
  // are above it.
  CorrelationId id = CorrelationId();
};

}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_CONNECTION_OPTIONS_H_
