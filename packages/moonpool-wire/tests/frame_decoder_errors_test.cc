// Every way a frame stream can be bad gives the Status DESIGN.md section 5
// documents, and the error is terminal.
#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_header.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::EncodeOne;
using ::moonpool::wire::testing::FrameAround;

std::string BodyOf(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  return std::string(reinterpret_cast<const char*>(flat.begin()),
                     flat.size() * sizeof(capnp::word));
}

std::string HeaderClaiming(uint32_t length) {
  char header[16] = {};
  std::memcpy(header, &length, 4);
  const uint32_t check =
      static_cast<uint32_t>(BodyChecksum(absl::Span<const char>(header, 12)));
  std::memcpy(header + 12, &check, 4);
  return std::string(header, 16);
}

absl::Status DecodeStatus(const std::string& bytes,
                          DecoderOptions options = {}) {
  FrameDecoder decoder(options);
  decoder.Feed(bytes);
  absl::StatusOr<const FrameValue*> frame = decoder.Next();
  if (!frame.ok()) return frame.status();
  if (*frame == nullptr) return decoder.Finish();
  return absl::OkStatus();
}

std::string ValidRequest() {
  EnvelopeView e;
  e.correlation_id = CorrelationId(1);
  e.payload = "some payload bytes";
  return EncodeOne(e);
}

TEST(FrameDecoderErrors, BadHeaderCheckIsDataLoss) {
  std::string frame = ValidRequest();
  frame[13] ^= 0x01;
  absl::Status s = DecodeStatus(frame);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("header"), absl::string_view::npos) << s;
}

TEST(FrameDecoderErrors, ZeroLengthIsInvalidArgument) {
  EXPECT_EQ(DecodeStatus(HeaderClaiming(0)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FrameDecoderErrors, LengthNotAMultipleOfEightIsInvalidArgument) {
  EXPECT_EQ(DecodeStatus(HeaderClaiming(20)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FrameDecoderErrors, DecoderRejectsOversizedFrameBeforeAllocating) {
  for (uint32_t claimed : {uint32_t{(16u << 20) + 8}, uint32_t{0xFFFFFFF8}}) {
    SCOPED_TRACE(claimed);
    FrameDecoder decoder;
    decoder.Feed(HeaderClaiming(claimed));
    absl::StatusOr<const FrameValue*> frame = decoder.Next();
    EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted);
    // Nothing was reserved for the claimed body.
    EXPECT_LT(decoder.capacity(), 1024u);
    decoder.PrepareAppend(1);
    EXPECT_LT(decoder.capacity(), 1024u);
  }
}

TEST(FrameDecoderErrors, LimitIsConfigurable) {
  const std::string frame = ValidRequest();
  const size_t body = frame.size() - kFrameHeaderBytes;
  EXPECT_TRUE(
      DecodeStatus(frame, DecoderOptions{.max_frame_bytes = body}).ok());
  EXPECT_EQ(
      DecodeStatus(frame, DecoderOptions{.max_frame_bytes = body - 8}).code(),
      absl::StatusCode::kResourceExhausted);
}

TEST(FrameDecoderErrors, ChecksumMismatchIsDataLoss) {
  std::string frame = ValidRequest();
  frame[frame.size() - 3] ^= 0x40;
  absl::Status s = DecodeStatus(frame);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("checksum"), absl::string_view::npos) << s;
}

TEST(FrameDecoderErrors, TruncatedBodyIsDataLossAtEndOfStream) {
  const std::string frame = ValidRequest();
  FrameDecoder decoder;
  decoder.Feed(absl::string_view(frame).substr(0, frame.size() - 8));
  absl::StatusOr<const FrameValue*> next = decoder.Next();
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, nullptr);  // waiting for the rest
  absl::Status s = decoder.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("body"), absl::string_view::npos) << s;
}

