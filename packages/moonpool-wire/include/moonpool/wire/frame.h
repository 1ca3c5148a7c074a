// The kinds of frame of protocol versions 1 and 2 as plain C++ values, which
// FrameEncoder writes and FrameDecoder reads; and the protocol constants.
//
// Version 1 has five kinds (hello, envelope, ping, pong, goodbye); version 2
// adds cancel, credit, the Hello's max_protocol_version, the envelope's
// stream kinds, stream_credit, exactly_once and answered_below (DESIGN.md
// section 5, "Version 2"). These
// records carry values only: which version a connection speaks, and what a
// frame new in version 2 means on it, is the protocol layer's business
// (moonpool-protocol's Connection).
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
// The protocol versions this library knows.
inline constexpr uint32_t kProtocolVersion1 = 1;
inline constexpr uint32_t kProtocolVersion2 = 2;
inline constexpr uint32_t kLatestProtocolVersion = kProtocolVersion2;

struct Hello {
  uint64_t magic = kHelloMagic;
  // A client's lowest version; in a server's answer, the version it chose (or
  // its lowest, when it refuses the client's range).
  uint32_t protocol_version = kProtocolVersion1;
  absl::string_view peer_name;  // diagnostics only
  uint64_t incarnation = 0;     // random per transport instance, never 0
  // Version 2: the highest version the sender speaks. 0 (what a version 1
  // Hello carries) reads as protocol_version.
  uint32_t max_protocol_version = 0;
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

// Version 2: the requester gave up on request `id` it sent.
struct Cancel {
  CorrelationId id;
  friend bool operator==(const Cancel&, const Cancel&) = default;
};

// Version 2: the requester of reply stream `id` consumed `bytes` of its
// items' payloads; the sender may send that many more.
struct Credit {
  CorrelationId id;
  uint64_t bytes = 0;
  friend bool operator==(const Credit&, const Credit&) = default;
};

// One decoded frame: exactly one of the kinds. The alternatives are in the
// order of the schema's union, so index() is the union's discriminant.
using FrameValue =
    std::variant<Hello, EnvelopeView, Ping, Pong, Goodbye, Cancel, Credit>;

// "hello", "envelope", "ping", "pong", "goodbye", "cancel" or "credit".
absl::string_view FrameKindName(const FrameValue& frame);

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_FRAME_H_
