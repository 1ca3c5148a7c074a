// Helpers shared by the wire tests: sample frames of every kind (with the
// strings they borrow kept alive), and encoding a list of frames to bytes.
#ifndef MOONPOOL_WIRE_TESTS_WIRE_TEST_UTIL_H_
#define MOONPOOL_WIRE_TESTS_WIRE_TEST_UTIL_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::wire::testing {

// Frames whose string views point into `strings`, which never moves them.
struct FrameSet {
  std::deque<std::string> strings;
  std::vector<FrameValue> frames;

  absl::string_view Keep(std::string s) {
    strings.push_back(std::move(s));
    return strings.back();
  }
};

// One frame of each kind and envelope kind, with empty and non-empty
// payloads and texts.
FrameSet EveryKind();

// `count` frames of random kinds and sizes (payloads up to `max_payload`),
// drawn from `seed`.
FrameSet RandomFrames(uint64_t seed, int count, size_t max_payload);

// The frames encoded back to back. Fails the test on an encoder error.
std::string EncodeAll(absl::Span<const FrameValue> frames,
                      EncoderOptions options = {});

// The bytes of a single frame.
std::string EncodeOne(const FrameValue& frame, EncoderOptions options = {});

// A header (length, checksum, header check) for `body`, followed by `body`:
// built independently of FrameEncoder, with XXH3 called directly.
std::string FrameAround(const std::string& body);

}  // namespace moonpool::wire::testing

#endif  // MOONPOOL_WIRE_TESTS_WIRE_TEST_UTIL_H_
