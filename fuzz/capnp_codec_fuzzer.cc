// libFuzzer target for the transport's typed Cap'n Proto codec
// (moonpool/transport/codec.h, capnp_reader.h): arbitrary bytes decoded as
// CapnpReader<T> must give a Status or a reader that can be read in full,
// as often as the caller likes, without an exception. The input layout and
// the list of checks are in README.md beside this file.

#include <capnp/message.h>
#include <kj/exception.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "fuzz_util.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/wire/frame.capnp.h"

namespace moonpool::transport {
namespace {

// Full traversals of every accepted message: a reader must not run out of
// its traversal budget however often it is read.
constexpr int kTraversals = 4;
// capnp::ReaderOptions' default: no single traversal may cost more.
constexpr uint64_t kTraversalLimitWords =
    capnp::ReaderOptions().traversalLimitInWords;

// Sums every byte read, so that no read is optimised away and ASan sees each.
uint64_t sink = 0;

void Touch(capnp::Data::Reader bytes) {
  for (kj::byte b : bytes) sink += b;
}
void Touch(capnp::Text::Reader text) {
  // Text is NUL-terminated within its blob.
  MOONPOOL_FUZZ_CHECK(text.cStr()[text.size()] == '\0');
  for (char c : text) sink += static_cast<uint8_t>(c);
}

// Reads every field; ping.capnp's Ping and Pong have the same fields.
template <typename Reader>
void ReadAll(Reader r) {
  sink += r.getSequence() + r.getSentMicros();
  sink += r.hasPayload();
  Touch(r.getPayload());
}

void ReadAll(wire::schema::Frame::Reader f) {
  switch (f.which()) {
    case wire::schema::Frame::HELLO: {
      auto h = f.getHello();
      sink += h.getMagic() + h.getProtocolVersion() + h.getIncarnation() +
              h.getMaxProtocolVersion();
      Touch(h.getPeerName());
      break;
    }
    case wire::schema::Frame::ENVELOPE: {
      auto e = f.getEnvelope();
      sink += e.getCorrelationId() + static_cast<uint16_t>(e.getKind()) +
              e.getEndpoint() + e.getTimeoutMicros() + e.getErrorCode() +
              e.getExactlyOnce() + e.getAnsweredBelow() + e.getStreamCredit();
      Touch(e.getPayload());
      Touch(e.getErrorMessage());
      break;
    }
    case wire::schema::Frame::PING:
      sink += f.getPing();
      break;
    case wire::schema::Frame::PONG:
      sink += f.getPong();
      break;
    case wire::schema::Frame::GOODBYE: {
      auto g = f.getGoodbye();
      sink += g.getLastCorrelationId();
      Touch(g.getReason());
      break;
    }
    case wire::schema::Frame::CANCEL:
      sink += f.getCancel();
      break;
    case wire::schema::Frame::CREDIT: {
      auto c = f.getCredit();
      sink += c.getCorrelationId() + c.getBytes();
      break;
    }
    default:
      // A discriminant from a newer schema: nothing more to read.
      sink += static_cast<uint16_t>(f.which());
      break;
  }
}

// Runs `read`, trapping with kj's description if it throws.
template <typename F>
void MustNotThrow(const char* what, F&& read) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(read)) {
    const kj::StringPtr d = e->getDescription();
    std::fprintf(
        stderr, "%s threw on a message Decode accepted: %s\n", what,
        absl::CHexEscape(absl::string_view(d.begin(), d.size())).c_str());
    __builtin_trap();
  }
}

template <typename T>
void Check(absl::string_view bytes) {
  absl::StatusOr<CapnpReader<T>> decoded = Codec<CapnpReader<T>>::Decode(bytes);
  if (bytes.empty() || bytes.size() % 8 != 0) {
    MOONPOOL_FUZZ_CHECK(!decoded.ok());
  }
  if (!decoded.ok()) {
    MOONPOOL_FUZZ_CHECK(decoded.status().code() ==
                        absl::StatusCode::kInvalidArgument);
    return;
  }
  const CapnpReader<T>& reader = *decoded;
  // The reader owns a copy of exactly the bytes it was given.
  MOONPOOL_FUZZ_CHECK(reader.bytes() == bytes);
  MOONPOOL_FUZZ_CHECK(reader.bytes().data() != bytes.data());

  // Read in full, again and again, as a handler may.
  uint64_t words = 0;
  MustNotThrow("reading every field", [&] {
    for (int i = 0; i < kTraversals; ++i) {
      const capnp::MessageSize size = reader.get().totalSize();
      MOONPOOL_FUZZ_CHECK(size.wordCount <= kTraversalLimitWords);
      MOONPOOL_FUZZ_CHECK(i == 0 || size.wordCount == words);
      words = size.wordCount;
      ReadAll(reader.get());
    }
  });

  // Forwarding: Encode gives back the same bytes, which decode again.
  std::string again;
  MOONPOOL_FUZZ_CHECK(Codec<CapnpReader<T>>::Encode(reader, again).ok());
  MOONPOOL_FUZZ_CHECK(again == bytes);
  absl::StatusOr<CapnpReader<T>> redecoded =
      Codec<CapnpReader<T>>::Decode(again);
  MOONPOOL_FUZZ_CHECK(redecoded.ok());

  // Copying into a builder (a handler that echoes the message back) gives
  // a message of at most the traversed size, that decodes to the same.
  CapnpMessage<T> copy;
  MustNotThrow("copying into a builder",
               [&] { copy.message().setRoot(reader.get()); });
  std::string encoded;
  MOONPOOL_FUZZ_CHECK(Codec<CapnpMessage<T>>::Encode(copy, encoded).ok());
  // Segment table and root pointer beyond the words traversed; a
  // multi-segment copy may add a table entry and a far pointer per segment.
  absl::StatusOr<CapnpReader<T>> copied =
      Codec<CapnpReader<T>>::Decode(encoded);
  MOONPOOL_FUZZ_CHECK(copied.ok());
  MustNotThrow("reading the copy", [&] {
    MOONPOOL_FUZZ_CHECK(copied->get().totalSize().wordCount == words);
    ReadAll(copied->get());
  });
}

}  // namespace
}  // namespace moonpool::transport

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moonpool::transport;  // NOLINT(build/namespaces): entry point
  if (size < 1) return -1;
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1),
                                size - 1);
  switch (data[0] & 3) {
    case 0:
      Check<schema::Ping>(bytes);
      break;
    case 1:
      Check<schema::Pong>(bytes);
      break;
    default:
      Check<moonpool::wire::schema::Frame>(bytes);
      break;
  }
  static const bool verbose = std::getenv("MOONPOOL_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "type %d, %zu bytes, sink %llu\n", data[0] & 3,
                 size - 1, static_cast<unsigned long long>(sink));
  }
  return 0;
}
