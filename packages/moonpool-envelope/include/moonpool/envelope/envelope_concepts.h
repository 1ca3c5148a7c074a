// The concepts that let other envelope types plug into moonpool: the C++ form
// of moonpool's envelope traits.
//
// EnvelopeLike is what the layers above need to read an envelope: the seven
// fields of DESIGN.md section 5, as public data members. Envelope (owning)
// and EnvelopeView (borrowing) satisfy it; so can an application's own
// record, which the wire encoder then writes without a conversion.
// OwningEnvelope adds what the layers need to keep one: it can be made from
// any EnvelopeLike.
//
// These are compile-time contracts only: nothing here allocates or runs.
#ifndef MOONPOOL_ENVELOPE_ENVELOPE_CONCEPTS_H_
#define MOONPOOL_ENVELOPE_ENVELOPE_CONCEPTS_H_

#include <concepts>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope_kind.h"

namespace moonpool {

// A record with the envelope's fields, readable through a const reference.
template <typename E>
concept EnvelopeLike = requires(const E& e) {
  { e.correlation_id } -> std::convertible_to<CorrelationId>;
  { e.kind } -> std::convertible_to<EnvelopeKind>;
  { e.endpoint } -> std::convertible_to<Endpoint>;
  { e.payload } -> std::convertible_to<absl::string_view>;
  { e.timeout } -> std::convertible_to<absl::Duration>;
  { e.error_code } -> std::convertible_to<absl::StatusCode>;
  { e.error_message } -> std::convertible_to<absl::string_view>;
};

// A record's stream credit (protocol version 2): its `stream_credit` field
// when it has one, else 0 (one reply). Optional, so that a record written
// for version 1 still plugs in.
template <EnvelopeLike E>
constexpr uint64_t StreamCreditOf(const E& e) {
  if constexpr (requires {
                  { e.stream_credit } -> std::convertible_to<uint64_t>;
                }) {
    return e.stream_credit;
  } else {
    return 0;
  }
}

// A record's exactly-once flag and settled mark (protocol version 2),
// optional in the same way: false and CorrelationId() without the fields.
template <EnvelopeLike E>
constexpr bool ExactlyOnceOf(const E& e) {
  if constexpr (requires {
                  { e.exactly_once } -> std::convertible_to<bool>;
                }) {
    return e.exactly_once;
  } else {
    return false;
  }
}

template <EnvelopeLike E>
constexpr CorrelationId AnsweredBelowOf(const E& e) {
  if constexpr (requires {
                  { e.answered_below } -> std::convertible_to<CorrelationId>;
                }) {
    return e.answered_below;
  } else {
    return CorrelationId();
  }
}

// An EnvelopeLike that owns its bytes and can be made from any EnvelopeLike
// (through a static CopyOf), so a layer can keep it past a borrowed view.
template <typename E>
concept OwningEnvelope = EnvelopeLike<E> && std::movable<E> &&
    requires(const E& other) {
  { E::CopyOf(other) } -> std::same_as<E>;
};

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_ENVELOPE_CONCEPTS_H_
