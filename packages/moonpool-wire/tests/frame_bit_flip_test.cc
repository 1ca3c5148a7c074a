// Every single-bit flip of a valid frame is detected: exhaustively, each bit
// of the header and the body of a small frame of each kind.
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::EncodeOne;
using ::moonpool::wire::testing::EveryKind;
using ::moonpool::wire::testing::FrameSet;

TEST(FrameBitFlip, EverySingleBitFlipIsDetected) {
  FrameSet set = EveryKind();
  size_t flips = 0;
  for (const FrameValue& f : set.frames) {
    const std::string frame = EncodeOne(f);
    SCOPED_TRACE(FrameKindName(f));
    for (size_t bit = 0; bit < frame.size() * 8; ++bit) {
      std::string corrupt = frame;
      corrupt[bit / 8] ^= static_cast<char>(1 << (bit % 8));
      FrameDecoder decoder;
      decoder.Feed(corrupt);
      absl::StatusOr<const FrameValue*> next = decoder.Next();
      // Header bits fail the header check, body bits the checksum: both
      // DataLoss, and both at once (never "waiting for more bytes").
      ASSERT_EQ(next.status().code(), absl::StatusCode::kDataLoss)
          << "bit " << bit << " of " << frame.size() * 8 << ": "
          << (next.ok() ? (*next ? "decoded a frame" : "waiting for bytes")
                        : next.status().ToString());
      ++flips;
    }
  }
  EXPECT_GT(flips, 3000u);
}

}  // namespace
}  // namespace moonpool::wire
