// A Cap'n Proto MessageBuilder whose first segment is memory the caller
// provides: FrameEncoder points it at the output buffer, so the message is
// built where it will be sent. Segments beyond the first (only when the
// caller's estimate was short) come from the heap and are freed with the
// builder.
#ifndef MOONPOOL_WIRE_SRC_IN_PLACE_MESSAGE_BUILDER_H_
#define MOONPOOL_WIRE_SRC_IN_PLACE_MESSAGE_BUILDER_H_

#include <capnp/message.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kj/array.h"

namespace moonpool::wire::internal {

class InPlaceMessageBuilder final : public capnp::MessageBuilder {
 public:
  // REQUIRES: `first` is word-aligned, zeroed (as Cap'n Proto expects of a
  // new segment), and outlives the builder.
  explicit InPlaceMessageBuilder(kj::ArrayPtr<capnp::word> first)
      : first_(first) {}

  kj::ArrayPtr<capnp::word> allocateSegment(unsigned minimum_size) override {
    if (!first_used_ && first_.size() >= minimum_size) {
      first_used_ = true;
      return first_;
    }
    first_used_ = true;
    const size_t words = std::max<size_t>(minimum_size, 1024);
    kj::Array<capnp::word> segment = kj::heapArray<capnp::word>(words);
    std::memset(segment.begin(), 0, words * sizeof(capnp::word));
    overflow_.push_back(std::move(segment));
    return overflow_.back();
  }

  // True when the whole message is in the caller's segment.
  bool InFirstSegmentOnly() {
    auto segments = getSegmentsForOutput();
    return segments.size() == 1 && segments[0].begin() == first_.begin();
  }

 private:
  kj::ArrayPtr<capnp::word> first_;
  bool first_used_ = false;
  std::vector<kj::Array<capnp::word>> overflow_;
};

}  // namespace moonpool::wire::internal

#endif  // MOONPOOL_WIRE_SRC_IN_PLACE_MESSAGE_BUILDER_H_
