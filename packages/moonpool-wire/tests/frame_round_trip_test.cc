#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::EncodeOne;
using ::moonpool::wire::testing::EveryKind;
using ::moonpool::wire::testing::FrameSet;

// Decodes exactly one frame from `bytes` and returns a copy of it; the views
// in it point into `decoder`.
FrameValue DecodeOne(FrameDecoder& decoder, const std::string& bytes) {
  decoder.Feed(bytes);
  absl::StatusOr<const FrameValue*> frame = decoder.Next();
  EXPECT_TRUE(frame.ok()) << frame.status();
  if (!frame.ok() || *frame == nullptr) {
    ADD_FAILURE() << "no frame";
    return Ping{};
  }
  EXPECT_TRUE(decoder.Finish().ok());
  return **frame;
}

TEST(FrameRoundTrip, EveryKindComesBackEqual) {
  FrameSet set = EveryKind();
  for (const FrameValue& frame : set.frames) {
    SCOPED_TRACE(FrameKindName(frame));
    const std::string bytes = EncodeOne(frame);
    EXPECT_EQ(bytes.size() % 8, 0u);
    FrameDecoder decoder;
    EXPECT_EQ(DecodeOne(decoder, bytes), frame);
    EXPECT_EQ(decoder.frames_decoded(), 1u);
  }
}

TEST(FrameRoundTrip, EncodeFrameValueMatchesTypedOverloads) {
  FrameEncoder encoder;
  ByteBuffer a, b;
  ASSERT_TRUE(encoder.Encode(FrameValue(Ping{5}), a).ok());
  ASSERT_TRUE(encoder.Encode(Ping{5}, b).ok());
  EXPECT_EQ(std::string(a.Readable().data(), a.size()),
            std::string(b.Readable().data(), b.size()));
}

TEST(FrameRoundTrip, OwningEnvelopeEncodesLikeItsView) {
  Envelope e =
      Envelope::Request(CorrelationId(3), Endpoint(1), "abc", absl::Seconds(1));
  FrameEncoder encoder;
  ByteBuffer out;
  ASSERT_TRUE(encoder.EncodeEnvelope(e, out).ok());
  FrameDecoder decoder;
  FrameValue back =
      DecodeOne(decoder, std::string(out.Readable().data(), out.size()));
  ASSERT_TRUE(std::holds_alternative<EnvelopeView>(back));
  EXPECT_EQ(Envelope::CopyOf(std::get<EnvelopeView>(back)), e);
}

// Version 2: an owning Envelope's stream credit reaches the wire (through
// the EnvelopeLike path, StreamCreditOf) and comes back.
TEST(FrameRoundTrip, OwningStreamRequestKeepsItsCredit) {
  for (uint64_t credit : {uint64_t{1}, uint64_t{65536}, ~uint64_t{0}}) {
    SCOPED_TRACE(credit);
    Envelope e = Envelope::Request(CorrelationId(4), Endpoint(2), "range",
                                   absl::ZeroDuration());
    e.stream_credit = credit;
    FrameEncoder encoder;
    ByteBuffer out;
    ASSERT_TRUE(encoder.EncodeEnvelope(e, out).ok());
    FrameDecoder decoder;
    FrameValue back =
        DecodeOne(decoder, std::string(out.Readable().data(), out.size()));
    ASSERT_TRUE(std::holds_alternative<EnvelopeView>(back));
    EXPECT_EQ(std::get<EnvelopeView>(back).stream_credit, credit);
    EXPECT_EQ(Envelope::CopyOf(std::get<EnvelopeView>(back)), e);
  }
}

// Exactly-once (version 2): an owning Envelope's flag and settled mark
// reach the wire through the EnvelopeLike path (ExactlyOnceOf,
// AnsweredBelowOf) and come back, each on its own and together, up to the
// largest id.
TEST(FrameRoundTrip, OwningRequestKeepsExactlyOnceAndAnsweredBelow) {
  for (bool exactly_once : {false, true}) {
    for (uint64_t below :
         {uint64_t{0}, uint64_t{1}, uint64_t{1} << 40, ~uint64_t{0}}) {
      SCOPED_TRACE(absl::StrCat("exactly_once=", exactly_once,
                                " answered_below=", below));
      Envelope e = Envelope::Request(CorrelationId(5), Endpoint(2), "put",
                                     absl::Seconds(1));
      e.exactly_once = exactly_once;
      e.answered_below = CorrelationId(below);
      FrameEncoder encoder;
      ByteBuffer out;
      ASSERT_TRUE(encoder.EncodeEnvelope(e, out).ok());
      FrameDecoder decoder;
      FrameValue back =
          DecodeOne(decoder, std::string(out.Readable().data(), out.size()));
      ASSERT_TRUE(std::holds_alternative<EnvelopeView>(back));
      const EnvelopeView& view = std::get<EnvelopeView>(back);
      EXPECT_EQ(view.exactly_once, exactly_once);
      EXPECT_EQ(view.answered_below, CorrelationId(below));
      EXPECT_EQ(view.stream_credit, 0u);
      EXPECT_EQ(Envelope::CopyOf(view), e);
    }
  }
}

