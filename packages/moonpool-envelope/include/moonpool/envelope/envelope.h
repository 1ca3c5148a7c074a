// Envelope is the unit every layer of moonpool moves: a correlation id, a
// kind, a destination endpoint, an opaque payload, and for requests a time
// budget, for error replies a status code and message.
//
// Envelope owns its payload and message; EnvelopeView (envelope_view.h) is the
// same record borrowing them, which is how the wire decoder hands out an
// envelope read in place from its receive buffer. Both satisfy the
// EnvelopeLike concept (envelope_concepts.h), so code that only reads an
// envelope takes either.
//
// This package does no I/O and no serialization: moonpool-wire puts envelopes
// on the wire.
//
// Example:
//
//   moonpool::CorrelationIdGenerator ids;
//   moonpool::Envelope request =
//       moonpool::Envelope::Request(ids.Next(), moonpool::kDefaultEndpoint,
//                                   "ping", absl::Seconds(2));
//   moonpool::Envelope reply = moonpool::MakeReply(request, "pong");
//   moonpool::Envelope error =
//       moonpool::MakeErrorReply(request, absl::NotFoundError("no such key"));
//   absl::Status s = moonpool::ErrorStatus(error);  // NOT_FOUND: no such key
#ifndef MOONPOOL_ENVELOPE_ENVELOPE_H_
#define MOONPOOL_ENVELOPE_ENVELOPE_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope_concepts.h"
#include "moonpool/envelope/envelope_kind.h"

namespace moonpool {

// A plain record (every combination of field values is representable; what
// makes sense is said per field).
struct Envelope {
  // Chosen by the requester; a reply or error carries the request's id.
  // CorrelationId() for one-way messages.
  CorrelationId correlation_id;
  EnvelopeKind kind = EnvelopeKind::kRequest;
  // Destination token at the receiver; kDefaultEndpoint is its default queue.
  Endpoint endpoint = kDefaultEndpoint;
  std::string payload;
  // Requests only: the budget left for an answer when the request was sent.
  // absl::ZeroDuration() means none. Travels in whole microseconds.
  absl::Duration timeout = absl::ZeroDuration();
  // Error replies only: the handler's status code and message.
  absl::StatusCode error_code = absl::StatusCode::kOk;
  std::string error_message;
  // Requests only (protocol version 2): 0 asks for one reply; more asks for
  // a reply stream with this many bytes of credit (DESIGN.md section 5).
  uint64_t stream_credit = 0;
  // Requests only (protocol version 2, DESIGN.md section 5, "Exactly-once"):
  // the server keeps the outcome to send it again when the request is
  // resent with the same id; and every id of this sender below
  // `answered_below` is settled (invalid: nothing said).
  bool exactly_once = false;
  CorrelationId answered_below = CorrelationId();

  // A request with the given id, endpoint, payload and budget.
  static Envelope Request(CorrelationId id, Endpoint endpoint,
                          std::string payload,
                          absl::Duration timeout = absl::ZeroDuration());
  // A one-way message: no correlation id, no reply expected.
  static Envelope OneWay(Endpoint endpoint, std::string payload);

  // An owning copy of any envelope-like record (an EnvelopeView, say).
  template <EnvelopeLike E>
  static Envelope CopyOf(const E& e) {
    Envelope out;
    out.correlation_id = e.correlation_id;
    out.kind = e.kind;
    out.endpoint = e.endpoint;
    out.payload = std::string(absl::string_view(e.payload));
    out.timeout = e.timeout;
    out.error_code = e.error_code;
    out.error_message = std::string(absl::string_view(e.error_message));
    out.stream_credit = StreamCreditOf(e);
    out.exactly_once = ExactlyOnceOf(e);
    out.answered_below = AnsweredBelowOf(e);
    return out;
  }

  friend bool operator==(const Envelope&, const Envelope&) = default;
};

// The reply to `request`: same correlation id and endpoint, kind kReply.
template <EnvelopeLike E>
Envelope MakeReply(const E& request, std::string payload) {
  Envelope reply;
  reply.correlation_id = request.correlation_id;
  reply.kind = EnvelopeKind::kReply;
  reply.endpoint = request.endpoint;
  reply.payload = std::move(payload);
  return reply;
}

// The error reply to `request` carrying `status`. An OK status is a caller
// bug; it is sent as absl::StatusCode::kUnknown so that an error reply can
// never read as success.
template <EnvelopeLike E>
Envelope MakeErrorReply(const E& request, const absl::Status& status) {
  Envelope reply;
  reply.correlation_id = request.correlation_id;
  reply.kind = EnvelopeKind::kError;
  reply.endpoint = request.endpoint;
  reply.error_code = status.ok() ? absl::StatusCode::kUnknown : status.code();
  reply.error_message = std::string(status.message());
  return reply;
}

// The status an error reply carries: its code and message. kOk (the wire's
// "0 = unknown") reads as kUnknown. For any other kind, absl::OkStatus().
template <EnvelopeLike E>
[[nodiscard]] absl::Status ErrorStatus(const E& e) {
  if (e.kind != EnvelopeKind::kError) return absl::OkStatus();
  absl::StatusCode code = e.error_code == absl::StatusCode::kOk
                              ? absl::StatusCode::kUnknown
                              : e.error_code;
  return absl::Status(code, absl::string_view(e.error_message));
}

// True when `response` answers `request`: a reply or error with its id.
template <EnvelopeLike R, EnvelopeLike Q>
bool IsResponseTo(const R& response, const Q& request) {
  return IsResponseKind(response.kind) && request.correlation_id.valid() &&
         response.correlation_id == request.correlation_id;
}

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_ENVELOPE_H_
