// The envelope fast path (src/envelope_fast_path.h): the hand-written
// encoder writes the bytes Cap'n Proto's builder writes, for every kind and
// field; the fast reader takes those frames and gives what the general
// reader gives; and any other valid encoding (several segments, far
// pointers, blobs in another order, an older or a newer schema's struct
// sizes) still decodes, through the general reader, to the same values.
#include "envelope_fast_path.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "frame_body_reader.h"
#include "gtest/gtest.h"
#include "kj/array.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::FrameAround;

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

// A body held in word-aligned storage, as the decoder holds it.
class AlignedBody {
 public:
  explicit AlignedBody(const std::string& bytes)
      : words_((bytes.size() + 7) / 8) {
    std::memcpy(words_.data(), bytes.data(), bytes.size());
    size_ = bytes.size();
  }
  absl::Span<const char> span() const {
    return absl::Span<const char>(reinterpret_cast<const char*>(words_.data()),
                                  size_);
  }

 private:
  std::vector<uint64_t> words_;
  size_t size_ = 0;
};

std::string BytesOf(kj::ArrayPtr<const capnp::word> words) {
  return std::string(reinterpret_cast<const char*>(words.begin()),
                     words.size() * sizeof(capnp::word));
}

// The timeout as the wire carries it, computed here rather than with the
// library's helper: whole microseconds rounded up, infinite as INT64_MAX.
uint64_t ExpectedMicros(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) {
    return std::numeric_limits<int64_t>::max();
  }
  if (timeout <= absl::ZeroDuration()) return 0;
  const int64_t nanos = absl::ToInt64Nanoseconds(timeout);
  return static_cast<uint64_t>((nanos + 999) / 1000);
}

// The reference: the envelope built with Cap'n Proto's own builder, setting
// the blobs only when not empty, payload first (as the encoder did before it
// wrote frames by hand, and as `capnp encode` lays them out).
std::string ReferenceBody(const EnvelopeView& e) {
  capnp::MallocMessageBuilder builder;
  schema::Envelope::Builder b =
      builder.initRoot<schema::Frame>().initEnvelope();
  b.setCorrelationId(e.correlation_id.value());
  b.setKind(static_cast<schema::Envelope::Kind>(e.kind));
  b.setEndpoint(e.endpoint.value());
  b.setTimeoutMicros(ExpectedMicros(e.timeout));
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
  return BytesOf(capnp::messageToFlatArray(builder));
}

// What decoding gives back: the view with its timeout in whole microseconds.
EnvelopeView AsDecoded(EnvelopeView e) {
  const uint64_t micros = ExpectedMicros(e.timeout);
  e.timeout =
      micros >= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
          ? absl::InfiniteDuration()
          : absl::Microseconds(static_cast<int64_t>(micros));
  return e;
}

// Decodes one frame around `body` with a fresh decoder, which it keeps:
// the value borrows its buffer.
struct Decoded {
  std::unique_ptr<FrameDecoder> decoder = std::make_unique<FrameDecoder>();
  absl::Status status;
  const FrameValue* value = nullptr;
  uint64_t fast = 0;
};
Decoded DecodeFrame(const std::string& body) {
  Decoded d;
  d.decoder->Feed(FrameAround(body));
  absl::StatusOr<const FrameValue*> next = d.decoder->Next();
  d.fast = d.decoder->frames_decoded_fast();
  if (!next.ok()) {
    d.status = next.status();
  } else if (*next == nullptr) {
    d.status = absl::InternalError("no frame");
  } else {
    d.value = *next;
  }
  return d;
}

