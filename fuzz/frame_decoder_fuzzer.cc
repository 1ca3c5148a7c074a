// libFuzzer target for moonpool::wire::FrameDecoder: feeds the input to a
// decoder in chunks of varying sizes, through both PrepareAppend/CommitAppend
// and Feed, drains Next() after every chunk, and traps on any broken contract
// of frame_decoder.h. The input layout and the list of checks are in README.md
// beside this file.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/types/span.h"
#include "fuzz_util.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::wire {
namespace {

// The input starts with one options byte and kPlanBytes chunk-plan bytes; the
// rest is the byte stream (README.md, "Input layout").
constexpr size_t kPlanBytes = 4;
constexpr size_t kControlBytes = 1 + kPlanBytes;

// Options byte, bits 2-3 and 4-5. One MiB is the limit of interest; the small
// ones let inputs of a few KiB reach "frame above the limit" and the growth
// of the buffer across many limit-sized frames.
constexpr std::array<size_t, 4> kMaxFrameBytes = {size_t{1} << 20,
                                                  size_t{1} << 20, 4096, 512};
constexpr std::array<size_t, 4> kRetainedBytes = {size_t{2} << 20, 0, 256,
                                                  4096};

// What a socket read asks for in the "read" append mode.
constexpr size_t kReadBytes = 4096;
// Room the buffer may hold beyond one frame and one append: word rounding at
// both ends of the bytes it keeps.
constexpr size_t kCapacitySlack = 16;
// The decoder that re-reads a re-encoded frame. A valid body may reference
// one blob from several pointers (Cap'n Proto allows it; the decoder's
// traversal limit bounds it at a few times the body), so its re-encoding can
// be larger than the original.
constexpr size_t kRoundTripMaxFrameBytes = kDefaultMaxFrameBytes;

enum class AppendMode {
  kFeed,         // Feed(chunk)
  kExact,        // PrepareAppend(chunk), CommitAppend(chunk)
  kAllTheRoom,   // PrepareAppend(1), commit as much of the chunk as fits
  kPartialRead,  // PrepareAppend(max(chunk, kReadBytes)), commit the chunk
};

struct Step {
  AppendMode mode;
  size_t bytes;  // 0: the rest of the stream
};

// Plan byte: bits 0-1 the mode, bits 2-7 a size code: 0 the rest of the
// stream, 1..32 that many bytes, 33..63 multiples of 128 up to 3968.
Step DecodeStep(uint8_t plan) {
  const size_t code = plan >> 2;
  size_t bytes = 0;
  if (code >= 1 && code <= 32) bytes = code;
  if (code > 32) bytes = (code - 32) * 128;
  return Step{static_cast<AppendMode>(plan & 3), bytes};
}

bool IsStreamError(absl::StatusCode code) {
  return code == absl::StatusCode::kDataLoss ||
         code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kResourceExhausted;
}

// Re-encodes `frame`, reads it back with a fresh decoder, and checks that the
// value survives and that encoding it again gives the same bytes.
void CheckRoundTrip(const FrameValue& frame) {
  FrameEncoder encoder(
      EncoderOptions{.max_frame_bytes = kRoundTripMaxFrameBytes});
  ByteBuffer encoded;
  MOONPOOL_FUZZ_CHECK(encoder.Encode(frame, encoded).ok());

  FrameDecoder decoder(
      DecoderOptions{.max_frame_bytes = kRoundTripMaxFrameBytes});
  decoder.Feed(encoded.Readable());
  absl::StatusOr<const FrameValue*> again = decoder.Next();
  MOONPOOL_FUZZ_CHECK(again.ok());
  MOONPOOL_FUZZ_CHECK(*again != nullptr);
  MOONPOOL_FUZZ_CHECK(**again == frame);

  ByteBuffer reencoded;
  MOONPOOL_FUZZ_CHECK(encoder.Encode(**again, reencoded).ok());
  const absl::Span<const char> a = encoded.Readable();
  const absl::Span<const char> b = reencoded.Readable();
  MOONPOOL_FUZZ_CHECK(a.size() == b.size());
  MOONPOOL_FUZZ_CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);

