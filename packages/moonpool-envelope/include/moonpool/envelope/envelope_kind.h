// EnvelopeKind says what an envelope is: a request that expects an answer,
// its reply, an error reply, or a one-way message that expects none.
//
// The numeric values are the wire values of the `Envelope.Kind` enum of
// moonpool/wire/frame.capnp (DESIGN.md section 5) and must not change.
#ifndef MOONPOOL_ENVELOPE_ENVELOPE_KIND_H_
#define MOONPOOL_ENVELOPE_ENVELOPE_KIND_H_

#include <cstdint>
#include <ostream>

#include "absl/strings/string_view.h"

namespace moonpool {

enum class EnvelopeKind : uint16_t {
  kRequest = 0,
  kReply = 1,
  kError = 2,
  kOneWay = 3,
};

// "request", "reply", "error" or "one-way"; "unknown" for any other value.
absl::string_view EnvelopeKindName(EnvelopeKind kind);

// True for the kinds that answer a request: kReply and kError.
constexpr bool IsResponseKind(EnvelopeKind kind) {
  return kind == EnvelopeKind::kReply || kind == EnvelopeKind::kError;
}

inline std::ostream& operator<<(std::ostream& os, EnvelopeKind kind) {
  return os << EnvelopeKindName(kind);
}

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_ENVELOPE_KIND_H_
