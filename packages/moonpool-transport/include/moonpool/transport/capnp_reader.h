// CapnpReader<T> is a received Cap'n Proto message whose root is the struct
// T, decoded by Codec (codec.h): it owns a word-aligned copy of the bytes and
// the capnp::FlatArrayMessageReader over them, so get() stays valid for as
// long as the CapnpReader does, after the transport's receive buffer has
// moved on.
//
//   absl::StatusOr<CapnpReader<schema::Pong>> pong = co_await
//       client.Request<CapnpReader<schema::Pong>>(addr, ping);
//   if (pong.ok()) Use(pong->get().getSequence());
//
// Decoding validates the whole message once, so reading fields of get() does
// not throw for a message Codec accepted, however often it is read; a
// malformed one is an InvalidArgument from Decode instead. Validation follows
// every pointer (totalSize()), then reads every field as T's schema types it
// (a pointer of the wrong kind, a Text without its NUL, a list of the wrong
// element size throw only there), each pass within capnp's default traversal
// and nesting limits. The reader kept for get() has no traversal limit: the
// limit is cumulative per reader, and a validated message read many times
// (a 1 MiB payload read 65 times) would otherwise start to throw. A message
// holding a capability pointer is refused: a payload carries no capability
// table, so reading or copying one would throw.
//
// What it is not: a builder (see CapnpMessage<T>, capnp_message.h). Movable,
// not copyable.
#ifndef MOONPOOL_TRANSPORT_CAPNP_READER_H_
#define MOONPOOL_TRANSPORT_CAPNP_READER_H_

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "capnp/dynamic.h"
#include "capnp/schema.h"
#include "capnp/serialize.h"
#include "kj/array.h"
#include "kj/exception.h"
#include "moonpool/transport/capnp_message.h"

namespace moonpool::transport {

namespace internal {

// Reads `value` and everything under it the way generated accessors do:
// each pointer as the kind its field's type says, each Text up to its NUL,
// each list element of a pointer type. Throws (kj::Exception) what those
// accessors would throw. Lists of data (numbers, enums, void) are checked by
// getting them; their elements need no reading.
inline void ReadEveryField(const capnp::DynamicValue::Reader& value);

inline void ReadEveryField(const capnp::DynamicStruct::Reader& s) {
  for (capnp::StructSchema::Field field : s.getSchema().getNonUnionFields()) {
    ReadEveryField(s.get(field));
  }
  KJ_IF_MAYBE (field, s.which()) {
    ReadEveryField(s.get(*field));
  }
}

inline void ReadEveryField(const capnp::DynamicValue::Reader& value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT:
      ReadEveryField(value.as<capnp::DynamicStruct>());
      break;
    case capnp::DynamicValue::LIST: {
      const capnp::DynamicList::Reader list = value.as<capnp::DynamicList>();
      switch (list.getSchema().whichElementType()) {
        case capnp::schema::Type::TEXT:
        case capnp::schema::Type::DATA:
        case capnp::schema::Type::LIST:
        case capnp::schema::Type::STRUCT:
          for (const capnp::DynamicValue::Reader element : list) {
            ReadEveryField(element);
          }
          break;
        default:
          break;
      }
      break;
    }
    default:
      // Text and Data were checked by getting them; the rest are values.
      break;
  }
}

}  // namespace internal

template <CapnpStruct T>
class CapnpReader {
 public:
  CapnpReader(CapnpReader&&) noexcept = default;
  CapnpReader& operator=(CapnpReader&&) noexcept = default;

  // Copies `bytes` (one flat unpacked message) and validates it.
  // InvalidArgument when it is not a whole number of words, or not a valid
  // message with a root of type T (the kj exception's text in the message).
  [[nodiscard]] static absl::StatusOr<CapnpReader> Parse(
      absl::string_view bytes) {
    if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a Cap'n Proto message is a positive whole number of 8-byte "
          "words; got ",
          bytes.size(), " bytes"));
    }
    kj::Array<capnp::word> words =
        kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.data(), bytes.size());
    absl::Status status;
    std::unique_ptr<capnp::FlatArrayMessageReader> reader;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   // Each check on its own reader, with the default limits.
                   // Follows every pointer once, fields unknown to T too.
                   capnp::FlatArrayMessageReader all(words);
                   // No capability table comes with a payload: a capability
                   // pointer is invalid, and copying it would throw.
                   KJ_REQUIRE(all.getRoot<T>().totalSize().capCount == 0,
                              "capability pointers are not supported");
                   // Reads every field as T's accessors will.
                   capnp::FlatArrayMessageReader typed(words);
                   internal::ReadEveryField(typed.getRoot<capnp::DynamicStruct>(
                       capnp::Schema::from<T>()));
                   capnp::ReaderOptions unlimited;
                   unlimited.traversalLimitInWords = UINT64_MAX;
                   reader = std::make_unique<capnp::FlatArrayMessageReader>(
                       words, unlimited);
                 })) {
      // kj's description may hold NUL bytes (it quotes what it checked).
      const kj::StringPtr d = e->getDescription();
      status = absl::InvalidArgumentError(absl::StrCat(
          "malformed Cap'n Proto message: ",
          absl::CHexEscape(absl::string_view(d.begin(), d.size()))));
    }
    if (!status.ok()) return status;
    return CapnpReader(std::move(words), std::move(reader));
  }

  // The root. Valid as long as this CapnpReader.
  typename T::Reader get() const { return reader_->template getRoot<T>(); }

  // The message bytes as received (whole words).
  absl::string_view bytes() const {
    return absl::string_view(reinterpret_cast<const char*>(words_.begin()),
                             words_.size() * sizeof(capnp::word));
  }

 private:
  CapnpReader(kj::Array<capnp::word> words,
              std::unique_ptr<capnp::FlatArrayMessageReader> reader)
      : words_(std::move(words)), reader_(std::move(reader)) {}

  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;  // reads words_
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_CAPNP_READER_H_