  absl::StatusOr<const FrameValue*> end = decoder.Next();
  MOONPOOL_FUZZ_CHECK(end.ok() && *end == nullptr);
  MOONPOOL_FUZZ_CHECK(decoder.Finish().ok());
}

class Harness {
 public:
  Harness(const DecoderOptions& options, absl::Span<const char> stream,
          const std::array<Step, kPlanBytes>& plan)
      : options_(options), decoder_(options), stream_(stream), plan_(plan) {}

  // Returns what Finish() said at the end.
  absl::Status Run() {
    size_t step = 0;
    while (pos_ < stream_.size()) {
      Append(plan_[step++ % plan_.size()]);
      if (!Drain()) {
        CheckAfterError();
        return error_;
      }
      CheckMemory();
    }
    // The stream ended: OK exactly when it ended between frames.
    absl::Status finish = decoder_.Finish();
    MOONPOOL_FUZZ_CHECK(finish.ok() == (decoder_.buffered_bytes() == 0));
    if (!finish.ok()) {
      MOONPOOL_FUZZ_CHECK(finish.code() == absl::StatusCode::kDataLoss);
    }
    return finish;
  }

  uint64_t frames() const { return frames_; }
  size_t peak_capacity() const { return peak_capacity_; }

 private:
  void Append(const Step& step) {
    const size_t left = stream_.size() - pos_;
    const size_t n = step.bytes == 0 ? left : std::min(step.bytes, left);
    const char* bytes = stream_.data() + pos_;
    size_t appended = n;
    switch (step.mode) {
      case AppendMode::kFeed:
        decoder_.Feed(absl::Span<const char>(bytes, n));
        largest_append_ = std::max(largest_append_, n);
        break;
      case AppendMode::kExact: {
        absl::Span<char> room = decoder_.PrepareAppend(n);
        MOONPOOL_FUZZ_CHECK(room.size() >= n);
        std::memcpy(room.data(), bytes, n);
        decoder_.CommitAppend(n);
        largest_append_ = std::max(largest_append_, n);
        break;
      }
      case AppendMode::kAllTheRoom: {
        absl::Span<char> room = decoder_.PrepareAppend(1);
        MOONPOOL_FUZZ_CHECK(room.size() >= 1);
        appended = std::min(n, room.size());
        std::memcpy(room.data(), bytes, appended);
        decoder_.CommitAppend(appended);
        largest_append_ = std::max<size_t>(largest_append_, 1);
        break;
      }
      case AppendMode::kPartialRead: {
        const size_t want = std::max(n, kReadBytes);
        absl::Span<char> room = decoder_.PrepareAppend(want);
        MOONPOOL_FUZZ_CHECK(room.size() >= want);
        std::memcpy(room.data(), bytes, n);
        decoder_.CommitAppend(n);
        largest_append_ = std::max(largest_append_, want);
        break;
      }
    }
    pos_ += appended;
    MOONPOOL_FUZZ_CHECK(decoder_.buffered_bytes() <= pos_);
  }

  // Takes every whole frame out; false once the decoder has failed.
  bool Drain() {
    while (true) {
      absl::StatusOr<const FrameValue*> next = decoder_.Next();
      if (!next.ok()) {
        error_ = next.status();
        return false;
      }
      if (*next == nullptr) break;
      ++frames_;
      MOONPOOL_FUZZ_CHECK(decoder_.frames_decoded() == frames_);
      CheckRoundTrip(**next);
    }
    MOONPOOL_FUZZ_CHECK(decoder_.status().ok());
    // Asking again without new bytes changes nothing.
    absl::StatusOr<const FrameValue*> again = decoder_.Next();
    MOONPOOL_FUZZ_CHECK(again.ok() && *again == nullptr);
    MOONPOOL_FUZZ_CHECK(decoder_.frames_decoded() == frames_);
    // Finish() is OK exactly between frames.
    MOONPOOL_FUZZ_CHECK(decoder_.Finish().ok() ==
                        (decoder_.buffered_bytes() == 0));
    return true;
  }