// The matrix: every kind; blobs empty, shorter than a word, a word, across
// words, larger; an error message empty, short, exactly a word (its NUL
// takes another), with a NUL inside; the other fields zero, typical, at
// their maximum.
std::vector<EnvelopeView> Matrix(std::vector<std::string>& keep) {
  keep = {"",
          "p",
          "1234567",
          "12345678",
          "123456789",
          std::string(64, 'x'),
          std::string(1000, '\xff'),
          std::string("a\0b", 3),
          "no such key",
          std::string(8, 'm')};
  const std::vector<absl::string_view> payloads = {
      keep[0], keep[1], keep[2], keep[3], keep[4], keep[5], keep[6], keep[7]};
  const std::vector<absl::string_view> messages = {keep[0], keep[1], keep[8],
                                                   keep[9], keep[7]};
  std::vector<EnvelopeView> views;
  for (int kind = 0; kind <= static_cast<int>(kLastEnvelopeKind); ++kind) {
    for (absl::string_view payload : payloads) {
      for (absl::string_view message : messages) {
        EnvelopeView e;
        e.kind = static_cast<EnvelopeKind>(kind);
        e.payload = payload;
        e.error_message = message;
        views.push_back(e);  // every other field zero
        e.correlation_id = CorrelationId(0x0123456789);
        e.endpoint = Endpoint(7);
        e.timeout = absl::Milliseconds(2500);
        e.error_code = absl::StatusCode::kNotFound;
        e.stream_credit = 65536;
        e.exactly_once = true;
        e.answered_below = CorrelationId(0x0123456000);
        views.push_back(e);
        e.correlation_id = CorrelationId(kMax64);
        e.endpoint = Endpoint(kMax64);
        e.timeout = absl::InfiniteDuration();
        e.error_code = absl::StatusCode::kUnauthenticated;
        e.stream_credit = kMax64;
        e.answered_below = CorrelationId(kMax64);
        views.push_back(e);
        e.exactly_once = false;
        e.timeout = absl::Nanoseconds(1);  // rounds up to 1 us
        views.push_back(e);
      }
    }
  }
  return views;
}

std::string Describe(const EnvelopeView& e) {
  return absl::StrCat("kind ", static_cast<int>(e.kind), ", payload ",
                      e.payload.size(), " B, message ", e.error_message.size(),
                      " B, id ", e.correlation_id.value(), ", exactly_once ",
                      e.exactly_once, ", timeout ",
                      absl::FormatDuration(e.timeout));
}

TEST(EnvelopeFastPath, FieldOffsetsAreTheSchemas) {
  const capnp::StructSchema envelope = capnp::Schema::from<schema::Envelope>();
  auto slot = [&](const char* name) {
    return envelope.getFieldByName(name).getProto().getSlot().getOffset();
  };
  // Slot offsets are in units of the field's own size.
  EXPECT_EQ(slot("correlationId") * 8, internal::kCorrelationIdByte);
  EXPECT_EQ(slot("kind") * 2, internal::kKindByte);
  EXPECT_EQ(slot("endpoint") * 8, internal::kEndpointByte);
  EXPECT_EQ(slot("timeoutMicros") * 8, internal::kTimeoutMicrosByte);
  EXPECT_EQ(slot("errorCode") * 4, internal::kErrorCodeByte);
  EXPECT_EQ(slot("exactlyOnce"),
            internal::kExactlyOnceByte * 8 + internal::kExactlyOnceBit);
  EXPECT_EQ(slot("answeredBelow") * 8, internal::kAnsweredBelowByte);
  EXPECT_EQ(slot("streamCredit") * 8, internal::kStreamCreditByte);
  EXPECT_EQ(slot("payload"), internal::kPayloadPointer);
  EXPECT_EQ(slot("errorMessage"), internal::kErrorMessagePointer);
  // Every field of the envelope is one the fast path knows: a new one must
  // be added to it (or the fast path would drop it).
  EXPECT_EQ(envelope.getFields().size(), 10u);

  const capnp::StructSchema frame = capnp::Schema::from<schema::Frame>();
  EXPECT_EQ(frame.getProto().getStruct().getDiscriminantOffset() * 2,
            internal::kFrameWhichByte);
  EXPECT_EQ(frame.getFieldByName("envelope").getProto().getSlot().getOffset(),
            internal::kFrameEnvelopePointer);
  EXPECT_EQ(frame.getProto().getStruct().getDataWordCount(),
            internal::kFrameDataWords);
  EXPECT_EQ(envelope.getProto().getStruct().getPointerCount(),
            internal::kEnvelopePointers);
}

