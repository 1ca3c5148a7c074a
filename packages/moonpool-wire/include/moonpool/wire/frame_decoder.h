// FrameDecoder is the incremental reader of a frame stream (DESIGN.md
// section 5): give it any split of the bytes, one at a time included, and
// take whole frames out, or the Status that says why the stream is bad.
//
// Bytes go in one of two ways:
//   - PrepareAppend(n) / CommitAppend(k): receive straight into the
//     decoder's word-aligned buffer (what a socket read should do; a body that
//     arrives this way is never copied);
//   - Feed(bytes): a copy, for callers that already hold the bytes.
// Frames come out of Next(), which returns a pointer to the decoded value, or
// nullptr when it needs more bytes.
//
// Each body is read in place: the frame value's payload, peer name and other
// strings point into the decoder's buffer. They stay valid until the next
// non-const call on the decoder; copy (Envelope::CopyOf) what must outlive it.
//
// Checks, in this order (DESIGN.md section 5); the first that fails is the
// decoder's terminal Status, returned by this and every later Next():
//   - header_check mismatch                                   DataLoss
//   - body_length 0, or not a multiple of 8                   InvalidArgument
//   - body_length above max_frame_bytes                       ResourceExhausted
//   - body_checksum mismatch (once the whole body is in)      DataLoss
//   - body not one valid Frame message filling it exactly     InvalidArgument
// Nothing is allocated for a claimed body length before it passed the first
// three checks. The caller closes the connection on any of these.
//
// Memory: the buffer holds at most the unread bytes the caller appended. A
// caller that drains Next() after each append keeps it under one frame plus
// one append. Storage is reused between frames; storage above
// `retained_bytes` is freed when the decoder is empty after a small frame
// (at most a quarter of `retained_bytes`), so a run of large frames keeps
// it and the first small frame after them gives it back.
//
// Not thread-safe; one decoder per byte stream.
#ifndef MOONPOOL_WIRE_FRAME_DECODER_H_
#define MOONPOOL_WIRE_FRAME_DECODER_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::wire {

struct DecoderOptions {
  // Largest body accepted; at most kLargestMaxFrameBytes.
  size_t max_frame_bytes = kDefaultMaxFrameBytes;
  // When every byte has been read and the last frame was at most a
  // quarter of this, storage beyond this is given back.
  size_t retained_bytes = size_t{2} << 20;
};

class FrameDecoder {
 public:
  explicit FrameDecoder(DecoderOptions options = {});

  // At least `min_bytes` of writable space for received bytes. When the size
  // of the frame being received is known, the space reaches to its end, so
  // that a large body lands in place in one buffer. For a large frame (64 KiB
  // and up, or a frame after one) it also stops there, unless `min_bytes` is
  // more: a read then never carries the start of the next large frame, which
  // would have to be moved.
  absl::Span<char> PrepareAppend(size_t min_bytes);
  // Makes `n` bytes of the last PrepareAppend() span part of the stream.
  void CommitAppend(size_t n);
  // Copies `bytes` into the stream.
  void Feed(absl::Span<const char> bytes);

  // The next whole frame; nullptr when more bytes are needed; or the
  // decoder's terminal Status (see the table above).
  [[nodiscard]] absl::StatusOr<const FrameValue*> Next();

  // Call when the stream has ended (the peer closed): OK when it ended
  // between frames, DataLoss when it ended inside one (a truncated header or
  // body), or the terminal Status if there is one. Frames still unread make
  // it DataLoss too: drain Next() first.
  [[nodiscard]] absl::Status Finish() const;

  // OK, or the terminal Status.
  const absl::Status& status() const { return status_; }
  // Bytes received and not yet returned as frames.
  size_t buffered_bytes() const { return buffer_.size(); }
  // Storage held, for memory accounting.
  size_t capacity() const { return buffer_.capacity(); }
  uint64_t frames_decoded() const { return frames_decoded_; }
  // How many of those were envelopes read by the fast path (the layout this
  // library's encoder writes) rather than Cap'n Proto's general reader; the
  // result is the same either way (moonpool-wire's README, "The envelope
  // fast path").
  uint64_t frames_decoded_fast() const { return frames_decoded_fast_; }

 private:
  [[nodiscard]] absl::Status Fail(absl::Status status);
  [[nodiscard]] absl::Status DecodeBody(absl::Span<const char> body);

  DecoderOptions options_;
  ByteBuffer buffer_;
  // The header of the frame at the front of the buffer, once checked.
  std::optional<FrameHeader> header_;
  FrameValue frame_;
  absl::Status status_;
  uint64_t frames_decoded_ = 0;
  uint64_t frames_decoded_fast_ = 0;
  size_t last_frame_bytes_ = 0;  // header included
};

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_FRAME_DECODER_H_
