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
// Decoding validates the whole message once (every pointer is followed), so
// reading fields of get() does not throw for a message Codec accepted; a
// malformed one is an InvalidArgument from Decode instead.
//
// What it is not: a builder (see CapnpMessage<T>, capnp_message.h). Movable,
// not copyable.
#ifndef MOONPOOL_TRANSPORT_CAPNP_READER_H_
#define MOONPOOL_TRANSPORT_CAPNP_READER_H_

#include <cstring>
#include <exception>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "capnp/serialize.h"
#include "kj/array.h"
#include "kj/exception.h"
#include "moonpool/transport/capnp_message.h"

namespace moonpool::transport {

template <CapnpStruct T>
class CapnpReader {
 public:
  CapnpReader(CapnpReader&&) noexcept = default;
  CapnpReader& operator=(CapnpReader&&) noexcept = default;

  // Copies `bytes` (one flat unpacked message) and validates it.
  // InvalidArgument when it is not a whole number of words, or not a valid
  // message with a root of type T (the kj exception's text in the message).
  static absl::StatusOr<CapnpReader> Parse(absl::string_view bytes) {
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
                   reader =
                       std::make_unique<capnp::FlatArrayMessageReader>(words);
                   // Follows every pointer once: malformed data fails here,
                   // not later in the caller's field reads.
                   (void)reader->getRoot<T>().totalSize();
                 })) {
      status = absl::InvalidArgumentError(
          absl::StrCat("malformed Cap'n Proto message: ",
                       absl::string_view(e->getDescription().cStr())));
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
