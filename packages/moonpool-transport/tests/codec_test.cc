// Codec<T>: the payload bytes of each supported type, and decode errors as
// InvalidArgument rather than exceptions.
#include "moonpool/transport/codec.h"

#include <string>

#include "capnp/any.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "gtest/gtest.h"
#include "moonpool/transport/ping.capnp.h"

namespace moonpool::transport {
namespace {

TEST(Codec, StringIsItsOwnBytes) {
  std::string out = "stale";
  ASSERT_TRUE(Codec<std::string>::Encode(std::string("a\0b", 3), out).ok());
  EXPECT_EQ(out, std::string("a\0b", 3));
  EXPECT_EQ(*Codec<std::string>::Decode(out), out);
}

TEST(Codec, BytesRoundTripKeepsEveryByteValue) {
  Bytes in;
  for (int i = 0; i < 256; ++i) in.push_back(static_cast<uint8_t>(i));
  std::string wire;
  ASSERT_TRUE(Codec<Bytes>::Encode(in, wire).ok());
  EXPECT_EQ(wire.size(), 256u);
  EXPECT_EQ(*Codec<Bytes>::Decode(wire), in);
}

TEST(Codec, StringLikeValuesEncodeAsTheirBytes) {
  std::string out;
  ASSERT_TRUE(EncodePayload("literal", out).ok());
  EXPECT_EQ(out, "literal");
  ASSERT_TRUE(EncodePayload(absl::string_view("view"), out).ok());
  EXPECT_EQ(out, "view");
}

TEST(Codec, CapnpMessageRoundTripsThroughOwningReader) {
  CapnpMessage<schema::Ping> ping;
  ping.builder().setSequence(42);
  ping.builder().setSentMicros(7);
  ping.builder().setPayload(kj::StringPtr("abc").asBytes());
  std::string wire;
  ASSERT_TRUE(Codec<CapnpMessage<schema::Ping>>::Encode(ping, wire).ok());
  EXPECT_EQ(wire.size() % 8, 0u);

  absl::StatusOr<CapnpReader<schema::Ping>> read =
      Codec<CapnpReader<schema::Ping>>::Decode(wire);
  wire.assign(wire.size(), '\xff');  // the reader owns its copy
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->get().getSequence(), 42u);
  EXPECT_EQ(read->get().getSentMicros(), 7u);
  EXPECT_EQ(read->get().getPayload().size(), 3u);

  // A reader encodes back to the same bytes (forwarding a message).
  std::string again;
  ASSERT_TRUE(Codec<CapnpReader<schema::Ping>>::Encode(*read, again).ok());
  EXPECT_EQ(again, read->bytes());
}

TEST(Codec, CapnpDecodeRejectsPartialWordsAsInvalidArgument) {
  absl::StatusOr<CapnpReader<schema::Ping>> r =
      Codec<CapnpReader<schema::Ping>>::Decode("12345");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Codec<CapnpReader<schema::Ping>>::Decode("").ok());
}

TEST(Codec, CapnpDecodeRejectsGarbageAsInvalidArgument) {
  // A segment table claiming 1000 words in a 16-byte message.
  std::string garbage(
      "\x00\x00\x00\x00\xe8\x03\x00\x00"
      "\xff\xff\xff\xff\xff\xff\xff\xff",
      16);
  absl::StatusOr<CapnpReader<schema::Ping>> r =
      Codec<CapnpReader<schema::Ping>>::Decode(garbage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("malformed"), absl::string_view::npos);

  // A valid segment table whose root pointer points far outside it.
  std::string wild(
      "\x00\x00\x00\x00\x01\x00\x00\x00"
      "\xfc\xff\xff\x0f\x01\x00\x01\x00",
      16);
  absl::StatusOr<CapnpReader<schema::Ping>> w =
      Codec<CapnpReader<schema::Ping>>::Decode(wild);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Codec, CapnpDecodeRejectsAFieldPointerOfTheWrongKind) {
  // Found by fuzz/capnp_codec_fuzzer: Decode only followed every pointer
  // (totalSize), so a Ping whose payload pointer is a struct pointer was
  // accepted and getPayload() then threw in the caller's hands.
  capnp::MallocMessageBuilder message;
  message.getRoot<capnp::AnyPointer>()
      .initAsAnyStruct(2, 1)
      .getPointerSection()[0]
      .initAsAnyStruct(1, 0);
  const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  const kj::ArrayPtr<const char> bytes = words.asChars();
  absl::StatusOr<CapnpReader<schema::Ping>> r =
      Codec<CapnpReader<schema::Ping>>::Decode(
          absl::string_view(bytes.begin(), bytes.size()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("non-list pointer"),
            absl::string_view::npos)
      << r.status();
}

TEST(Codec, CapnpDecodeRejectsCapabilityPointers) {
  // Found by fuzz/capnp_codec_fuzzer: a capability pointer in a field
  // unknown to T passed Decode, and copying the message (setRoot) threw.
  std::string wire(
      "\x00\x00\x00\x00\x03\x00\x00\x00"   // one segment of 3 words
      "\x00\x00\x00\x00\x00\x00\x02\x00"   // root: 0 data words, 2 pointers
      "\x00\x00\x00\x00\x00\x00\x00\x00"   // payload: null
      "\x03\x00\x00\x00\x00\x00\x00\x00",  // capability #0
      32);
  absl::StatusOr<CapnpReader<schema::Ping>> r =
      Codec<CapnpReader<schema::Ping>>::Decode(wire);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("capability"), absl::string_view::npos)
      << r.status();
}

TEST(Codec, CapnpReaderReadsPastTheTraversalLimitWithoutThrowing) {
  // capnp's traversal limit (64 MiB by default) is cumulative per reader:
  // a valid 1 MiB payload read 65 times used to throw from getPayload().
  CapnpMessage<schema::Ping> ping;
  ping.builder().initPayload(1 << 20);
  std::string wire;
  ASSERT_TRUE(Codec<CapnpMessage<schema::Ping>>::Encode(ping, wire).ok());
  absl::StatusOr<CapnpReader<schema::Ping>> read =
      Codec<CapnpReader<schema::Ping>>::Decode(wire);
  ASSERT_TRUE(read.ok()) << read.status();
  size_t total = 0;
  for (int i = 0; i < 100; ++i) total += read->get().getPayload().size();
  EXPECT_EQ(total, size_t{100} << 20);
}

}  // namespace
}  // namespace moonpool::transport
