#include "moonpool/envelope/envelope.h"

#include <string>
#include <utility>

#include "moonpool/envelope/envelope_kind.h"

namespace moonpool {

absl::string_view EnvelopeKindName(EnvelopeKind kind) {
  switch (kind) {
    case EnvelopeKind::kRequest:
      return "request";
    case EnvelopeKind::kReply:
      return "reply";
    case EnvelopeKind::kError:
      return "error";
    case EnvelopeKind::kOneWay:
      return "one-way";
    case EnvelopeKind::kStreamItem:
      return "stream-item";
    case EnvelopeKind::kStreamEnd:
      return "stream-end";
  }
  return "unknown";
}

Envelope Envelope::Request(CorrelationId id, Endpoint endpoint,
                           std::string payload, absl::Duration timeout) {
  Envelope e;
  e.correlation_id = id;
  e.kind = EnvelopeKind::kRequest;
  e.endpoint = endpoint;
  e.payload = std::move(payload);
  e.timeout = timeout;
  return e;
}

Envelope Envelope::OneWay(Endpoint endpoint, std::string payload) {
  Envelope e;
  e.kind = EnvelopeKind::kOneWay;
  e.endpoint = endpoint;
  e.payload = std::move(payload);
  return e;
}

}  // namespace moonpool
