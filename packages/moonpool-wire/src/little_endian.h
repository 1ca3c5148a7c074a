// Little-endian loads and stores of the frame header's fields and of the
// envelope fast path's words (envelope_fast_path.h). Abseil keeps
// its own in absl/base/internal, which is not API; these are four lines each.
#ifndef MOONPOOL_WIRE_SRC_LITTLE_ENDIAN_H_
#define MOONPOOL_WIRE_SRC_LITTLE_ENDIAN_H_

#include <bit>
#include <cstdint>
#include <cstring>

namespace moonpool::wire::internal {

template <typename T>
inline T ToLittleEndian(T v) {
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 2) return __builtin_bswap16(v);
    if constexpr (sizeof(T) == 4) return __builtin_bswap32(v);
    if constexpr (sizeof(T) == 8) return __builtin_bswap64(v);
  }
  return v;
}

template <typename T>
inline void StoreLittleEndian(char* p, T v) {
  v = ToLittleEndian(v);
  std::memcpy(p, &v, sizeof v);
}

template <typename T>
inline T LoadLittleEndian(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return ToLittleEndian(v);
}

}  // namespace moonpool::wire::internal

#endif  // MOONPOOL_WIRE_SRC_LITTLE_ENDIAN_H_
