#include "moonpool/wire/frame_encoder.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cassert>
#include <cstdint>
#include <cstring>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "envelope_fast_path.h"
#include "in_place_message_builder.h"
#include "kj/exception.h"
#include "little_endian.h"
#include "moonpool/wire/frame.capnp.h"

namespace moonpool::wire {
namespace {

using internal::InPlaceMessageBuilder;
using internal::StoreLittleEndian;

constexpr size_t kWord = sizeof(capnp::word);
// Root pointer, Frame, and the largest fixed part of any frame kind, with
// room to spare: a short estimate costs a heap segment and a copy.
constexpr size_t kOverheadWords = 16;
// Body prefix of a single-segment message: segment count - 1, segment size.
constexpr size_t kSegmentTableBytes = 8;

constexpr size_t DataWords(size_t bytes) { return (bytes + 7) / kWord; }
constexpr size_t TextWords(absl::string_view text) {
  return text.empty() ? 0 : DataWords(text.size() + 1);
}

absl::Status TooLarge(size_t body_bytes, size_t limit) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "frame body of ", body_bytes, " bytes exceeds the limit of ", limit));
}

void SetText(absl::string_view text, capnp::Text::Builder builder) {
  std::memcpy(builder.begin(), text.data(), text.size());
}

// Builds the body with `fill` in place at the end of `out` (estimate_words
// of segment reserved and zeroed, as Cap'n Proto expects of new segments),
// writes the header, and commits. Falls back to a heap message and one copy
// when the estimate was short or `out` is not word-aligned at its end
// (someone appended a partial word). Envelopes do not come here: they are
// written by hand (envelope_fast_path.h).
template <typename Fill>
absl::Status EncodeFrame(size_t estimate_words, size_t max_frame_bytes,
                         ByteBuffer& out, Fill&& fill) {
  const size_t reserve =
      kFrameHeaderBytes + kSegmentTableBytes + estimate_words * kWord;
  absl::Span<char> room = out.PrepareAppend(reserve);
  char* frame = room.data();
  size_t body_bytes = 0;
  kj::Array<capnp::word> copied;  // only on the slow path
  try {
    if (reinterpret_cast<uintptr_t>(frame) % kWord == 0) {
      auto* segment = reinterpret_cast<capnp::word*>(frame + kFrameHeaderBytes +
                                                     kSegmentTableBytes);
      std::memset(segment, 0, estimate_words * kWord);
      InPlaceMessageBuilder builder(kj::arrayPtr(segment, estimate_words));
      fill(builder.initRoot<schema::Frame>());
      if (builder.InFirstSegmentOnly()) {
        const size_t used = builder.getSegmentsForOutput()[0].size();
        body_bytes = kSegmentTableBytes + used * kWord;
        if (body_bytes > max_frame_bytes) {
          return TooLarge(body_bytes, max_frame_bytes);
        }
        StoreLittleEndian<uint32_t>(frame + kFrameHeaderBytes, 0);
        StoreLittleEndian<uint32_t>(frame + kFrameHeaderBytes + 4,
                                    static_cast<uint32_t>(used));
      } else {
        copied = capnp::messageToFlatArray(builder);
      }
    } else {
      capnp::MallocMessageBuilder builder(estimate_words);
      fill(builder.initRoot<schema::Frame>());
      copied = capnp::messageToFlatArray(builder);
    }
  } catch (const kj::Exception& e) {
    const kj::StringPtr d = e.getDescription();
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode frame: ",
                     absl::CHexEscape(absl::string_view(d.begin(), d.size()))));
  }
  if (copied != nullptr) {
    body_bytes = copied.size() * kWord;
    if (body_bytes > max_frame_bytes) {
      return TooLarge(body_bytes, max_frame_bytes);
    }
    frame = out.PrepareAppend(kFrameHeaderBytes + body_bytes).data();
    std::memcpy(frame + kFrameHeaderBytes, copied.begin(), body_bytes);
  }
  WriteFrameHeader(
      absl::Span<const char>(frame + kFrameHeaderBytes, body_bytes), frame);
  out.CommitAppend(kFrameHeaderBytes + body_bytes);
  return absl::OkStatus();
}

}  // namespace

FrameEncoder::FrameEncoder(EncoderOptions options) : options_(options) {
  assert(options_.max_frame_bytes <= kLargestMaxFrameBytes);
}

absl::Status FrameEncoder::Encode(const FrameValue& frame, ByteBuffer& out) {
  return std::visit([&](const auto& value) { return Encode(value, out); },
                    frame);
}

