#include "moonpool/wire/frame_decoder.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "envelope_fast_path.h"
#include "frame_body_reader.h"

namespace moonpool::wire {
namespace {

constexpr size_t kWord = internal::kWordBytes;
// Frames from this size on (header included) are received by reads that
// stop at their end (PrepareAppend).
constexpr size_t kLargeFrameBytes = size_t{64} << 10;

}  // namespace

FrameDecoder::FrameDecoder(DecoderOptions options) : options_(options) {
  assert(options_.max_frame_bytes <= kLargestMaxFrameBytes);
}

absl::Span<char> FrameDecoder::PrepareAppend(size_t min_bytes) {
  size_t want = min_bytes;
  // Where a read should stop, past `min_bytes`: the end of a large frame.
  size_t stop_at = SIZE_MAX;
  if (header_.has_value()) {
    const size_t frame_bytes = kFrameHeaderBytes + header_->body_length;
    if (frame_bytes > buffer_.size()) {
      want = std::max(want, frame_bytes - buffer_.size());
      if (frame_bytes >= kLargeFrameBytes) stop_at = want;
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
  if (!header_.has_value() && last_frame_bytes_ >= kLargeFrameBytes) {
    // Its size is not known yet: guess that it is as large as the last one
    // (a stream of large frames is usually of one size). A shorter frame
    // leaves the start of the next one behind it, moved at most once.
    stop_at = std::max(want, last_frame_bytes_ - buffer_.size());
  }
  // One frame plus this append, and a word of alignment, is all a caller
  // that drains Next() can make us hold; doubling past it could hold twice.
  absl::Span<char> room = buffer_.PrepareAppend(
      want, kFrameHeaderBytes + options_.max_frame_bytes + min_bytes + kWord);
  // A read that runs past a large frame's end takes the start of the next
  // frame with it, and that start must then move to the front of the
  // buffer (or the buffer grow) before the rest of that frame fits: up to a
  // whole frame copied once more. Stopping at the frame's end leaves the
  // buffer empty once the frame is taken, so the next one lands at its
  // front: a large body is never moved, at the price of one read per frame,
  // which a large frame needs anyway. Small frames are not bounded: many
  // of them per read is what makes them cheap.
  return room.first(std::min(room.size(), stop_at));
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
  // Most frames are envelopes in the layout our own encoder writes; the
  // fast reader takes exactly those and declines anything else, which the
  // general reader then accepts or refuses as it always did.
  EnvelopeView envelope;
  if (internal::ReadCanonicalEnvelope(body, envelope)) {
    frame_ = envelope;
    ++frames_decoded_fast_;
    return absl::OkStatus();
  }
  return internal::ReadFrameBody(body, frame_);
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