  // The buffer holds at most one frame (header and the largest body allowed)
  // plus one append, up to word rounding; so nothing is reserved for a
  // claimed length before it passed the limit check. (The fuzzer once found
  // ByteBuffer's doubling overshooting this by up to twice: see README.md,
  // "Findings", and the regression input.)
  void CheckMemory() {
    peak_capacity_ = std::max(peak_capacity_, decoder_.capacity());
    const size_t one_frame = kFrameHeaderBytes + options_.max_frame_bytes +
                             largest_append_ + kCapacitySlack;
    const size_t bound = one_frame;
    if (decoder_.capacity() > bound) {
      std::fprintf(stderr,
                   "capacity %zu exceeds %zu (max_frame_bytes %zu, largest "
                   "append %zu, buffered %zu)\n",
                   decoder_.capacity(), bound, options_.max_frame_bytes,
                   largest_append_, decoder_.buffered_bytes());
      __builtin_trap();
    }
  }

  // The first error is terminal: one of the three stream errors, returned
  // again by Next(), status() and Finish(), even after more bytes arrive.
  void CheckAfterError() {
    MOONPOOL_FUZZ_CHECK(!error_.ok());
    MOONPOOL_FUZZ_CHECK(IsStreamError(error_.code()));
    MOONPOOL_FUZZ_CHECK(decoder_.status() == error_);
    MOONPOOL_FUZZ_CHECK(decoder_.Next().status() == error_);
    MOONPOOL_FUZZ_CHECK(decoder_.Finish() == error_);
    MOONPOOL_FUZZ_CHECK(decoder_.frames_decoded() == frames_);
    if (pos_ < stream_.size()) {
      decoder_.Feed(stream_.subspan(pos_));
      MOONPOOL_FUZZ_CHECK(decoder_.Next().status() == error_);
      MOONPOOL_FUZZ_CHECK(decoder_.Finish() == error_);
      MOONPOOL_FUZZ_CHECK(decoder_.frames_decoded() == frames_);
    }
  }

  const DecoderOptions options_;
  FrameDecoder decoder_;
  const absl::Span<const char> stream_;
  const std::array<Step, kPlanBytes> plan_;
  size_t pos_ = 0;
  size_t largest_append_ = 0;
  size_t peak_capacity_ = 0;
  uint64_t frames_ = 0;
  absl::Status error_;
};

}  // namespace
}  // namespace moonpool::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moonpool::wire;       // NOLINT(build/namespaces): entry point
  if (size < kControlBytes) return -1;  // not worth adding to the corpus
  const uint8_t options_byte = data[0];
  std::array<Step, kPlanBytes> plan;
  for (size_t i = 0; i < kPlanBytes; ++i) plan[i] = DecodeStep(data[1 + i]);

  std::vector<char> stream(data + kControlBytes, data + size);
  if ((options_byte & 3) != 0) moonpool::fuzz::FixChecksums(stream);

  DecoderOptions options;
  options.max_frame_bytes = kMaxFrameBytes[(options_byte >> 2) & 3];
  options.retained_bytes = kRetainedBytes[(options_byte >> 4) & 3];
  Harness harness(options, stream, plan);
  const absl::Status end = harness.Run();
  // For triage: MOONPOOL_FUZZ_VERBOSE=1 says how each input ended.
  static const bool verbose = std::getenv("MOONPOOL_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    // Escaped: a message may hold any byte (kj quotes the bytes it checked).
    std::fprintf(stderr,
                 "frames %llu, stream %zu bytes, limit %zu, peak capacity "
                 "%zu: %s\n",
                 static_cast<unsigned long long>(harness.frames()),
                 stream.size(), options.max_frame_bytes,
                 harness.peak_capacity(),
                 absl::CHexEscape(end.ToString()).c_str());
  }
  return 0;
}
