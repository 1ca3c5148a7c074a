#include "moonpool/wire/frame.h"

#include <iterator>
#include <variant>

namespace moonpool::wire {

absl::string_view FrameKindName(const FrameValue& frame) {
  static constexpr absl::string_view kNames[] = {
      "hello", "envelope", "ping", "pong", "goodbye", "cancel", "credit"};
  static_assert(std::variant_size_v<FrameValue> == std::size(kNames));
  return kNames[frame.index()];
}

}  // namespace moonpool::wire
