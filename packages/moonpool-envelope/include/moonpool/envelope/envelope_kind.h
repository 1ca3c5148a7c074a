// EnvelopeKind says what an envelope is: a request that expects an answer,
// its reply, an error reply, or a one-way message that expects none; and
// (protocol version 2) an item of a reply stream or the stream's end.
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
  // Version 2 (DESIGN.md section 5, "Reply streams").
  kStreamItem = 4,
  kStreamEnd = 5,
};

// The highest kind with a wire value.
inline constexpr EnvelopeKind kLastEnvelopeKind = EnvelopeKind::kStreamEnd;

// "request", "reply", "error", "one-way", "stream-item" or "stream-end";
// "unknown" for any other value.
absl::string_view EnvelopeKindName(EnvelopeKind kind);

// True for the kinds that end the answer to a request: kReply, kError and
// kStreamEnd (a stream item answers too, but is not the end).
constexpr bool IsResponseKind(EnvelopeKind kind) {
  return kind == EnvelopeKind::kReply || kind == EnvelopeKind::kError ||
         kind == EnvelopeKind::kStreamEnd;
}

inline std::ostream& operator<<(std::ostream& os, EnvelopeKind kind) {
  return os << EnvelopeKindName(kind);
}

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_ENVELOPE_KIND_H_
