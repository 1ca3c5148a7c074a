#include "frame_body_reader.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cassert>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "envelope_fast_path.h"
#include "kj/exception.h"
#include "moonpool/wire/frame.capnp.h"

namespace moonpool::wire::internal {
namespace {

constexpr size_t kWord = sizeof(capnp::word);
// Reading a validated body again (as the decoder does to extract fields)
// counts against Cap'n Proto's traversal limit; this bounds how much work a
// hostile body can cause, e.g. many pointers to one large blob.
constexpr uint64_t kTraversalFactor = 4;

absl::string_view ViewOf(capnp::Text::Reader text) {
  return absl::string_view(text.cStr(), text.size());
}

absl::string_view ViewOf(capnp::Data::Reader data) {
  return absl::string_view(reinterpret_cast<const char*>(data.begin()),
                           data.size());
}

}  // namespace

absl::Status ReadFrameBody(absl::Span<const char> body, FrameValue& out) {
  // The buffer keeps every frame word-aligned (byte_buffer.h), which is what
  // makes reading in place possible.
  assert(reinterpret_cast<uintptr_t>(body.data()) % kWord == 0);
  const kj::ArrayPtr<const capnp::word> words(
      reinterpret_cast<const capnp::word*>(body.data()), body.size() / kWord);
  capnp::ReaderOptions reader_options;
  reader_options.traversalLimitInWords = kTraversalFactor * words.size() + 64;
  try {
    capnp::FlatArrayMessageReader reader(words, reader_options);
    if (reader.getEnd() != words.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("frame body is not one Frame message: ",
                       (words.end() - reader.getEnd()) * kWord,
                       " bytes follow the message"));
    }
    schema::Frame::Reader root = reader.getRoot<schema::Frame>();
    // Walks every pointer, so a malformed message fails here, not later.
    root.totalSize();
    switch (root.which()) {
      case schema::Frame::HELLO: {
        schema::Hello::Reader h = root.getHello();
        out =
            Hello{h.getMagic(), h.getProtocolVersion(), ViewOf(h.getPeerName()),
                  h.getIncarnation(), h.getMaxProtocolVersion()};
        break;
      }
      case schema::Frame::ENVELOPE: {
        schema::Envelope::Reader e = root.getEnvelope();
        const auto kind = static_cast<uint16_t>(e.getKind());
        if (kind > static_cast<uint16_t>(kLastEnvelopeKind)) {
          return absl::InvalidArgumentError(
              absl::StrCat("envelope has unknown kind ", kind));
        }
        out = EnvelopeView{CorrelationId(e.getCorrelationId()),
                           static_cast<EnvelopeKind>(kind),
                           Endpoint(e.getEndpoint()),
                           ViewOf(e.getPayload()),
                           TimeoutFromMicros(e.getTimeoutMicros()),
                           StatusCodeFromWire(e.getErrorCode()),
                           ViewOf(e.getErrorMessage()),
                           e.getStreamCredit(),
                           e.getExactlyOnce(),
                           CorrelationId(e.getAnsweredBelow())};
        break;
      }
      case schema::Frame::PING:
        out = Ping{root.getPing()};
        break;
      case schema::Frame::PONG:
        out = Pong{root.getPong()};
        break;
      case schema::Frame::GOODBYE: {
        schema::Goodbye::Reader g = root.getGoodbye();
        out = Goodbye{CorrelationId(g.getLastCorrelationId()),
                      ViewOf(g.getReason())};
        break;
      }
      case schema::Frame::CANCEL:
        out = Cancel{CorrelationId(root.getCancel())};
        break;
      case schema::Frame::CREDIT: {
        schema::Credit::Reader c = root.getCredit();
        out = Credit{CorrelationId(c.getCorrelationId()), c.getBytes()};
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "frame has unknown kind ", static_cast<int>(root.which())));
    }
  } catch (const kj::Exception& e) {
    // kj's description may hold NUL bytes; take all of it, escaped.
    const kj::StringPtr d = e.getDescription();
    return absl::InvalidArgumentError(
        absl::StrCat("frame body is not a valid Frame message: ",
                     absl::CHexEscape(absl::string_view(d.begin(), d.size()))));
  }
  return absl::OkStatus();
}

}  // namespace moonpool::wire::internal