TEST(EnvelopeFastPath, EncoderWritesWhatCapnpsBuilderWrites) {
  std::vector<std::string> keep;
  const std::vector<EnvelopeView> matrix = Matrix(keep);
  FrameEncoder encoder;
  for (const EnvelopeView& e : matrix) {
    SCOPED_TRACE(Describe(e));
    ByteBuffer out;
    ASSERT_TRUE(encoder.Encode(e, out).ok());
    const std::string reference = ReferenceBody(e);
    // The whole frame: header over the reference body, then that body.
    EXPECT_EQ(std::string(out.Readable().data(), out.Readable().size()),
              FrameAround(reference));
  }
}

TEST(EnvelopeFastPath, FastAndGeneralReadersAgreeOnEveryEncodedEnvelope) {
  std::vector<std::string> keep;
  const std::vector<EnvelopeView> matrix = Matrix(keep);
  for (const EnvelopeView& e : matrix) {
    SCOPED_TRACE(Describe(e));
    const AlignedBody body(ReferenceBody(e));
    EnvelopeView fast;
    ASSERT_TRUE(internal::ReadCanonicalEnvelope(body.span(), fast));
    FrameValue general;
    ASSERT_TRUE(internal::ReadFrameBody(body.span(), general).ok());
    ASSERT_TRUE(std::holds_alternative<EnvelopeView>(general));
    EXPECT_EQ(fast, std::get<EnvelopeView>(general));
    EXPECT_EQ(fast, AsDecoded(e));
  }
}

TEST(EnvelopeFastPath, DecoderTakesTheFastPathForEnvelopesOnly) {
  const testing::FrameSet set = testing::EveryKind();
  FrameDecoder decoder;
  decoder.Feed(testing::EncodeAll(set.frames));
  uint64_t envelopes = 0;
  for (const FrameValue& expected : set.frames) {
    absl::StatusOr<const FrameValue*> next = decoder.Next();
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_NE(*next, nullptr);
    EXPECT_EQ(**next, expected);
    if (std::holds_alternative<EnvelopeView>(expected)) ++envelopes;
    EXPECT_EQ(decoder.frames_decoded_fast(), envelopes);
  }
  EXPECT_GT(envelopes, 4u);
  EXPECT_EQ(decoder.frames_decoded(), set.frames.size());
}

