// libFuzzer target for moonpool-wire's envelope fast path
// (packages/moonpool-wire/src/envelope_fast_path.h): a differential test of
// the hand-written reader and writer against Cap'n Proto's. The input is one
// frame body; both readers run on it, and the target traps when they
// disagree, or when the hand-written encoder's bytes for what was read
// differ from Cap'n Proto's builder's. The input layout and the list of
// checks are in README.md beside this file.

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "envelope_fast_path.h"
#include "frame_body_reader.h"
#include "fuzz_util.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::wire {
namespace {

constexpr size_t kWord = 8;

// Same values, and for a non-empty blob the same bytes in the body: both
// readers read in place, so they must point at the same place.
bool SameEnvelope(const EnvelopeView& a, const EnvelopeView& b) {
  if (!(a == b)) return false;
  if (!a.payload.empty() && a.payload.data() != b.payload.data()) return false;
  if (!a.error_message.empty() &&
      a.error_message.data() != b.error_message.data()) {
    return false;
  }
  return true;
}

// The body Cap'n Proto's builder writes for `e` (blobs set only when not
// empty, payload first): what the hand-written encoder must write.
std::string BuilderBody(const EnvelopeView& e) {
  capnp::MallocMessageBuilder builder;
  schema::Envelope::Builder b =
      builder.initRoot<schema::Frame>().initEnvelope();
  b.setCorrelationId(e.correlation_id.value());
  b.setKind(static_cast<schema::Envelope::Kind>(e.kind));
  b.setEndpoint(e.endpoint.value());
  b.setTimeoutMicros(internal::TimeoutMicros(e.timeout));
  b.setErrorCode(static_cast<uint32_t>(e.error_code));
  b.setStreamCredit(e.stream_credit);
  b.setExactlyOnce(e.exactly_once);
  b.setAnsweredBelow(e.answered_below.value());
  if (!e.payload.empty()) {
    b.setPayload(capnp::Data::Reader(
        reinterpret_cast<const capnp::byte*>(e.payload.data()),
        e.payload.size()));
  }
  if (!e.error_message.empty()) {
    capnp::Text::Builder text = b.initErrorMessage(e.error_message.size());
    std::memcpy(text.begin(), e.error_message.data(), e.error_message.size());
  }
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  return std::string(reinterpret_cast<const char*>(words.begin()),
                     words.size() * kWord);
}

void Verbose(const char* what) {
  static const bool verbose = std::getenv("MOONPOOL_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "envelope_fast_path: %s\n", what);
}

void Run(absl::Span<const char> body) {
  EnvelopeView fast;
  const bool fast_read = internal::ReadCanonicalEnvelope(body, fast);
  FrameValue general;
  const absl::Status general_status = internal::ReadFrameBody(body, general);

  // What the fast reader takes, the general reader takes, and reads alike.
  if (fast_read) {
    MOONPOOL_FUZZ_CHECK(general_status.ok());
    MOONPOOL_FUZZ_CHECK(std::holds_alternative<EnvelopeView>(general));
    MOONPOOL_FUZZ_CHECK(SameEnvelope(fast, std::get<EnvelopeView>(general)));
  }
  if (!general_status.ok()) {
    MOONPOOL_FUZZ_CHECK(general_status.code() ==
                        absl::StatusCode::kInvalidArgument);
    Verbose("refused by both readers");
    return;
  }
  const EnvelopeView* envelope = std::get_if<EnvelopeView>(&general);
  if (envelope == nullptr) {
    Verbose("not an envelope");
    return;
  }
  Verbose(fast_read ? "envelope, fast path" : "envelope, general path only");

  // Whatever envelope was read, in whatever layout: the hand-written
  // encoder writes Cap'n Proto's builder's bytes for it, and the fast
  // reader takes them back to the same values.
  FrameEncoder encoder(
      EncoderOptions{.max_frame_bytes = kLargestMaxFrameBytes});
  ByteBuffer out;
  MOONPOOL_FUZZ_CHECK(encoder.Encode(*envelope, out).ok());
  const absl::Span<const char> frame = out.Readable();
  MOONPOOL_FUZZ_CHECK(frame.size() > kFrameHeaderBytes);
  const absl::Span<const char> encoded = frame.subspan(kFrameHeaderBytes);
  const std::string reference = BuilderBody(*envelope);
  MOONPOOL_FUZZ_CHECK(encoded.size() == reference.size());
  MOONPOOL_FUZZ_CHECK(
      std::memcmp(encoded.data(), reference.data(), reference.size()) == 0);
  // ByteBuffer storage is word-aligned and the header is two words, so the
  // body is aligned for the general reader too.
  EnvelopeView again;
  MOONPOOL_FUZZ_CHECK(internal::ReadCanonicalEnvelope(encoded, again));
  MOONPOOL_FUZZ_CHECK(again == *envelope);
  FrameValue again_general;
  MOONPOOL_FUZZ_CHECK(internal::ReadFrameBody(encoded, again_general).ok());
  MOONPOOL_FUZZ_CHECK(std::holds_alternative<EnvelopeView>(again_general));
  MOONPOOL_FUZZ_CHECK(std::get<EnvelopeView>(again_general) == *envelope);
}

}  // namespace
}  // namespace moonpool::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A body is a whole number of words, at least one (the decoder checks that
  // before either reader sees it), read in place from aligned storage.
  const size_t bytes = size / moonpool::wire::kWord * moonpool::wire::kWord;
  if (bytes == 0) return 0;
  std::vector<uint64_t> words(bytes / moonpool::wire::kWord);
  std::memcpy(words.data(), data, bytes);
  moonpool::wire::Run(absl::Span<const char>(
      reinterpret_cast<const char*>(words.data()), bytes));
  return 0;
}
