// Writes the seed corpus of envelope_fast_path_fuzzer: frame bodies (no
// header; README.md, "envelope_fast_path_fuzzer"). Canonical envelopes come
// from FrameEncoder; the other valid layouts (blobs in the other order,
// several segments with far pointers, a newer or older schema's struct
// sizes, a zero-length blob, slack words) from Cap'n Proto's builders; the
// broken ones are canonical bodies with one thing changed.
//
// Usage: make_envelope_fast_path_seeds <output directory>

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "envelope_fast_path.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope_kind.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"
#include "seed_corpus.h"

namespace moonpool::wire {
namespace {

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

// The body FrameEncoder writes for `frame`.
std::string EncodedBody(const FrameValue& frame) {
  FrameEncoder encoder;
  ByteBuffer out;
  if (!encoder.Encode(frame, out).ok()) {
    std::fprintf(stderr, "cannot encode a seed frame\n");
    std::exit(1);
  }
  const absl::Span<const char> bytes = out.Readable();
  return std::string(bytes.data() + kFrameHeaderBytes,
                     bytes.size() - kFrameHeaderBytes);
}

std::string BodyOf(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  return std::string(reinterpret_cast<const char*>(words.begin()),
                     words.size() * sizeof(capnp::word));
}

EnvelopeView SampleError() {
  return EnvelopeView{CorrelationId(41),
                      EnvelopeKind::kError,
                      Endpoint(9),
                      "partial reply",
                      absl::Microseconds(1500),
                      absl::StatusCode::kDeadlineExceeded,
                      "too slow",
                      12,
                      true,
                      CorrelationId(40)};
}

// An envelope to endpoint 7 with the other fields at their defaults.
EnvelopeView Plain(CorrelationId id, EnvelopeKind kind,
                   absl::string_view payload, absl::Duration timeout) {
  EnvelopeView e;
  e.correlation_id = id;
  e.kind = kind;
  e.endpoint = Endpoint(7);
  e.payload = payload;
  e.timeout = timeout;
  return e;
}

// A Frame holding an envelope struct of the given sizes, through Cap'n
// Proto's untyped builder at the schema's offsets; the blobs in the order
// asked; a newer schema's extra pointer set to a text.
std::string UntypedEnvelope(capnp::MessageBuilder& builder,
                            const EnvelopeView& e, uint16_t data_words,
                            uint16_t pointers, bool message_first) {
  capnp::AnyStruct::Builder frame =
      builder.initRoot<capnp::AnyPointer>().initAsAnyStruct(
          internal::kFrameDataWords, internal::kFramePointers);
  const auto which = static_cast<uint16_t>(schema::Frame::ENVELOPE);
  std::memcpy(frame.getDataSection().begin() + internal::kFrameWhichByte,
              &which, sizeof(which));
  capnp::AnyStruct::Builder s =
      frame.getPointerSection()[internal::kFrameEnvelopePointer]
          .initAsAnyStruct(data_words, pointers);
  kj::ArrayPtr<capnp::byte> data = s.getDataSection();
  auto put = [&](size_t at, auto value) {
    if (at + sizeof(value) <= data.size()) {
      std::memcpy(data.begin() + at, &value, sizeof(value));
    }
  };
  put(internal::kCorrelationIdByte, e.correlation_id.value());
  put(internal::kKindByte, static_cast<uint16_t>(e.kind));
  put(internal::kErrorCodeByte, static_cast<uint32_t>(e.error_code));
  put(internal::kEndpointByte, e.endpoint.value());
  put(internal::kTimeoutMicrosByte, internal::TimeoutMicros(e.timeout));
  put(internal::kAnsweredBelowByte, e.answered_below.value());
  put(internal::kStreamCreditByte, e.stream_credit);
  if (e.exactly_once && internal::kExactlyOnceByte < data.size()) {
    data[internal::kExactlyOnceByte] |= 1 << internal::kExactlyOnceBit;
  }
  capnp::List<capnp::AnyPointer>::Builder p = s.getPointerSection();
  const capnp::Data::Reader payload(
      reinterpret_cast<const capnp::byte*>(e.payload.data()), e.payload.size());
  // SampleError's message is a literal, so NUL-terminated as Text wants.
  const capnp::Text::Reader message(e.error_message.data(),
                                    e.error_message.size());
  if (message_first) {
    p[internal::kErrorMessagePointer].setAs<capnp::Text>(message);
    p[internal::kPayloadPointer].setAs<capnp::Data>(payload);
  } else {
    p[internal::kPayloadPointer].setAs<capnp::Data>(payload);
    p[internal::kErrorMessagePointer].setAs<capnp::Text>(message);
  }
  if (pointers > internal::kEnvelopePointers) {
    p[internal::kEnvelopePointers].setAs<capnp::Text>("a newer field");
  }
  return BodyOf(builder);
}

// `body` with segment word `word` replaced by `value`.
std::string WithWord(std::string body, size_t word, uint64_t value) {
  std::memcpy(body.data() + 8 + word * 8, &value, 8);
  return body;
}

void WriteSeeds(fuzz::SeedCorpus& corpus) {
  // Canonical envelopes, as this library writes them.
  const std::string payload_64(64, 'p');
  corpus.Write(
      "request_64",
      EncodedBody(Plain(CorrelationId(0x0123456789), EnvelopeKind::kRequest,
                        payload_64, absl::Milliseconds(2500))));
  corpus.Write("request_empty",
               EncodedBody(Plain(CorrelationId(1), EnvelopeKind::kRequest, {},
                                 absl::ZeroDuration())));
  corpus.Write(
      "reply_with_nul",
      EncodedBody(Plain(CorrelationId(1), EnvelopeKind::kReply,
                        absl::string_view("po\0ng", 5), absl::ZeroDuration())));
  corpus.Write("error_with_message", EncodedBody(SampleError()));
  EnvelopeView word_message = SampleError();
  word_message.payload = {};
  word_message.error_message = "12345678";  // its NUL takes a second word
  corpus.Write("error_message_of_a_word", EncodedBody(word_message));
  corpus.Write("stream_item",
               EncodedBody(Plain(CorrelationId(6), EnvelopeKind::kStreamItem,
                                 "item", absl::ZeroDuration())));
  EnvelopeView max = SampleError();
  max.kind = kLastEnvelopeKind;
  max.correlation_id = CorrelationId(kMax64);
  max.endpoint = Endpoint(kMax64);
  max.timeout = absl::InfiniteDuration();
  max.error_code = absl::StatusCode::kUnauthenticated;
  max.stream_credit = kMax64;
  max.answered_below = CorrelationId(kMax64);
  corpus.Write("every_field_at_its_max", EncodedBody(max));

  // Valid, not canonical: the general reader's.
  const EnvelopeView e = SampleError();
  {
    capnp::MallocMessageBuilder builder;
    corpus.Write("message_before_payload",
                 UntypedEnvelope(builder, e, internal::kEnvelopeDataWords,
                                 internal::kEnvelopePointers, true));
  }
  {
    capnp::MallocMessageBuilder builder(1,
                                        capnp::AllocationStrategy::FIXED_SIZE);
    corpus.Write("one_word_segments",
                 UntypedEnvelope(builder, e, internal::kEnvelopeDataWords,
                                 internal::kEnvelopePointers, false));
  }
  {
    capnp::MallocMessageBuilder builder(4,
                                        capnp::AllocationStrategy::FIXED_SIZE);
    corpus.Write("envelope_behind_a_far_pointer",
                 UntypedEnvelope(builder, e, internal::kEnvelopeDataWords,
                                 internal::kEnvelopePointers, false));
  }
  {
    capnp::MallocMessageBuilder builder;
    corpus.Write("newer_larger_envelope",
                 UntypedEnvelope(builder, e, internal::kEnvelopeDataWords + 1,
                                 internal::kEnvelopePointers + 1, false));
  }
  {
    capnp::MallocMessageBuilder builder;
    corpus.Write("older_smaller_envelope",
                 UntypedEnvelope(builder, e, 4, 2, false));
  }
  {
    EnvelopeView empty_payload = e;
    empty_payload.payload = absl::string_view("", 0);
    capnp::MallocMessageBuilder builder;
    corpus.Write(
        "zero_length_payload_list",
        UntypedEnvelope(builder, empty_payload, internal::kEnvelopeDataWords,
                        internal::kEnvelopePointers, false));
  }
  const std::string canonical = EncodedBody(e);
  {
    std::string slack = canonical;
    const uint32_t segment_words = static_cast<uint32_t>(slack.size() / 8);
    std::memcpy(slack.data() + 4, &segment_words, 4);
    slack.append(8, '\0');
    corpus.Write("slack_after_the_blobs", slack);
  }

  // Broken canonical bodies (e: payload 2 words, message 2 words).
  const size_t payload_pointer =
      internal::kEnvelopeStartWord + internal::kEnvelopeDataWords;
  const size_t message_pointer = payload_pointer + 1;
  const size_t message_at = internal::kBlobsStartWord + 2;
  uint64_t message_pointer_value = 0;
  std::memcpy(&message_pointer_value,
              canonical.data() + 8 + message_pointer * 8, 8);
  corpus.Write("text_without_nul", WithWord(canonical, message_at + 1, kMax64));
  corpus.Write("blob_past_the_segment",
               WithWord(canonical, message_pointer,
                        message_pointer_value + (uint64_t{64} << 35)));
  corpus.Write("unknown_kind",
               WithWord(canonical, internal::kEnvelopeStartWord + 1,
                        0x0000'0004'0000'0007));
  std::string two_segments = canonical;
  two_segments[0] = 1;
  corpus.Write("segment_count_two", two_segments);

  // Other frame kinds: the fast reader declines them.
  corpus.Write("hello",
               EncodedBody(Hello{kHelloMagic, kProtocolVersion1, "client-1",
                                 0x1234567890abcdef, kProtocolVersion2}));
  corpus.Write("ping", EncodedBody(Ping{7}));
  corpus.Write("goodbye",
               EncodedBody(Goodbye{CorrelationId(17), "shutting down"}));
  corpus.Write("credit", EncodedBody(Credit{CorrelationId(6), 4096}));
}

}  // namespace
}  // namespace moonpool::wire

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  moonpool::fuzz::SeedCorpus corpus(argv[1]);
  moonpool::wire::WriteSeeds(corpus);
  corpus.Report();
  return 0;
}