// An envelope whose encoding the fast path declines must decode, through
// the general reader, to exactly `expected`.
void ExpectGeneralPathReads(const std::string& body,
                            const EnvelopeView& expected) {
  const AlignedBody aligned(body);
  EnvelopeView unused;
  EXPECT_FALSE(internal::ReadCanonicalEnvelope(aligned.span(), unused));
  const Decoded d = DecodeFrame(body);
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_EQ(d.fast, 0u);
  ASSERT_TRUE(std::holds_alternative<EnvelopeView>(*d.value));
  EXPECT_EQ(std::get<EnvelopeView>(*d.value), expected);
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

// Fills an envelope of any struct size through Cap'n Proto's untyped
// builder, at the schema's offsets (pinned above), the blobs in the given
// order. Fields past `data_words` are left out, as an older schema would.
void FillEnvelope(capnp::AnyStruct::Builder s, const EnvelopeView& e,
                  bool message_first) {
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
  put(internal::kTimeoutMicrosByte, ExpectedMicros(e.timeout));
  put(internal::kAnsweredBelowByte, e.answered_below.value());
  put(internal::kStreamCreditByte, e.stream_credit);
  if (e.exactly_once && internal::kExactlyOnceByte < data.size()) {
    data[internal::kExactlyOnceByte] |= 1 << internal::kExactlyOnceBit;
  }
  capnp::List<capnp::AnyPointer>::Builder pointers = s.getPointerSection();
  const capnp::Data::Reader payload(
      reinterpret_cast<const capnp::byte*>(e.payload.data()), e.payload.size());
  const capnp::Text::Reader message(e.error_message.data(),
                                    e.error_message.size());
  if (message_first) {
    pointers[internal::kErrorMessagePointer].setAs<capnp::Text>(message);
    pointers[internal::kPayloadPointer].setAs<capnp::Data>(payload);
  } else {
    pointers[internal::kPayloadPointer].setAs<capnp::Data>(payload);
    pointers[internal::kErrorMessagePointer].setAs<capnp::Text>(message);
  }
}

// A Frame holding an envelope struct of the given sizes, built by Cap'n
// Proto in `builder`.
std::string FrameWithEnvelope(capnp::MessageBuilder& builder,
                              const EnvelopeView& e, uint16_t data_words,
                              uint16_t pointers, bool message_first) {
  capnp::AnyStruct::Builder frame =
      builder.initRoot<capnp::AnyPointer>().initAsAnyStruct(
          internal::kFrameDataWords, internal::kFramePointers);
  const auto which = static_cast<uint16_t>(schema::Frame::ENVELOPE);
  std::memcpy(frame.getDataSection().begin() + internal::kFrameWhichByte,
              &which, sizeof(which));
  capnp::AnyStruct::Builder envelope =
      frame.getPointerSection()[internal::kFrameEnvelopePointer]
          .initAsAnyStruct(data_words, pointers);
  FillEnvelope(envelope, e, message_first);
  // A newer schema's pointer past ours, set, must be skipped.
  if (pointers > internal::kEnvelopePointers) {
    envelope.getPointerSection()[internal::kEnvelopePointers]
        .setAs<capnp::Text>("a newer field");
  }
  return BytesOf(capnp::messageToFlatArray(builder));
}

TEST(EnvelopeFastPath, TheUntypedBuilderMatchesTheCanonicalLayout) {
  // The helper below builds non-canonical variants; built canonically it
  // must give the canonical bytes, or the variants would prove nothing.
  const EnvelopeView e = SampleError();
  capnp::MallocMessageBuilder builder;
  const std::string body =
      FrameWithEnvelope(builder, e, internal::kEnvelopeDataWords,
                        internal::kEnvelopePointers, /*message_first=*/false);
  EXPECT_EQ(body, ReferenceBody(e));
  const Decoded d = DecodeFrame(body);
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_EQ(d.fast, 1u);
  EXPECT_EQ(std::get<EnvelopeView>(*d.value), e);
}

TEST(EnvelopeFastPath, BlobsInTheOtherOrderGoToTheGeneralReader) {
  const EnvelopeView e = SampleError();
  capnp::MallocMessageBuilder builder;
  ExpectGeneralPathReads(
      FrameWithEnvelope(builder, e, internal::kEnvelopeDataWords,
                        internal::kEnvelopePointers, /*message_first=*/true),
      e);
}

TEST(EnvelopeFastPath, SeveralSegmentsAndFarPointersGoToTheGeneralReader) {
  const EnvelopeView e = SampleError();
  // Segments of a few words: the envelope and each blob land in segments
  // of their own, reached through far pointers.
  for (unsigned first_words : {1u, 4u, 8u, 13u}) {
    SCOPED_TRACE(absl::StrCat("first segment of ", first_words, " words"));
    capnp::MallocMessageBuilder builder(first_words,
                                        capnp::AllocationStrategy::FIXED_SIZE);
    const std::string body =
        FrameWithEnvelope(builder, e, internal::kEnvelopeDataWords,
                          internal::kEnvelopePointers, false);
    ASSERT_GT(builder.getSegmentsForOutput().size(), 1u);
    ExpectGeneralPathReads(body, e);
  }
}

TEST(EnvelopeFastPath, ANewerSchemasLargerEnvelopeGoesToTheGeneralReader) {
  const EnvelopeView e = SampleError();
  capnp::MallocMessageBuilder builder;
  ExpectGeneralPathReads(
      FrameWithEnvelope(builder, e, internal::kEnvelopeDataWords + 1,
                        internal::kEnvelopePointers + 1, false),
      e);
}

TEST(EnvelopeFastPath, AnOlderSchemasSmallerEnvelopeGoesToTheGeneralReader) {
  // Version 1's envelope: four data words, no stream or exactly-once fields.
  EnvelopeView e = SampleError();
  e.stream_credit = 0;
  e.exactly_once = false;
  e.answered_below = CorrelationId();
  capnp::MallocMessageBuilder builder;
  ExpectGeneralPathReads(FrameWithEnvelope(builder, e, 4, 2, false), e);
}

TEST(EnvelopeFastPath, UnusedWordsAfterTheBlobsGoToTheGeneralReader) {
  // The segment table claims one word more than the message uses; Cap'n
  // Proto accepts the slack.
  const EnvelopeView e = SampleError();
  std::string body = ReferenceBody(e);
  const uint32_t segment_words = static_cast<uint32_t>(body.size() / 8);
  std::memcpy(body.data() + 4, &segment_words, 4);
  body.append(8, '\x5a');
  ExpectGeneralPathReads(body, e);
}

// A canonical body with one word of its segment changed. `word` counts
// from the segment's start.
std::string WithWord(std::string body, size_t word, uint64_t value) {
  std::memcpy(body.data() + 8 + word * 8, &value, 8);
  return body;
}

TEST(EnvelopeFastPath, InvalidBodiesFailAsTheGeneralReaderSays) {
  const EnvelopeView e = SampleError();  // payload 2 words, message 2 words
  const std::string good = ReferenceBody(e);
  const size_t payload_pointer =
      internal::kEnvelopeStartWord + internal::kEnvelopeDataWords;
  const size_t message_pointer = payload_pointer + 1;
  const size_t message_at = internal::kBlobsStartWord + 2;
  uint64_t message_pointer_value = 0;
  std::memcpy(&message_pointer_value, good.data() + 8 + message_pointer * 8, 8);
  struct Case {
    const char* name;
    std::string body;
  };
  const Case cases[] = {
      // The message's last word without its NUL.
      {"text not NUL-terminated", WithWord(good, message_at + 1, kMax64)},
      // A text of zero elements (not even the NUL).
      {"text of no bytes",
       WithWord(good, message_pointer,
                message_pointer_value & ((uint64_t{1} << 35) - 1))},
      // The message pointer claims more bytes than the segment holds.
      {"blob past the segment",
       WithWord(good, message_pointer,
                message_pointer_value + (uint64_t{64} << 35))},
      // An envelope kind above the known ones.
      {"unknown kind",
       WithWord(good, internal::kEnvelopeStartWord + 1, 0x0000'0004'0000'0007)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const AlignedBody aligned(c.body);
    EnvelopeView unused;
    EXPECT_FALSE(internal::ReadCanonicalEnvelope(aligned.span(), unused));
    FrameValue general;
    const absl::Status expected =
        internal::ReadFrameBody(aligned.span(), general);
    EXPECT_EQ(expected.code(), absl::StatusCode::kInvalidArgument) << expected;
    const Decoded d = DecodeFrame(c.body);
    EXPECT_EQ(d.status, expected);
  }
}

TEST(EnvelopeFastPath, UnknownStatusCodeReadsAsUnknownOnTheFastPathToo) {
  EnvelopeView e = SampleError();
  std::string body = ReferenceBody(e);
  const uint32_t code = 999;
  std::memcpy(body.data() + 8 + internal::kEnvelopeStartWord * 8 +
                  internal::kErrorCodeByte,
              &code, 4);
  const Decoded d = DecodeFrame(body);
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_EQ(d.fast, 1u);
  e.error_code = absl::StatusCode::kUnknown;
  EXPECT_EQ(std::get<EnvelopeView>(*d.value), e);
}

}  // namespace
}  // namespace moonpool::wire
