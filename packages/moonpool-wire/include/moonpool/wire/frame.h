// The five kinds of frame of protocol version 1 as plain C++ values, which
// FrameEncoder writes and FrameDecoder reads; and the protocol constants.
//
// The schema (moonpool/wire/frame.capnp, generated as
// <moonpool/wire/frame.capnp.h>, namespace moonpool::wire::schema) is the
// normative form; these records are its field-for-field image, so that the
// layers above never touch Cap'n Proto builders or readers. String views and
// an EnvelopeView in a decoded frame borrow the decoder's buffer (see
// frame_decoder.h for how long).
#ifndef MOONPOOL_WIRE_FRAME_H_
#define MOONPOOL_WIRE_FRAME_H_

#include <cstdint>
#include <variant>

#include "absl/strings/string_view.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/envelope_view.h"

namespace moonpool::wire {

// "MOONPOOL" in ASCII, big-end first.
inline constexpr uint64_t kHelloMagic = 0x4D4F4F4E504F4F4C;
inline constexpr uint32_t kProtocolVersion = 1;

struct Hello {
  uint64_t magic = kHelloMagic;
  uint32_t protocol_version = kProtocolVersion;
  absl::string_view peer_name;  // diagnostics only
  uint64_t incarnation = 0;     // random per transport instance, never 0
  friend bool operator==(const Hello&, const Hello&) = default;
};

struct Ping {
  uint64_t nonce = 0;
  friend bool operator==(const Ping&, const Ping&) = default;
};

struct Pong {
  uint64_t nonce = 0;  // the nonce of the ping it answers
  friend bool operator==(const Pong&, const Pong&) = default;
};

struct Goodbye {
  // Requests above this id were not and will not be processed.
  CorrelationId last_correlation_id;
  absl::string_view reason;
  friend bool operator==(const Goodbye&, const Goodbye&) = default;
};

// One decoded frame: exactly one of the five kinds. The alternatives are in
// the order of the schema's union, so index() is the union's discriminant.
using FrameValue = std::variant<Hello, EnvelopeView, Ping, Pong, Goodbye>;

// "hello", "envelope", "ping", "pong" or "goodbye".
absl::string_view FrameKindName(const FrameValue& frame);

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_FRAME_H_
