// EnvelopeView is an Envelope (envelope.h) that borrows its payload and error
// message instead of owning them.
//
// The wire decoder returns one for every envelope it reads in place: its
// string views point into the decoder's receive buffer and are valid only
// until the decoder is next fed or asked for a frame (moonpool-wire states
// the exact rule). Copy what must live longer with Envelope::CopyOf.
#ifndef MOONPOOL_ENVELOPE_ENVELOPE_VIEW_H_
#define MOONPOOL_ENVELOPE_ENVELOPE_VIEW_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/envelope/envelope_kind.h"

namespace moonpool {

struct EnvelopeView {
  CorrelationId correlation_id;
  EnvelopeKind kind = EnvelopeKind::kRequest;
  Endpoint endpoint = kDefaultEndpoint;
  absl::string_view payload;
  absl::Duration timeout = absl::ZeroDuration();
  absl::StatusCode error_code = absl::StatusCode::kOk;
  absl::string_view error_message;
  // Requests only: 0 = one reply; > 0 = a reply stream with this credit.
  uint64_t stream_credit = 0;
  // Requests only: keep the outcome; every id below `answered_below` is
  // settled (Envelope has the details).
  bool exactly_once = false;
  CorrelationId answered_below = CorrelationId();

  // A view of `e`, valid while `e` is alive and unchanged.
  static EnvelopeView Of(const Envelope& e) {
    return EnvelopeView{e.correlation_id, e.kind,          e.endpoint,
                        e.payload,        e.timeout,       e.error_code,
                        e.error_message,  e.stream_credit, e.exactly_once,
                        e.answered_below};
  }

  friend bool operator==(const EnvelopeView&, const EnvelopeView&) = default;
};

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_ENVELOPE_VIEW_H_
