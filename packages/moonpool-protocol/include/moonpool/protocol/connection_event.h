// What a Connection (connection.h) tells its driver, one event at a time from
// Connection::NextEvent().
//
// Views (payloads, names, reasons) borrow the connection's receive buffer:
// they are valid until the next non-const call on the connection. Copy what
// must outlive that.
//
// Order of events on one connection, as a numbered chart:
//   1. HandshakeDone, once, before any event that carries a peer's envelope;
//   2. any number of RequestReceived, OneWayReceived, ReplyReceived,
//      RequestFailed, CancelReceived, StreamItemReceived and CreditReceived,
//      in the order their causes happened; a CancelReceived for an id comes
//      after that id's RequestReceived, at most once, and only while the
//      request awaits its answer; StreamItemReceived for a request comes
//      only before its ReplyReceived or RequestFailed, in the order sent;
//   3. at most one GoodbyeReceived;
//   4. exactly one Closed, last. Every request sent on the connection has had
//      exactly one ReplyReceived or RequestFailed before it, except those
//      this side cancelled (Connection::CancelRequest), which have none.
#ifndef MOONPOOL_PROTOCOL_CONNECTION_EVENT_H_
#define MOONPOOL_PROTOCOL_CONNECTION_EVENT_H_

#include <cstdint>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/frame.h"

namespace moonpool::protocol {

// The peer's Hello was accepted; the connection is open.
struct HandshakeDone {
  wire::Hello peer;
  // The version the two sides agreed on (Connection::version()).
  uint32_t version = 0;
};

// The peer asks for an answer: call SendReply or SendErrorReply with its id
// (or, for a stream, SendStreamItem while StreamWritable, then
// SendStreamEnd or SendErrorReply).
struct RequestReceived {
  EnvelopeView request;
  // The peer's budget as a deadline on this side's clock; InfiniteFuture()
  // when the peer sent none.
  absl::Time deadline;
  // Version 2: > 0 when the peer accepts a reply stream with this many
  // bytes of credit; 0 for one reply (always 0 on a version 1 connection).
  uint64_t stream_credit = 0;
  // Version 2: the peer asks this side to keep the outcome (exactly-once),
  // and says every id of its below `answered_below` is settled. false and
  // invalid on a version 1 connection.
  bool exactly_once = false;
  CorrelationId answered_below = CorrelationId();
};

struct OneWayReceived {
  EnvelopeView message;
};

// The answer to a request this side sent: OK with the payload for a reply,
// or the handler's status (code and message) for an error reply. For a
// stream request it is the stream's end: a plain reply is its last item
// (a stream of one), a streamEnd (stream_end true) carries a last item only
// when its payload is not empty, and an error reply ends it with the
// handler's status.
struct ReplyReceived {
  CorrelationId id;
  absl::Status status;
  absl::string_view payload;
  bool stream_end = false;
};

// How far a failed request got: what decides whether sending it again is
// safe.
enum class Delivery {
  // Its bytes never left this side (the driver had not taken all of them).
  kNotSent,
  // The peer said (Goodbye, or a failed handshake) it was not processed.
  kNotProcessed,
  // It was written on a connection that then failed: it may have been
  // processed.
  kMaybeDelivered,
};

// A request this side sent ended without an answer. `status` is one of:
//   DeadlineExceeded    its deadline passed (delivery tells how far it got);
//   Unavailable         the connection closed before it was sent, or the
//                       peer said goodbye before processing it;
//   Aborted             the connection died after it was written ("maybe
//                       delivered");
//   FailedPrecondition  the handshake failed (incompatible peer).
struct RequestFailed {
  CorrelationId id;
  absl::Status status;
  Delivery delivery;
  bool idempotent;
  // It was written with exactlyOnce on a version 2 connection: the server
  // was asked to keep its outcome, so it may be sent again with the same id
  // to a server with the same incarnation (DESIGN.md section 5).
  bool exactly_once = false;
};

// True when the request may be sent again on another connection without
// risking that it is processed twice.
inline bool SafeToRetry(const RequestFailed& f) {
  return f.delivery != Delivery::kMaybeDelivered || f.idempotent;
}

// The peer is going away: it answers its requests up to and including
// `last_correlation_id`; this side's requests above it have failed with
// Delivery::kNotProcessed. Send no new requests on this connection.
struct GoodbyeReceived {
  CorrelationId last_correlation_id;
  absl::string_view reason;
};

// Version 2: the peer gave up on request `id`, which this side received and
// has not answered. The request still awaits an answer: answer it (the
// requester drops what it gets) or forget it with AbandonRequest; either way
// it need not be worked on any longer.
struct CancelReceived {
  CorrelationId id;
};

// Version 2: an item of the reply stream of request `id`, which this side
// sent with stream credit and which is still pending. Grant its bytes back
// (Connection::GrantCredit) as the application consumes it.
struct StreamItemReceived {
  CorrelationId id;
  absl::string_view payload;
};

// Version 2: the peer granted `bytes` of credit back to the reply stream of
// its request `id`, which this side is answering: it may be writable again
// (Connection::StreamWritable).
struct CreditReceived {
  CorrelationId id;
  uint64_t bytes = 0;
};

// The connection is over: OK after a graceful goodbye, else why. The driver
// closes the socket if it has not.
struct Closed {
  absl::Status status;
};

using Event =
    std::variant<HandshakeDone, RequestReceived, OneWayReceived, ReplyReceived,
                 RequestFailed, GoodbyeReceived, Closed, CancelReceived,
                 StreamItemReceived, CreditReceived>;

}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_CONNECTION_EVENT_H_
