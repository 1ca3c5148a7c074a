#include "moonpool/wire/byte_buffer.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace moonpool::wire {
namespace {

constexpr size_t kMinCapacity = 256;

constexpr size_t RoundUpToWord(size_t n) { return (n + 7) & ~size_t{7}; }

}  // namespace

void ByteBuffer::Consume(size_t n) {
  assert(n <= size());
  begin_ += n;
  // Keep the storage and start over at its front, which keeps appends
  // word-aligned and the buffer small for the common "write everything" case.
  if (begin_ == end_) begin_ = end_ = 0;
}

absl::Span<char> ByteBuffer::PrepareAppend(size_t min_bytes,
                                           size_t capacity_limit) {
  if (capacity_ - end_ < min_bytes) {
    // Moving by whole words keeps each byte's offset modulo 8.
    const size_t shift = begin_ & ~size_t{7};
    const size_t kept_end = end_ - shift;
    const size_t grown =
        std::min(std::max(capacity_ * 2, kMinCapacity), capacity_limit);
    // Moving the unread bytes down is worth it when they are no more than
    // the bytes already read (so moves cost at most the bytes consumed, in
    // total), or when the buffer may not grow. Otherwise growing, which
    // moves them too, halves how often it happens: a writer that keeps
    // 16 MiB queued would otherwise move them all for every frame.
    const bool cheap_move = shift >= size() || grown <= capacity_;
    if (shift > 0 && capacity_ - kept_end >= min_bytes && cheap_move) {
      std::memmove(bytes() + begin_ - shift, bytes() + begin_, size());
      begin_ -= shift;
      end_ = kept_end;
    } else {
      const size_t needed = RoundUpToWord(kept_end + min_bytes);
      const size_t new_capacity = std::max(needed, grown & ~size_t{7});
      std::unique_ptr<uint64_t[]> words(new uint64_t[new_capacity / 8]);
      const size_t new_begin = begin_ & 7;
      if (!empty()) {
        std::memcpy(reinterpret_cast<char*>(words.get()) + new_begin,
                    bytes() + begin_, size());
      }
      end_ = new_begin + size();
      begin_ = new_begin;
      words_ = std::move(words);
      capacity_ = new_capacity;
    }
  }
  return absl::Span<char>(bytes() + end_, capacity_ - end_);
}

void ByteBuffer::CommitAppend(size_t n) {
  assert(n <= capacity_ - end_);
  end_ += n;
}

void ByteBuffer::Append(absl::Span<const char> data) {
  if (data.empty()) return;
  absl::Span<char> room = PrepareAppend(data.size());
  std::memcpy(room.data(), data.data(), data.size());
  CommitAppend(data.size());
}

void ByteBuffer::Release() {
  assert(empty());
  words_.reset();
  capacity_ = begin_ = end_ = 0;
}

}  // namespace moonpool::wire
