// The decoder's storage rule for large frames: a read stops at the end of
// the large frame being received, so the next frame lands at the front of
// the buffer and no body is ever moved (benchmarks/README.md, "1 MiB x 16:
// where the tail comes from").
#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::EncodeAll;

constexpr size_t kSocketRead = 64 * 1024;  // what a driver asks for

std::string EnvelopeFrame(uint64_t id, size_t payload_bytes, char fill) {
  std::string payload(payload_bytes, fill);
  EnvelopeView e;
  e.correlation_id = CorrelationId(id);
  e.payload = payload;
  return EncodeAll({FrameValue(e)});
}

// Receives `stream` as a socket with all of it ready would: each read fills
// the span PrepareAppend gives. Calls `on_frame` with each frame's payload.
template <typename OnFrame>
void ReceiveGreedily(FrameDecoder& decoder, absl::string_view stream,
                     OnFrame on_frame) {
  size_t at = 0;
  while (at < stream.size()) {
    absl::Span<char> room = decoder.PrepareAppend(kSocketRead);
    const size_t n = std::min(room.size(), stream.size() - at);
    std::memcpy(room.data(), stream.data() + at, n);
    decoder.CommitAppend(n);
    at += n;
    for (;;) {
      absl::StatusOr<const FrameValue*> frame = decoder.Next();
      ASSERT_TRUE(frame.ok()) << frame.status();
      if (*frame == nullptr) break;
      on_frame(std::get<EnvelopeView>(**frame).payload);
    }
  }
}

// A decoder whose storage is larger than the 1 MiB frames that follow (a
// larger frame came first): the storage has room past their ends.
FrameDecoder DecoderAfterALargerFrame() {
  FrameDecoder decoder;
  decoder.Feed(EnvelopeFrame(1, (1 << 20) + 100'000, 'x'));
  EXPECT_NE(*decoder.Next(), nullptr);
  return decoder;
}

TEST(FrameDecoderStorage, AReadOfALargeFrameStopsAtItsEnd) {
  const std::string frame = EnvelopeFrame(2, 1 << 20, 'a');
  FrameDecoder decoder = DecoderAfterALargerFrame();
  decoder.Feed(absl::string_view(frame).substr(0, 100));
  ASSERT_EQ(*decoder.Next(), nullptr);  // the header is in, the body is not
  ASSERT_GT(decoder.capacity(), frame.size());
  EXPECT_EQ(decoder.PrepareAppend(kSocketRead).size(), frame.size() - 100);
}

TEST(FrameDecoderStorage, AReadAfterALargeFrameStopsAtThatFramesSize) {
  const std::string frame = EnvelopeFrame(2, 1 << 20, 'a');
  FrameDecoder decoder = DecoderAfterALargerFrame();
  decoder.Feed(frame);
  ASSERT_NE(*decoder.Next(), nullptr);
  ASSERT_GT(decoder.capacity(), frame.size());
  EXPECT_EQ(decoder.PrepareAppend(kSocketRead).size(), frame.size());
  // Never less than the caller asks for.
  EXPECT_GE(decoder.PrepareAppend(frame.size() + 1).size(), frame.size() + 1);
}

TEST(FrameDecoderStorage, SmallFramesAreReadManyAtATime) {
  FrameDecoder decoder;
  decoder.Feed(EnvelopeFrame(1, 100, 'a'));
  ASSERT_NE(*decoder.Next(), nullptr);
  decoder.Feed(absl::string_view(EnvelopeFrame(2, 100, 'b')).substr(0, 20));
  ASSERT_EQ(*decoder.Next(), nullptr);
  // The frame being received is small: the read may take the frames after
  // it too.
  EXPECT_GE(decoder.PrepareAppend(kSocketRead).size(), kSocketRead);
}

TEST(FrameDecoderStorage, LargeFramesOfOneSizeLandAtTheFrontOfTheBuffer) {
  std::string stream;
  for (int i = 0; i < 8; ++i) {
    stream += EnvelopeFrame(i + 1, 1 << 20, static_cast<char>('a' + i));
  }
  FrameDecoder decoder;
  const char* first = nullptr;
  int frames = 0;
  ReceiveGreedily(decoder, stream, [&](absl::string_view payload) {
    EXPECT_EQ(payload.front(), 'a' + frames);
    EXPECT_EQ(payload.back(), 'a' + frames);
    // Every body starts where the first did: none was moved.
    if (first == nullptr) first = payload.data();
    EXPECT_EQ(payload.data(), first) << "frame " << frames;
    ++frames;
  });
  EXPECT_EQ(frames, 8);
}

// Before this rule a read filled all the room the storage had, so once the
// storage was larger than a frame every read carried the start of the next
// frame, to be moved before that frame could be completed.
TEST(FrameDecoderStorage, ReadsCarryNothingOfTheNextLargeFrame) {
  std::string stream = EnvelopeFrame(1, (1 << 20) + 100'000, 'a');
  for (int i = 0; i < 6; ++i) {
    stream += EnvelopeFrame(i + 2, 1 << 20, static_cast<char>('b' + i));
  }
  FrameDecoder decoder;
  int frames = 0;
  size_t at = 0;
  while (at < stream.size()) {
    absl::Span<char> room = decoder.PrepareAppend(kSocketRead);
    const size_t n = std::min(room.size(), stream.size() - at);
    std::memcpy(room.data(), stream.data() + at, n);
    decoder.CommitAppend(n);
    at += n;
    bool took_one = false;
    while (true) {
      absl::StatusOr<const FrameValue*> frame = decoder.Next();
      ASSERT_TRUE(frame.ok()) << frame.status();
      if (*frame == nullptr) break;
      ++frames;
      took_one = true;
    }
    // The first frame after the size changed may carry some of the next
    // (the guess was the larger size); from the third frame on, none.
    if (took_one && frames >= 3) {
      EXPECT_EQ(decoder.buffered_bytes(), 0u) << "after frame " << frames;
    }
  }
  EXPECT_EQ(frames, 7);
}

TEST(FrameDecoderStorage, FramesOfMixedSizesStillComeOutWhole) {
  const size_t sizes[] = {1 << 20, 70'000, 8, 300'000, 1 << 20, 64, 65'536};
  std::string stream;
  char fill = 'a';
  for (size_t s : sizes) stream += EnvelopeFrame(1, s, fill++);
  FrameDecoder decoder;
  int frames = 0;
  ReceiveGreedily(decoder, stream, [&](absl::string_view payload) {
    ASSERT_LT(frames, 7);
    EXPECT_EQ(payload.size(), sizes[frames]);
    EXPECT_EQ(payload.find_first_not_of(static_cast<char>('a' + frames)),
              absl::string_view::npos);
    ++frames;
  });
  EXPECT_EQ(frames, 7);
}

}  // namespace
}  // namespace moonpool::wire
