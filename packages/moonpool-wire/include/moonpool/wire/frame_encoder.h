// FrameEncoder turns frame values (frame.h) into wire frames appended to a
// ByteBuffer: the 16-byte header, then the Cap'n Proto body.
//
// The body is built in place: the message's single segment is laid out
// directly in the output buffer, just after room for the header and the
// segment table, and the header is filled in last. Encoding allocates nothing
// once the output buffer has grown to its working size.
//
// Example:
//
//   moonpool::wire::FrameEncoder encoder;
//   moonpool::wire::ByteBuffer out;
//   absl::Status s = encoder.Encode(moonpool::wire::Ping{.nonce = 7}, out);
//   // out.Readable() now holds one 40-byte frame.
//
// An encoder holds no per-stream state; one can serve many buffers.
#ifndef MOONPOOL_WIRE_FRAME_ENCODER_H_
#define MOONPOOL_WIRE_FRAME_ENCODER_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "moonpool/envelope/envelope_concepts.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::wire {

struct EncoderOptions {
  // Largest body this encoder writes; must not exceed what the peer's decoder
  // accepts. At most kLargestMaxFrameBytes.
  size_t max_frame_bytes = kDefaultMaxFrameBytes;
};

class FrameEncoder {
 public:
  explicit FrameEncoder(EncoderOptions options = {});

  // Appends one frame holding `frame` to `out`.
  //
  // Errors, after which `out` is unchanged:
  //   - ResourceExhausted: the body would exceed max_frame_bytes;
  //   - InvalidArgument: an envelope kind or status code with no wire value.
  [[nodiscard]] absl::Status Encode(const FrameValue& frame, ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const EnvelopeView& envelope,
                                    ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const Hello& hello, ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const Ping& ping, ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const Pong& pong, ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const Goodbye& goodbye, ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const Cancel& cancel, ByteBuffer& out);
  [[nodiscard]] absl::Status Encode(const Credit& credit, ByteBuffer& out);

  // Any envelope-like record (an Envelope, an application's own type).
  template <EnvelopeLike E>
  [[nodiscard]] absl::Status EncodeEnvelope(const E& e, ByteBuffer& out) {
    return Encode(
        EnvelopeView{e.correlation_id, e.kind, e.endpoint,
                     absl::string_view(e.payload), e.timeout, e.error_code,
                     absl::string_view(e.error_message), StreamCreditOf(e),
                     ExactlyOnceOf(e), AnsweredBelowOf(e)},
        out);
  }

  size_t max_frame_bytes() const { return options_.max_frame_bytes; }

 private:
  EncoderOptions options_;
};

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_FRAME_ENCODER_H_