// The two fields are independent of each other and of the rest: setting
// one changes the bytes, and a frame with neither is the frame of a request
// that never heard of them.
TEST(FrameRoundTrip, ExactlyOnceFieldsChangeOnlyTheirOwnBits) {
  EnvelopeView plain{CorrelationId(9),
                     EnvelopeKind::kRequest,
                     Endpoint(4),
                     "x",
                     absl::Seconds(1),
                     absl::StatusCode::kOk,
                     {},
                     /*stream_credit=*/0,
                     /*exactly_once=*/false,
                     /*answered_below=*/CorrelationId()};
  EnvelopeView flagged = plain;
  flagged.exactly_once = true;
  EnvelopeView settled = plain;
  settled.answered_below = CorrelationId(8);
  EnvelopeView both = flagged;
  both.answered_below = CorrelationId(8);
  const std::string bytes[] = {EncodeOne(plain), EncodeOne(flagged),
                               EncodeOne(settled), EncodeOne(both)};
  for (size_t i = 0; i < 4; ++i) {
    for (size_t j = i + 1; j < 4; ++j) {
      EXPECT_NE(bytes[i], bytes[j]) << i << " vs " << j;
    }
    // Same length: the fields live in the fixed data section.
    EXPECT_EQ(bytes[i].size(), bytes[0].size());
  }
  const EnvelopeView* values[] = {&plain, &flagged, &settled, &both};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    FrameDecoder decoder;
    FrameValue back = DecodeOne(decoder, bytes[i]);
    EXPECT_TRUE(std::get<EnvelopeView>(back) == *values[i]);
  }
}

// An application record without the fields (written before version 2)
// encodes as a plain request with nothing settled.
struct RecordWithoutExactlyOnce {
  CorrelationId correlation_id;
  EnvelopeKind kind = EnvelopeKind::kRequest;
  Endpoint endpoint;
  std::string payload;
  absl::Duration timeout;
  absl::StatusCode error_code = absl::StatusCode::kOk;
  std::string error_message;
};

TEST(FrameRoundTrip, RecordWithoutTheFieldsEncodesAsNotExactlyOnce) {
  RecordWithoutExactlyOnce r{
      CorrelationId(6), EnvelopeKind::kRequest, Endpoint(1), "v1",
      absl::Seconds(1), absl::StatusCode::kOk,  ""};
  FrameEncoder encoder;
  ByteBuffer out;
  ASSERT_TRUE(encoder.EncodeEnvelope(r, out).ok());
  const std::string bytes(out.Readable().data(), out.size());
  FrameDecoder decoder;
  FrameValue back = DecodeOne(decoder, bytes);
  ASSERT_TRUE(std::holds_alternative<EnvelopeView>(back));
  EXPECT_FALSE(std::get<EnvelopeView>(back).exactly_once);
  EXPECT_FALSE(std::get<EnvelopeView>(back).answered_below.valid());
  EXPECT_EQ(bytes, EncodeOne(EnvelopeView{CorrelationId(6),
                                          EnvelopeKind::kRequest,
                                          Endpoint(1),
                                          "v1",
                                          absl::Seconds(1),
                                          absl::StatusCode::kOk,
                                          {},
                                          /*stream_credit=*/0,
                                          /*exactly_once=*/false,
                                          /*answered_below=*/CorrelationId()}));
}

