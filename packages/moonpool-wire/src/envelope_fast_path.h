// The envelope fast path: a hand-written writer and reader of the one
// Cap'n Proto layout this library's encoder gives an envelope frame, the
// "canonical" layout. Private to moonpool-wire (its encoder and decoder, its
// tests and the fuzz targets include it); not installed.
//
// The canonical body is a single-segment message laid out in the order
// Cap'n Proto's own builder allocates it (and `capnp encode` writes it):
//
//   word 0        segment table: segment count - 1 = 0, segment size in words
//   segment:
//     [0]         root pointer: struct, offset 0, Frame's sizes
//     [1..]       Frame: data section (union discriminant = envelope), then
//                 its pointer section (the envelope: struct, offset 0,
//                 Envelope's sizes)
//     [..]        Envelope: data section, pointer section (payload,
//                 errorMessage)
//     [..]        payload bytes, zero-padded to a word, when not empty
//     [..]        errorMessage bytes, NUL, zero padding, when not empty
//
// An empty payload or message is a null pointer. The struct sizes come from
// the generated code (frame.capnp.h), so a schema that grows the envelope
// changes them here too; the field offsets below are the schema compiler's,
// pinned by envelope_fast_path_test against the schema itself.
//
// The writer produces exactly the bytes Cap'n Proto's builder produces for
// the same values (tests compare them). The reader accepts only that layout,
// with every bound checked, and declines anything else (another segment
// layout, far pointers, other struct sizes, blobs in another order or not
// adjacent, another union member, an unknown kind): the caller then reads the
// body with the general reader (frame_body_reader.h), which accepts any valid
// Cap'n Proto encoding. So the fast path changes speed, never what is
// accepted or how it reads.
#ifndef MOONPOOL_WIRE_SRC_ENVELOPE_FAST_PATH_H_
#define MOONPOOL_WIRE_SRC_ENVELOPE_FAST_PATH_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/frame.capnp.h"

namespace moonpool::wire::internal {

inline constexpr size_t kWordBytes = 8;

// Struct sizes, in words and pointers, from the generated code.
inline constexpr size_t kFrameDataWords =
    schema::Frame::_capnpPrivate::dataWordSize;
inline constexpr size_t kFramePointers =
    schema::Frame::_capnpPrivate::pointerCount;
inline constexpr size_t kEnvelopeDataWords =
    schema::Envelope::_capnpPrivate::dataWordSize;
inline constexpr size_t kEnvelopePointers =
    schema::Envelope::_capnpPrivate::pointerCount;

// Byte offsets in the data sections, and pointer indexes, as the schema
// compiler assigned them (frame.capnp.h's accessors take them in units of
// the field's size: kind is u16 element 4, exactlyOnce bit 80, errorCode u32
// element 3, the u64 fields their word).
inline constexpr size_t kFrameWhichByte = 0;
inline constexpr size_t kFrameEnvelopePointer = 0;
inline constexpr size_t kCorrelationIdByte = 0;
inline constexpr size_t kKindByte = 8;
inline constexpr size_t kExactlyOnceByte = 10;
inline constexpr unsigned kExactlyOnceBit = 0;
inline constexpr size_t kErrorCodeByte = 12;
inline constexpr size_t kEndpointByte = 16;
inline constexpr size_t kTimeoutMicrosByte = 24;
inline constexpr size_t kAnsweredBelowByte = 32;
inline constexpr size_t kStreamCreditByte = 40;
inline constexpr size_t kPayloadPointer = 0;
inline constexpr size_t kErrorMessagePointer = 1;

static_assert(kFrameWhichByte + 2 <= kFrameDataWords * kWordBytes);
static_assert(kFrameEnvelopePointer < kFramePointers);
static_assert(kStreamCreditByte + 8 <= kEnvelopeDataWords * kWordBytes);
static_assert(kAnsweredBelowByte + 8 <= kEnvelopeDataWords * kWordBytes);
static_assert(kTimeoutMicrosByte + 8 <= kEnvelopeDataWords * kWordBytes);
static_assert(kErrorMessagePointer < kEnvelopePointers);

// Word indexes in the segment.
inline constexpr size_t kFrameStartWord = 1;
inline constexpr size_t kEnvelopeStartWord =
    kFrameStartWord + kFrameDataWords + kFramePointers;
inline constexpr size_t kBlobsStartWord =
    kEnvelopeStartWord + kEnvelopeDataWords + kEnvelopePointers;

// The largest blob a Cap'n Proto list pointer can describe (29-bit element
// count); a Text needs one more byte for its NUL.
inline constexpr size_t kMaxBlobBytes = (size_t{1} << 29) - 1;
inline constexpr size_t kMaxTextBytes = kMaxBlobBytes - 1;

// The budget in whole microseconds, rounded up so that a positive budget
// never reads as "none" (0); infinite is INT64_MAX.
inline uint64_t TimeoutMicros(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return 0;
  if (timeout == absl::InfiniteDuration()) {
    return std::numeric_limits<int64_t>::max();
  }
  return static_cast<uint64_t>(
      absl::ToInt64Microseconds(absl::Ceil(timeout, absl::Microseconds(1))));
}

// The inverse: INT64_MAX and above read as infinite.
inline absl::Duration TimeoutFromMicros(uint64_t micros) {
  if (micros >= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(static_cast<int64_t>(micros));
}

// Codes from a newer peer that this build does not know read as kUnknown.
inline absl::StatusCode StatusCodeFromWire(uint32_t code) {
  if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

// Bytes of the canonical body (segment table included) of an envelope with
// these blob sizes. REQUIRES: payload_bytes <= kMaxBlobBytes and
// message_bytes <= kMaxTextBytes.
size_t CanonicalEnvelopeBodyBytes(size_t payload_bytes, size_t message_bytes);

// Writes the canonical body of `e` to the CanonicalEnvelopeBodyBytes() bytes
// at `body` (any alignment), every byte of them. REQUIRES: e's kind and
// error code have wire values (the encoder checks them), its blobs are
// within the limits above.
void WriteCanonicalEnvelope(const EnvelopeView& e, char* body);

// When `body` (a whole frame body) is a canonical envelope message whose
// values are all readable, sets `out` to what the general reader would give
// and returns true. Otherwise returns false and leaves `out` alone: read the
// body with ReadFrameBody, which accepts or refuses it. The views in `out`
// point into `body`.
bool ReadCanonicalEnvelope(absl::Span<const char> body, EnvelopeView& out);

}  // namespace moonpool::wire::internal

#endif  // MOONPOOL_WIRE_SRC_ENVELOPE_FAST_PATH_H_
