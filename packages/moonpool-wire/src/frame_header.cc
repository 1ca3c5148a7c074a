#include "moonpool/wire/frame_header.h"

// Short inputs (the 12 header bytes, a small frame's body) are hashed by
// XXH3 compiled inline here: for them the library call, and the dispatcher's
// indirect call, cost more than the hash. Long ones go to the library.
#define XXH_INLINE_ALL
#include <xxhash.h>
#undef XXH_INLINE_ALL

#if MOONPOOL_XXH3_DISPATCH
// Debian's libxxhash exports run-time dispatch to AVX2/AVX-512 beside the
// SSE2 XXH3_64bits (xxh_x86dispatch.h declares it; that header cannot be
// combined with XXH_INLINE_ALL). Same hashes, about 5x faster on large
// bodies (see benchmarks/README.md).
extern "C" XXH64_hash_t XXH3_64bits_dispatch(const void* input, size_t len);
#endif

#include <cassert>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "little_endian.h"

namespace moonpool::wire {
namespace {

using internal::LoadLittleEndian;
using internal::StoreLittleEndian;

// Where XXH3 stops using its short-input code paths (XXH3_MIDSIZE_MAX).
constexpr size_t kShortInputBytes = 240;

uint64_t Hash(const char* data, size_t size) {
#if MOONPOOL_XXH3_DISPATCH
  if (size > kShortInputBytes) return XXH3_64bits_dispatch(data, size);
#endif
  return XXH3_64bits(data, size);
}

uint32_t HeaderCheck(const char* header) {
  return static_cast<uint32_t>(Hash(header, 12));
}

}  // namespace

uint64_t BodyChecksum(absl::Span<const char> body) {
  return Hash(body.data(), body.size());
}

void WriteFrameHeader(absl::Span<const char> body, char* out) {
  assert(body.size() <= UINT32_MAX);
  StoreLittleEndian<uint32_t>(out, static_cast<uint32_t>(body.size()));
  StoreLittleEndian<uint64_t>(out + 4, BodyChecksum(body));
  StoreLittleEndian<uint32_t>(out + 12, HeaderCheck(out));
}

absl::StatusOr<FrameHeader> ParseFrameHeader(absl::Span<const char> header,
                                             size_t max_frame_bytes) {
  assert(header.size() >= kFrameHeaderBytes);
  const char* p = header.data();
  const uint32_t stored_check = LoadLittleEndian<uint32_t>(p + 12);
  const uint32_t computed_check = HeaderCheck(p);
  if (stored_check != computed_check) {
    return absl::DataLossError(absl::StrFormat(
        "frame header check mismatch (stored %#010x, computed %#010x): the "
        "header is corrupted",
        stored_check, computed_check));
  }
  FrameHeader h;
  h.body_length = LoadLittleEndian<uint32_t>(p);
  h.body_checksum = LoadLittleEndian<uint64_t>(p + 4);
  if (h.body_length == 0 || h.body_length % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "frame body length ", h.body_length,
        " is not a positive multiple of 8 (a Cap'n Proto message is whole "
        "words)"));
  }
  if (h.body_length > max_frame_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("frame body length ", h.body_length,
                     " exceeds the limit of ", max_frame_bytes, " bytes"));
  }
  return h;
}

}  // namespace moonpool::wire
