// Codec<T> turns a typed message into the bytes of an envelope's payload and
// back. ClientTransport::Request / Send and ServerTransport::Reply use it, so
// a service speaks in its own types:
//
//   auto pong = co_await client.Request<CapnpReader<schema::Pong>>(addr, ping);
//
// Provided here:
//   - std::string: the bytes as they are;
//   - Bytes (std::vector<uint8_t>): raw binary, for code that keeps bytes as
//     numbers rather than text;
//   - CapnpMessage<T> (encode) and CapnpReader<T> (decode, and encode again
//     to forward a message) for any Cap'n Proto struct T: one flat, unpacked
//     message (capnp's standard stream framing), no packing.
//
// Add your own by specialising Codec<T> with
//   static absl::Status Encode(const T& value, std::string& out);
//   static absl::StatusOr<T> Decode(absl::string_view bytes);
// Encode replaces `out`'s contents (it may reuse its capacity); Decode copies
// what it keeps (the view is the transport's receive buffer, valid only during
// the call). Neither throws: a value that does not decode is an
// InvalidArgument, which the caller of Request receives as its outcome.
#ifndef MOONPOOL_TRANSPORT_CODEC_H_
#define MOONPOOL_TRANSPORT_CODEC_H_

#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "capnp/serialize.h"
#include "kj/exception.h"
#include "kj/io.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"

namespace moonpool::transport {

// Raw binary payload bytes.
using Bytes = std::vector<uint8_t>;

// Unspecialised: T has no codec (a compile error names it).
template <typename T>
struct Codec;

// T can be sent: Codec<T>::Encode exists.
template <typename T>
concept Encodable = requires(const T& value, std::string& out) {
  { Codec<T>::Encode(value, out) } -> std::same_as<absl::Status>;
};

// T can be received: Codec<T>::Decode exists.
template <typename T>
concept Decodable = requires(absl::string_view bytes) {
  { Codec<T>::Decode(bytes) } -> std::same_as<absl::StatusOr<T>>;
};

template <>
struct Codec<std::string> {
  [[nodiscard]] static absl::Status Encode(const std::string& value,
                                           std::string& out) {
    out.assign(value);
    return absl::OkStatus();
  }
  [[nodiscard]] static absl::StatusOr<std::string> Decode(
      absl::string_view bytes) {
    return std::string(bytes);
  }
};

template <>
struct Codec<Bytes> {
  [[nodiscard]] static absl::Status Encode(const Bytes& value,
                                           std::string& out) {
    out.assign(reinterpret_cast<const char*>(value.data()), value.size());
    return absl::OkStatus();
  }
  [[nodiscard]] static absl::StatusOr<Bytes> Decode(absl::string_view bytes) {
    const auto* begin = reinterpret_cast<const uint8_t*>(bytes.data());
    return Bytes(begin, begin + bytes.size());
  }
};

namespace internal {

// Writes `message` flat and unpacked into `out`, sized exactly: one
// allocation (the string's, when its capacity is short), no intermediate
// array. A one-segment message (the usual case) is its segment table, one
// word, then its segment in one copy, the bytes capnp::writeMessage writes;
// more segments go through writeMessage.
[[nodiscard]] inline absl::Status EncodeCapnp(capnp::MessageBuilder& message,
                                              std::string& out) {
  absl::Status status;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                 const kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>
                     segments = message.getSegmentsForOutput();
                 if (segments.size() == 1) {
                   const size_t bytes =
                       segments[0].size() * sizeof(capnp::word);
                   out.resize(sizeof(capnp::word) + bytes);
                   // Little-endian u32 segment count minus one (0), then the
                   // segment's size in words.
                   const uint32_t table[2] = {
                       0, static_cast<uint32_t>(segments[0].size())};
                   unsigned char* p =
                       reinterpret_cast<unsigned char*>(out.data());
                   for (int i = 0; i < 2; ++i) {
                     for (int b = 0; b < 4; ++b) {
                       p[4 * i + b] =
                           static_cast<unsigned char>(table[i] >> (8 * b));
                     }
                   }
                   std::memcpy(p + sizeof(capnp::word), segments[0].begin(),
                               bytes);
                   return;
                 }
                 const size_t words =
                     capnp::computeSerializedSizeInWords(segments);
                 out.resize(words * sizeof(capnp::word));
                 kj::ArrayOutputStream stream(kj::arrayPtr(
                     reinterpret_cast<kj::byte*>(out.data()), out.size()));
                 capnp::writeMessage(stream, segments);
               })) {
    // kj's description may hold NUL bytes (it quotes what it checked).
    const kj::StringPtr d = e->getDescription();
    status = absl::InternalError(
        absl::StrCat("encoding a Cap'n Proto message failed: ",
                     absl::CHexEscape(absl::string_view(d.begin(), d.size()))));
  }
  return status;
}

}  // namespace internal

template <CapnpStruct T>
struct Codec<CapnpMessage<T>> {
  [[nodiscard]] static absl::Status Encode(const CapnpMessage<T>& value,
                                           std::string& out) {
    return internal::EncodeCapnp(value.message(), out);
  }
};

template <CapnpStruct T>
struct Codec<CapnpReader<T>> {
  // The received bytes again (they are one valid message already).
  [[nodiscard]] static absl::Status Encode(const CapnpReader<T>& value,
                                           std::string& out) {
    const absl::string_view bytes = value.bytes();
    out.assign(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  // InvalidArgument when `bytes` is not a valid message rooted at T.
  [[nodiscard]] static absl::StatusOr<CapnpReader<T>> Decode(
      absl::string_view bytes) {
    return CapnpReader<T>::Parse(bytes);
  }
};

// What the transport accepts as an outgoing payload: anything with a codec,
// or anything that is already bytes (a string literal, absl::string_view).
template <typename T>
concept Payload =
    Encodable<T> || std::convertible_to<const T&, absl::string_view>;

// Writes `value`'s bytes into `out` (replacing what it held). Bytes-like
// values are copied as they are; the rest go through Codec<T>::Encode.
template <Payload T>
[[nodiscard]] absl::Status EncodePayload(const T& value, std::string& out) {
  if constexpr (std::convertible_to<const T&, absl::string_view>) {
    const absl::string_view bytes = value;
    out.assign(bytes.data(), bytes.size());
    return absl::OkStatus();
  } else {
    return Codec<T>::Encode(value, out);
  }
}

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_CODEC_H_
