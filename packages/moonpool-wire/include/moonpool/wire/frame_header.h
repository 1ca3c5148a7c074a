// The 16-byte frame header of DESIGN.md section 5, and the limits a decoder
// enforces on it.
//
//   offset  size  field
//   0       4     body_length    u32 LE: a multiple of 8, 8..max_frame_bytes
//   4       8     body_checksum  u64 LE: XXH3_64bits(body), seed 0
//   12      4     header_check   u32 LE: low 32 bits of XXH3_64bits(bytes
//   0..11)
//
// FrameEncoder and FrameDecoder use these functions; they are public for
// tests, fuzzers and tools that inspect a capture.
#ifndef MOONPOOL_WIRE_FRAME_HEADER_H_
#define MOONPOOL_WIRE_FRAME_HEADER_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moonpool::wire {

inline constexpr size_t kFrameHeaderBytes = 16;
// The default and the largest allowed body size.
inline constexpr size_t kDefaultMaxFrameBytes = size_t{16} << 20;
inline constexpr size_t kLargestMaxFrameBytes = (size_t{1} << 32) - 8;

struct FrameHeader {
  uint32_t body_length = 0;
  uint64_t body_checksum = 0;
};

// XXH3_64bits of `bytes` with seed 0: the body checksum.
uint64_t BodyChecksum(absl::Span<const char> body);

// Writes the header for `body` (length, checksum, header check) to the 16
// bytes at `out`. REQUIRES: body.size() fits in 32 bits.
void WriteFrameHeader(absl::Span<const char> body, char* out);

// Parses and checks a header, in the order DESIGN.md section 5 gives:
//   - the header check does not match: DataLoss;
//   - body_length is 0 or not a multiple of 8: InvalidArgument;
//   - body_length is above max_frame_bytes: ResourceExhausted.
// REQUIRES: header.size() >= kFrameHeaderBytes.
[[nodiscard]] absl::StatusOr<FrameHeader> ParseFrameHeader(
    absl::Span<const char> header, size_t max_frame_bytes);

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_FRAME_HEADER_H_