TEST(FrameDecoderErrors, TruncatedHeaderIsDataLossAtEndOfStream) {
  FrameDecoder decoder;
  decoder.Feed(absl::string_view(ValidRequest()).substr(0, 9));
  ASSERT_EQ(*decoder.Next(), nullptr);
  EXPECT_EQ(decoder.Finish().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameDecoderErrors, GarbageWordsAreNotAFrame) {
  std::string body(64, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 37);
  absl::Status s = DecodeStatus(FrameAround(body));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(FrameDecoderErrors, SegmentTableLongerThanTheBodyIsNotAFrame) {
  // One segment of 100 words claimed, 1 word present.
  std::string body(16, '\0');
  const uint32_t words = 100;
  std::memcpy(body.data() + 4, &words, 4);
  EXPECT_EQ(DecodeStatus(FrameAround(body)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FrameDecoderErrors, BytesAfterTheMessageAreNotAFrame) {
  capnp::MallocMessageBuilder message;
  message.initRoot<schema::Frame>().setPing(1);
  const std::string body = BodyOf(message) + std::string(8, '\0');
  absl::Status s = DecodeStatus(FrameAround(body));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(FrameDecoderErrors, PointerOutOfBoundsIsNotAFrame) {
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<schema::Frame>().initEnvelope();
  e.initPayload(16);
  std::string body = BodyOf(message);
  // Words: [segment table][root ptr][Frame data x2][Frame ptr][Envelope
  // data][payload ptr]... Make the payload pointer's offset huge.
  const size_t envelope_data_words = capnp::Schema::from<schema::Envelope>()
                                         .getProto()
                                         .getStruct()
                                         .getDataWordCount();
  const size_t payload_ptr = 8 + 8 * (1 + 2 + 1 + envelope_data_words);
  uint32_t lo;
  std::memcpy(&lo, body.data() + payload_ptr, 4);
  lo |= 0x7FFF0000u;  // offset field (bits 2..31), keep the kind bits
  std::memcpy(body.data() + payload_ptr, &lo, 4);
  absl::Status s = DecodeStatus(FrameAround(body));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(FrameDecoderErrors, UnknownFrameKindIsNotAFrame) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<schema::Frame>();
  root.setPing(1);
  const uint32_t offset = capnp::Schema::from<schema::Frame>()
                              .getProto()
                              .getStruct()
                              .getDiscriminantOffset();
  capnp::AnyStruct::Builder any = capnp::toAny(root);
  const uint16_t unknown = 9;
  std::memcpy(any.getDataSection().begin() + 2 * offset, &unknown, 2);
  absl::Status s = DecodeStatus(FrameAround(BodyOf(message)));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(FrameDecoderErrors, UnknownEnvelopeKindIsNotAFrame) {
  capnp::MallocMessageBuilder message;
  // One past the last kind the schema knows (streamEnd, version 2).
  message.initRoot<schema::Frame>().initEnvelope().setKind(
      static_cast<schema::Envelope::Kind>(6));
  EXPECT_EQ(DecodeStatus(FrameAround(BodyOf(message))).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FrameDecoderErrors, UnknownStatusCodeReadsAsUnknown) {
  // A newer peer's code is not an error, just not understood.
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<schema::Frame>().initEnvelope();
  e.setKind(schema::Envelope::Kind::ERROR);
  e.setErrorCode(1000);
  FrameDecoder decoder;
  decoder.Feed(FrameAround(BodyOf(message)));
  absl::StatusOr<const FrameValue*> frame = decoder.Next();
  ASSERT_TRUE(frame.ok() && *frame != nullptr) << frame.status();
  EXPECT_EQ(std::get<EnvelopeView>(**frame).error_code,
            absl::StatusCode::kUnknown);
}

TEST(FrameDecoderErrors, ErrorIsTerminalAndLaterFramesAreNotRead) {
  std::string bad = ValidRequest();
  bad[0] ^= 0x08;
  FrameDecoder decoder;
  decoder.Feed(ValidRequest());
  decoder.Feed(bad);
  decoder.Feed(ValidRequest());
  absl::StatusOr<const FrameValue*> first = decoder.Next();
  ASSERT_TRUE(first.ok() && *first != nullptr);
  absl::StatusOr<const FrameValue*> second = decoder.Next();
  ASSERT_EQ(second.status().code(), absl::StatusCode::kDataLoss);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(decoder.Next().status(), second.status());
  }
  EXPECT_EQ(decoder.status(), second.status());
  EXPECT_EQ(decoder.Finish(), second.status());
  EXPECT_EQ(decoder.frames_decoded(), 1u);
}

TEST(FrameDecoderErrors, FinishWithUnreadFramesSaysSo) {
  FrameDecoder decoder;
  decoder.Feed(ValidRequest());
  absl::Status s = decoder.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("Next()"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace moonpool::wire
