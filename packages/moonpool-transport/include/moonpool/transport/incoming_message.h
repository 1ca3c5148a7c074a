// IncomingMessage is one request or one-way message a ServerTransport
// received, as NextMessage hands it out: the envelope (an owning copy: its
// payload is the caller's buffer now), where it came from, and until when its
// sender waits for an answer.
//
// Answer a request with ServerTransport::Reply or ReplyError, passing the
// message back: they route by `connection_id`. A one-way message
// (envelope.kind == EnvelopeKind::kOneWay) takes no answer.
#ifndef MOONPOOL_TRANSPORT_INCOMING_MESSAGE_H_
#define MOONPOOL_TRANSPORT_INCOMING_MESSAGE_H_

#include <cstdint>

#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/envelope/envelope.h"

namespace moonpool::transport {

struct IncomingMessage {
  Envelope envelope;
  // The accepted connection it arrived on; ids are never reused within one
  // ServerTransport.
  uint64_t connection_id = 0;
  driver::Address peer_address;
  // The sender's budget on this side's clock; InfiniteFuture() for a one-way
  // message or a request that carried none.
  absl::Time deadline = absl::InfiniteFuture();
  // The Hello incarnation of the client that sent it: with the correlation
  // id it names the request (an exactly-once request's record is keyed so).
  uint64_t client_incarnation = 0;

  bool is_request() const { return envelope.kind == EnvelopeKind::kRequest; }
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_INCOMING_MESSAGE_H_
