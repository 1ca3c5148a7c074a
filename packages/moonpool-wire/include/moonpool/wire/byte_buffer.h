// ByteBuffer is a growable byte queue whose storage is 8-byte aligned: bytes
// are appended at the back and consumed from the front.
//
// It is the one buffer type of the wire layer: FrameEncoder appends frames to
// one, FrameDecoder receives into one, and the protocol layer hands its
// readable bytes to the driver as "the bytes to write". Alignment is what
// lets a Cap'n Proto message be built and read in place (DESIGN.md section 5):
// storage starts on a word boundary, and when the buffer moves its bytes to
// reuse the front it moves them by a whole number of words, so the offset of
// every byte modulo 8 is kept for as long as the byte is in the buffer.
//
// What it is not: a ring buffer, or thread-safe. Memory is kept between uses
// (consuming everything does not free it); call Release() to give it back.
//
// Views returned by Readable() and PrepareAppend() are invalidated by any
// non-const call.
#ifndef MOONPOOL_WIRE_BYTE_BUFFER_H_
#define MOONPOOL_WIRE_BYTE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/types/span.h"

namespace moonpool::wire {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&&) noexcept = default;
  ByteBuffer& operator=(ByteBuffer&&) noexcept = default;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;

  // Bytes appended and not yet consumed.
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  // Bytes of storage held, used or not.
  size_t capacity() const { return capacity_; }

  // The readable bytes, oldest first.
  absl::Span<const char> Readable() const {
    return absl::Span<const char>(bytes() + begin_, size());
  }

  // Drops the first `n` readable bytes. REQUIRES: n <= size().
  void Consume(size_t n);

  // Returns at least `min_bytes` of writable space just past the readable
  // bytes (possibly more: all the room there is). Its contents are
  // unspecified. Moves or grows the storage if needed, never shrinks it.
  // The unread bytes are moved down only when they are no more than the
  // bytes already read (so moving costs at most what was consumed, in
  // total) or the storage is at `capacity_limit`; otherwise it grows.
  // Growth doubles the storage, but not past `capacity_limit` unless
  // `min_bytes` needs more: a caller that knows its bound passes it. So a
  // writer that keeps N bytes unread holds at most about 2N.
  absl::Span<char> PrepareAppend(size_t min_bytes,
                                 size_t capacity_limit = SIZE_MAX);
  // Makes the first `n` bytes of the last PrepareAppend() span readable.
  // REQUIRES: n <= that span's size, and no other non-const call since.
  void CommitAppend(size_t n);
  // Appends a copy of `bytes`.
  void Append(absl::Span<const char> bytes);

  // Drops everything readable, keeping the storage.
  void Clear() { begin_ = end_ = 0; }
  // Frees the storage. REQUIRES: empty().
  void Release();

 private:
  char* bytes() const { return reinterpret_cast<char*>(words_.get()); }

  std::unique_ptr<uint64_t[]> words_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_BYTE_BUFFER_H_
