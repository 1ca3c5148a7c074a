// The find_package consumer's program: a round trip through the installed
// moonpool-wire. It encodes envelopes and a ping with FrameEncoder, reads the
// first frame's body back with the generated schema header
// <moonpool/wire/frame.capnp.h>, builds one more frame with that schema,
// feeds all of it one byte at a time to FrameDecoder, and checks every
// decoded frame. Prints each step; returns non-zero on the first mismatch.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"

namespace {

namespace wire = moonpool::wire;
namespace schema = moonpool::wire::schema;

int failures = 0;

// Prints "ok: <what>" or "FAIL: <what>" and counts failures.
bool Check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
  return ok;
}

bool CheckOk(const absl::Status& status, const std::string& what) {
  return Check(status.ok(),
               status.ok() ? what : what + ": " + status.ToString());
}

// Like Check, for checks repeated per byte: prints only a failure.
bool Expect(bool ok, const std::string& what) {
  return ok || Check(false, what);
}

absl::string_view View(capnp::Text::Reader text) {
  return absl::string_view(text.cStr(), text.size());
}
absl::string_view View(capnp::Data::Reader data) {
  return absl::string_view(reinterpret_cast<const char*>(data.begin()),
                           data.size());
}

// Reads the body of the first frame in `frames` with the generated schema
// classes and checks it is `request`.
void CheckFirstBodyWithSchema(absl::Span<const char> frames,
                              const moonpool::Envelope& request) {
  absl::StatusOr<wire::FrameHeader> header =
      wire::ParseFrameHeader(frames, wire::kDefaultMaxFrameBytes);
  if (!CheckOk(header.status(), "first frame header parses")) return;
  const size_t length = header->body_length;
  if (!Check(frames.size() >= wire::kFrameHeaderBytes + length,
             "first frame body is complete (" + std::to_string(length) +
                 " bytes)")) {
    return;
  }
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(length / 8);
  std::memcpy(words.begin(), frames.data() + wire::kFrameHeaderBytes, length);
  capnp::FlatArrayMessageReader reader(words);
  schema::Frame::Reader frame = reader.getRoot<schema::Frame>();
  if (!Check(frame.which() == schema::Frame::ENVELOPE,
             "schema: first frame is an envelope")) {
    return;
  }
  schema::Envelope::Reader e = frame.getEnvelope();
  Check(
      e.getCorrelationId() == request.correlation_id.value() &&
          e.getKind() == schema::Envelope::Kind::REQUEST &&
          e.getEndpoint() == request.endpoint.value() &&
          View(e.getPayload()) == request.payload &&
          e.getTimeoutMicros() ==
              static_cast<uint64_t>(absl::ToInt64Microseconds(request.timeout)),
      "schema: envelope fields read back (id, kind, endpoint, payload, "
      "timeout)");
}

// A goodbye frame built with the generated schema classes and framed with
// WriteFrameHeader, as another implementation of the protocol would send it.
std::string GoodbyeFrameFromSchema(uint64_t last_id, absl::string_view reason) {
  capnp::MallocMessageBuilder message;
  schema::Goodbye::Builder goodbye =
      message.initRoot<schema::Frame>().initGoodbye();
  goodbye.setLastCorrelationId(last_id);
  goodbye.setReason(capnp::Text::Reader(reason.data(), reason.size()));
  kj::Array<capnp::word> body = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const char> body_chars = body.asChars();
  std::string frame(wire::kFrameHeaderBytes + body_chars.size(), '\0');
  absl::Span<const char> body_span(body_chars.begin(), body_chars.size());
  wire::WriteFrameHeader(body_span, frame.data());
  std::memcpy(frame.data() + wire::kFrameHeaderBytes, body_chars.begin(),
              body_chars.size());
  return frame;
}

}  // namespace

int main() {
  std::printf("moonpool-wire find_package consumer\n");

  moonpool::CorrelationIdGenerator ids;
  ids.Next();
  const moonpool::Envelope request = moonpool::Envelope::Request(
      ids.Next(), moonpool::Endpoint(7), "hello from the installed package",
      absl::Milliseconds(1500));
  const moonpool::Envelope error =
      moonpool::MakeErrorReply(request, absl::NotFoundError("no such key"));
  const wire::Ping ping{.nonce = 99};
  const std::string reason = "consumer done";
  const wire::Goodbye goodbye{.last_correlation_id = request.correlation_id,
                              .reason = reason};

  // Encode: the request as a view, the error reply through the concept, a ping.
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  CheckOk(encoder.Encode(moonpool::EnvelopeView::Of(request), out),
          "encode request " + request.correlation_id.ToString());
  CheckOk(encoder.EncodeEnvelope(error, out),
          "encode error reply " + error.correlation_id.ToString());
  CheckOk(encoder.Encode(ping, out), "encode ping");
  std::printf("encoded 3 frames, %zu bytes\n", out.size());
  if (failures != 0) return 1;

  CheckFirstBodyWithSchema(out.Readable(), request);

  std::string stream(out.Readable().data(), out.size());
  const std::string schema_frame =
      GoodbyeFrameFromSchema(goodbye.last_correlation_id.value(), reason);
  stream += schema_frame;
  std::printf("built a goodbye frame with the schema, %zu bytes\n",
              schema_frame.size());

  // Decode, one byte at a time.
  std::printf("feeding %zu bytes to FrameDecoder one at a time\n",
              stream.size());
  const std::vector<wire::FrameValue> expected = {
      moonpool::EnvelopeView::Of(request), moonpool::EnvelopeView::Of(error),
      ping, goodbye};
  wire::FrameDecoder decoder;
  size_t decoded = 0;
  size_t fed = 0;
  for (char byte : stream) {
    decoder.Feed(absl::Span<const char>(&byte, 1));
    ++fed;
    for (;;) {
      absl::StatusOr<const wire::FrameValue*> next = decoder.Next();
      if (!Expect(next.ok(), "decoder accepts byte " + std::to_string(fed) +
                                 ": " + next.status().ToString())) {
        return 1;
      }
      if (*next == nullptr) break;
      const wire::FrameValue& frame = **next;
      const std::string name(wire::FrameKindName(frame));
      if (!Expect(decoded < expected.size(),
                  "decoded frame " + std::to_string(decoded + 1) + " (" + name +
                      ") was expected")) {
        return 1;
      }
      Check(frame == expected[decoded], "decoded frame " +
                                            std::to_string(decoded + 1) + " (" +
                                            name + ") equals what was sent");
      ++decoded;
    }
  }
  Check(decoded == expected.size(),
        "decoded " + std::to_string(decoded) + " of " +
            std::to_string(expected.size()) + " frames");
  Check(decoder.frames_decoded() == expected.size(),
        "decoder counted " + std::to_string(decoder.frames_decoded()) +
            " frames");
  CheckOk(decoder.Finish(), "stream ends between frames");

  if (failures != 0) {
    std::printf("FAILED: %d check(s)\n", failures);
    return 1;
  }
  std::printf("PASSED: round trip through the installed moonpool-wire\n");
  return 0;
}
