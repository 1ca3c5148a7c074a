// What the libFuzzer targets in this directory share: the check macro that
// turns a broken contract into a crash libFuzzer reports, and the checksum
// rewrite that lets mutations reach past the frame header's checks. Not a
// library: each fuzzer includes it; nothing outside fuzz/ does.
#ifndef MOONPOOL_FUZZ_FUZZ_UTIL_H_
#define MOONPOOL_FUZZ_FUZZ_UTIL_H_

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/types/span.h"
#include "moonpool/wire/frame_header.h"

// Not assert(): the checks must hold in every build type, and a trap is what
// libFuzzer reports as a crash. The message says which check it was.
#define MOONPOOL_FUZZ_CHECK(condition)                                      \
  do {                                                                      \
    if (!(condition)) {                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #condition);                                             \
      __builtin_trap();                                                     \
    }                                                                       \
  } while (false)

namespace moonpool::fuzz {

inline uint32_t Load32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

inline void Store32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

inline void Store64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

// Rewrites every header's body_checksum (when its body is all there) and
// header_check in stream[from..] so that they match, walking the frames as
// the decoder would. Without this, nearly every mutation stops at the first
// checksum.
inline void FixChecksums(std::vector<char>& stream, size_t from = 0) {
  size_t pos = from;
  while (stream.size() - pos >= wire::kFrameHeaderBytes) {
    char* header = stream.data() + pos;
    const size_t length = Load32(header);
    const size_t remaining = stream.size() - pos - wire::kFrameHeaderBytes;
    const bool whole = length <= remaining;
    if (whole) {
      Store64(header + 4, wire::BodyChecksum(absl::Span<const char>(
                              header + wire::kFrameHeaderBytes, length)));
    }
    Store32(header + 12, static_cast<uint32_t>(XXH3_64bits(header, 12)));
    if (!whole || length == 0 || length % 8 != 0) break;
    pos += wire::kFrameHeaderBytes + length;
  }
}

}  // namespace moonpool::fuzz

#endif  // MOONPOOL_FUZZ_FUZZ_UTIL_H_
