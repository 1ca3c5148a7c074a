#include "moonpool/wire/frame_decoder.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kj/exception.h"
#include "moonpool/wire/frame.capnp.h"

namespace moonpool::wire {
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

absl::Duration TimeoutFromMicros(uint64_t micros) {
  if (micros >= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(static_cast<int64_t>(micros));
}

// Codes from a newer peer that this build does not know read as kUnknown.
absl::StatusCode StatusCodeFromWire(uint32_t code) {
  if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

}  // namespace

FrameDecoder::FrameDecoder(DecoderOptions options) : options_(options) {
  assert(options_.max_frame_bytes <= kLargestMaxFrameBytes);
}

absl::Span<char> FrameDecoder::PrepareAppend(size_t min_bytes) {
  size_t want = min_bytes;
  if (header_.has_value()) {
    const size_t frame_bytes = kFrameHeaderBytes + header_->body_length;
    if (frame_bytes > buffer_.size()) {
      want = std::max(want, frame_bytes - buffer_.size());
    }
  } else if (buffer_.empty() && buffer_.capacity() > options_.retained_bytes &&
             want <= options_.retained_bytes &&
             last_frame_bytes_ <= options_.retained_bytes / 4) {
    // Give back what large frames made us take, once they stop: a stream of
    // them keeps its storage (giving it back after each cost a fresh
    // allocation, its page faults and a copy per frame), and the first
    // small frame after them (a keepalive ping, on an idle connection)
    // gives it back. Done here, not in Next(), because the last frame's
    // views borrow this storage until this call.
    buffer_.Release();
  }
  // One frame plus this append, and a word of alignment, is all a caller
  // that drains Next() can make us hold; doubling past it could hold twice.
  return buffer_.PrepareAppend(
      want, kFrameHeaderBytes + options_.max_frame_bytes + min_bytes + kWord);
}

void FrameDecoder::CommitAppend(size_t n) { buffer_.CommitAppend(n); }

void FrameDecoder::Feed(absl::Span<const char> bytes) {
  if (bytes.empty()) return;
  absl::Span<char> room = PrepareAppend(bytes.size());
  std::memcpy(room.data(), bytes.data(), bytes.size());
  CommitAppend(bytes.size());
}

absl::Status FrameDecoder::Fail(absl::Status status) {
  status_ = std::move(status);
  return status_;
}

absl::StatusOr<const FrameValue*> FrameDecoder::Next() {
  if (!status_.ok()) return status_;
  if (!header_.has_value()) {
    if (buffer_.size() < kFrameHeaderBytes) return nullptr;
    absl::StatusOr<FrameHeader> header =
        ParseFrameHeader(buffer_.Readable(), options_.max_frame_bytes);
    if (!header.ok()) return Fail(header.status());
    header_ = *header;
  }
  const size_t frame_bytes = kFrameHeaderBytes + header_->body_length;
  if (buffer_.size() < frame_bytes) return nullptr;

  absl::Span<const char> body =
      buffer_.Readable().subspan(kFrameHeaderBytes, header_->body_length);
  const uint64_t checksum = BodyChecksum(body);
  if (checksum != header_->body_checksum) {
    return Fail(absl::DataLossError(absl::StrFormat(
        "frame body checksum mismatch (header says %#018x, body hashes to "
        "%#018x): the body is corrupted",
        header_->body_checksum, checksum)));
  }
  if (absl::Status s = DecodeBody(body); !s.ok()) return Fail(std::move(s));
  // The bytes stay where they are until the next non-const call, so the
  // views in frame_ remain valid after this consume.
  buffer_.Consume(frame_bytes);
  header_.reset();
  ++frames_decoded_;
  last_frame_bytes_ = frame_bytes;
  return &frame_;
}

absl::Status FrameDecoder::DecodeBody(absl::Span<const char> body) {
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
        frame_ =
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
        frame_ = EnvelopeView{CorrelationId(e.getCorrelationId()),
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
        frame_ = Ping{root.getPing()};
        break;
      case schema::Frame::PONG:
        frame_ = Pong{root.getPong()};
        break;
      case schema::Frame::GOODBYE: {
        schema::Goodbye::Reader g = root.getGoodbye();
        frame_ = Goodbye{CorrelationId(g.getLastCorrelationId()),
                         ViewOf(g.getReason())};
        break;
      }
      case schema::Frame::CANCEL:
        frame_ = Cancel{CorrelationId(root.getCancel())};
        break;
      case schema::Frame::CREDIT: {
        schema::Credit::Reader c = root.getCredit();
        frame_ = Credit{CorrelationId(c.getCorrelationId()), c.getBytes()};
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

absl::Status FrameDecoder::Finish() const {
  if (!status_.ok()) return status_;
  if (buffer_.empty()) return absl::OkStatus();
  if (!header_.has_value()) {
    if (buffer_.size() >= kFrameHeaderBytes) {
      return absl::DataLossError(absl::StrCat(
          "stream ended with ", buffer_.size(),
          " bytes not yet read as frames: call Next() before Finish()"));
    }
    return absl::DataLossError(
        absl::StrCat("stream ended inside a frame header (", buffer_.size(),
                     " of ", kFrameHeaderBytes, " bytes)"));
  }
  const size_t frame_bytes = kFrameHeaderBytes + header_->body_length;
  if (buffer_.size() >= frame_bytes) {
    return absl::DataLossError(absl::StrCat(
        "stream ended with ", buffer_.size(),
        " bytes not yet read as frames: call Next() before Finish()"));
  }
  return absl::DataLossError(absl::StrCat(
      "stream ended inside a frame body (", buffer_.size() - kFrameHeaderBytes,
      " of ", header_->body_length, " bytes)"));
}

}  // namespace moonpool::wire