// Every stream kind and the credit frame, on their own and back to back in
// one stream (the order a server writes a stream in), come back equal.
TEST(FrameRoundTrip, AStreamOfItemsEndAndCreditsComesBackInOrder) {
  const std::string items[] = {"", "a", std::string(1000, 'b'),
                               std::string("\0\0", 2)};
  std::vector<FrameValue> frames;
  frames.push_back(EnvelopeView{CorrelationId(11),
                                EnvelopeKind::kRequest,
                                Endpoint(5),
                                "from=a",
                                absl::Seconds(1),
                                absl::StatusCode::kOk,
                                {},
                                4096});
  for (const std::string& item : items) {
    frames.push_back(EnvelopeView{CorrelationId(11),
                                  EnvelopeKind::kStreamItem,
                                  Endpoint(5),
                                  item,
                                  absl::ZeroDuration(),
                                  absl::StatusCode::kOk,
                                  {}});
    frames.push_back(Credit{CorrelationId(11), item.size()});
  }
  frames.push_back(EnvelopeView{CorrelationId(11),
                                EnvelopeKind::kStreamEnd,
                                Endpoint(5),
                                {},
                                absl::ZeroDuration(),
                                absl::StatusCode::kOk,
                                {}});
  frames.push_back(EnvelopeView{CorrelationId(12),
                                EnvelopeKind::kError,
                                Endpoint(5),
                                {},
                                absl::ZeroDuration(),
                                absl::StatusCode::kResourceExhausted,
                                "out of credit"});
  const std::string stream = ::moonpool::wire::testing::EncodeAll(frames);
  FrameDecoder decoder;
  decoder.Feed(stream);
  for (const FrameValue& expected : frames) {
    SCOPED_TRACE(FrameKindName(expected));
    absl::StatusOr<const FrameValue*> frame = decoder.Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_NE(*frame, nullptr);
    EXPECT_TRUE(**frame == expected);
  }
  absl::StatusOr<const FrameValue*> end = decoder.Next();
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(*end, nullptr);
  EXPECT_TRUE(decoder.Finish().ok());
  EXPECT_EQ(decoder.frames_decoded(), frames.size());
}

TEST(FrameRoundTrip, SixteenMebibytePayloadWithARaisedLimit) {
  const size_t limit = size_t{17} << 20;
  std::string payload(size_t{16} << 20, '\0');
  for (size_t i = 0; i < payload.size(); i += 4093) payload[i] = char(i);
  EnvelopeView e{CorrelationId(1),
                 EnvelopeKind::kRequest,
                 kDefaultEndpoint,
                 payload,
                 absl::Seconds(3),
                 absl::StatusCode::kOk,
                 {}};
  const std::string bytes = EncodeOne(e, EncoderOptions{limit});
  FrameDecoder decoder(DecoderOptions{.max_frame_bytes = limit});
  FrameValue back = DecodeOne(decoder, bytes);
  ASSERT_TRUE(std::holds_alternative<EnvelopeView>(back));
  EXPECT_TRUE(std::get<EnvelopeView>(back) == e);
}

TEST(FrameRoundTrip, LargestPayloadUnderTheDefaultLimitFits) {
  // Body = 8 (segment table) + fixed words + payload; find the largest
  // payload the encoder accepts by its own limit and check it decodes.
  FrameEncoder encoder;
  ByteBuffer out;
  std::string payload(kDefaultMaxFrameBytes - 256, 'p');
  EnvelopeView e{CorrelationId(1),
                 EnvelopeKind::kRequest,
                 kDefaultEndpoint,
                 payload,
                 absl::ZeroDuration(),
                 absl::StatusCode::kOk,
                 {}};
  ASSERT_TRUE(encoder.Encode(e, out).ok());
  FrameDecoder decoder;
  FrameValue back =
      DecodeOne(decoder, std::string(out.Readable().data(), out.size()));
  EXPECT_EQ(std::get<EnvelopeView>(back).payload.size(), payload.size());
}

TEST(FrameEncoder, RejectsAPayloadOverTheLimitAndLeavesTheBufferUnchanged) {
  FrameEncoder encoder;
  ByteBuffer out;
  ASSERT_TRUE(encoder.Encode(Ping{1}, out).ok());
  const std::string before(out.Readable().data(), out.size());
  for (size_t size : {kDefaultMaxFrameBytes + 1, kDefaultMaxFrameBytes,
                      kDefaultMaxFrameBytes - 8}) {
    SCOPED_TRACE(size);
    std::string payload(size, 'x');
    absl::Status s = encoder.Encode(EnvelopeView{CorrelationId(1),
                                                 EnvelopeKind::kRequest,
                                                 kDefaultEndpoint,
                                                 payload,
                                                 absl::ZeroDuration(),
                                                 absl::StatusCode::kOk,
                                                 {}},
                                    out);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_EQ(std::string(out.Readable().data(), out.size()), before);
  }
}