absl::Status FrameEncoder::Encode(const EnvelopeView& e, ByteBuffer& out) {
  const auto kind = static_cast<uint16_t>(e.kind);
  if (kind > static_cast<uint16_t>(kLastEnvelopeKind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("envelope kind ", kind, " has no wire value"));
  }
  const auto code = static_cast<int>(e.error_code);
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::InvalidArgumentError(
        absl::StrCat("status code ", code, " has no wire value"));
  }
  // Fail before reserving anything for a payload that cannot fit.
  if (e.payload.size() > options_.max_frame_bytes) {
    return TooLarge(e.payload.size(), options_.max_frame_bytes);
  }
  // What Cap'n Proto's builder refuses (it would throw), refused in words.
  if (e.payload.size() > internal::kMaxBlobBytes ||
      e.error_message.size() > internal::kMaxTextBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode frame: a payload of ", e.payload.size(),
                     " bytes or an error message of ", e.error_message.size(),
                     " bytes is beyond Cap'n Proto's blob limit of ",
                     internal::kMaxBlobBytes, " bytes"));
  }
  // Written by hand, not with a MessageBuilder: the builder's set-up and
  // pointer bookkeeping cost more than a small frame's whole round trip,
  // and the layout is fixed (envelope_fast_path.h; the tests compare the
  // bytes with Cap'n Proto's). Any alignment of `out` will do.
  const size_t body_bytes = internal::CanonicalEnvelopeBodyBytes(
      e.payload.size(), e.error_message.size());
  if (body_bytes > options_.max_frame_bytes) {
    return TooLarge(body_bytes, options_.max_frame_bytes);
  }
  char* frame = out.PrepareAppend(kFrameHeaderBytes + body_bytes).data();
  internal::WriteCanonicalEnvelope(e, frame + kFrameHeaderBytes);
  WriteFrameHeader(
      absl::Span<const char>(frame + kFrameHeaderBytes, body_bytes), frame);
  out.CommitAppend(kFrameHeaderBytes + body_bytes);
  return absl::OkStatus();
}

absl::Status FrameEncoder::Encode(const Hello& hello, ByteBuffer& out) {
  const size_t words = kOverheadWords + TextWords(hello.peer_name);
  return EncodeFrame(
      words, options_.max_frame_bytes, out, [&](schema::Frame::Builder f) {
        schema::Hello::Builder b = f.initHello();
        b.setMagic(hello.magic);
        b.setProtocolVersion(hello.protocol_version);
        b.setIncarnation(hello.incarnation);
        b.setMaxProtocolVersion(hello.max_protocol_version);
        if (!hello.peer_name.empty()) {
          SetText(hello.peer_name, b.initPeerName(hello.peer_name.size()));
        }
      });
}

absl::Status FrameEncoder::Encode(const Ping& ping, ByteBuffer& out) {
  return EncodeFrame(kOverheadWords, options_.max_frame_bytes, out,
                     [&](schema::Frame::Builder f) { f.setPing(ping.nonce); });
}

absl::Status FrameEncoder::Encode(const Pong& pong, ByteBuffer& out) {
  return EncodeFrame(kOverheadWords, options_.max_frame_bytes, out,
                     [&](schema::Frame::Builder f) { f.setPong(pong.nonce); });
}

absl::Status FrameEncoder::Encode(const Cancel& cancel, ByteBuffer& out) {
  return EncodeFrame(
      kOverheadWords, options_.max_frame_bytes, out,
      [&](schema::Frame::Builder f) { f.setCancel(cancel.id.value()); });
}

absl::Status FrameEncoder::Encode(const Credit& credit, ByteBuffer& out) {
  return EncodeFrame(kOverheadWords, options_.max_frame_bytes, out,
                     [&](schema::Frame::Builder f) {
                       schema::Credit::Builder b = f.initCredit();
                       b.setCorrelationId(credit.id.value());
                       b.setBytes(credit.bytes);
                     });
}

absl::Status FrameEncoder::Encode(const Goodbye& goodbye, ByteBuffer& out) {
  const size_t words = kOverheadWords + TextWords(goodbye.reason);
  return EncodeFrame(
      words, options_.max_frame_bytes, out, [&](schema::Frame::Builder f) {
        schema::Goodbye::Builder b = f.initGoodbye();
        b.setLastCorrelationId(goodbye.last_correlation_id.value());
        if (!goodbye.reason.empty()) {
          SetText(goodbye.reason, b.initReason(goodbye.reason.size()));
        }
      });
}

}  // namespace moonpool::wire