TEST(FrameEncoder, RejectsValuesWithNoWireForm) {
  FrameEncoder encoder;
  ByteBuffer out;
  EnvelopeView bad_kind;
  bad_kind.kind = static_cast<EnvelopeKind>(9);
  EXPECT_EQ(encoder.Encode(bad_kind, out).code(),
            absl::StatusCode::kInvalidArgument);
  EnvelopeView bad_code;
  bad_code.error_code = static_cast<absl::StatusCode>(99);
  EXPECT_EQ(encoder.Encode(bad_code, out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(out.empty());
}

TEST(FrameEncoder, EncodesAfterAPartialWordAppendedByTheCaller) {
  // The slow path: the end of the buffer is not word-aligned.
  FrameEncoder encoder;
  ByteBuffer out;
  out.Append(std::string("abc"));
  ASSERT_TRUE(encoder.Encode(Pong{77}, out).ok());
  const std::string all(out.Readable().data(), out.size());
  EXPECT_EQ(all.substr(3), EncodeOne(Pong{77}));
}

TEST(FrameEncoder, TimeoutTravelsInMicrosecondsRoundedUp) {
  struct Case {
    absl::Duration sent;
    absl::Duration received;
  };
  const Case cases[] = {
      {absl::ZeroDuration(), absl::ZeroDuration()},
      {-absl::Seconds(1), absl::ZeroDuration()},
      {absl::Nanoseconds(1), absl::Microseconds(1)},
      {absl::Nanoseconds(1500), absl::Microseconds(2)},
      {absl::Seconds(5), absl::Seconds(5)},
      {absl::InfiniteDuration(), absl::InfiniteDuration()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::FormatDuration(c.sent));
    EnvelopeView e;
    e.correlation_id = CorrelationId(1);
    e.timeout = c.sent;
    FrameDecoder decoder;
    FrameValue back = DecodeOne(decoder, EncodeOne(e));
    EXPECT_EQ(std::get<EnvelopeView>(back).timeout, c.received);
  }
}

TEST(FrameEncoder, WritesTheSameBytesOverDirtyStorage) {
  // The encoder clears only the words Cap'n Proto allocates structs in and
  // overwrites the blobs' words itself: leftovers of earlier bytes in the
  // buffer's storage must not leak into a frame. Odd sizes leave padding in
  // the last word of each blob.
  FrameSet set = EveryKind();
  std::string odd_payload(1001, 'p');
  EnvelopeView error{CorrelationId(7),    EnvelopeKind::kError,
                     Endpoint(3),         odd_payload,
                     absl::Seconds(1),    absl::StatusCode::kNotFound,
                     "no such key: 12345"};
  set.frames.push_back(error);
  // Storage filled with `fill` first, then the frame encoded over it.
  auto encode_over = [](const FrameValue& frame, unsigned char fill) {
    ByteBuffer out;
    absl::Span<char> room = out.PrepareAppend(4096);
    std::memset(room.data(), fill, room.size());
    FrameEncoder encoder;
    EXPECT_TRUE(encoder.Encode(frame, out).ok());
    return std::string(out.Readable().data(), out.size());
  };
  for (const FrameValue& frame : set.frames) {
    const std::string clean = encode_over(frame, 0x00);
    EXPECT_EQ(encode_over(frame, 0xa5), clean);
    EXPECT_EQ(encode_over(frame, 0xff), clean);
  }
}

TEST(FrameEncoder, AllocatesNothingOnceTheBufferHasGrown) {
  // Structural check of the in-place path: encoding the same frame into a
  // cleared buffer leaves its storage where it was.
  FrameEncoder encoder;
  ByteBuffer out;
  std::string payload(1000, 'q');
  EnvelopeView e{CorrelationId(1),
                 EnvelopeKind::kRequest,
                 kDefaultEndpoint,
                 payload,
                 absl::ZeroDuration(),
                 absl::StatusCode::kOk,
                 {}};
  ASSERT_TRUE(encoder.Encode(e, out).ok());
  const char* storage = out.Readable().data();
  const size_t capacity = out.capacity();
  for (int i = 0; i < 100; ++i) {
    out.Clear();
    ASSERT_TRUE(encoder.Encode(e, out).ok());
  }
  EXPECT_EQ(out.Readable().data(), storage);
  EXPECT_EQ(out.capacity(), capacity);
}

}  // namespace
}  // namespace moonpool::wire
