#include "moonpool/wire/frame_header.h"

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::FrameAround;

TEST(FrameHeader, WriteMatchesAnIndependentEncodingAndParsesBack) {
  const std::string body(24, '\x5a');
  char header[kFrameHeaderBytes];
  WriteFrameHeader(body, header);
  EXPECT_EQ(std::string(header, sizeof header),
            FrameAround(body).substr(0, 16));

  absl::StatusOr<FrameHeader> parsed =
      ParseFrameHeader(absl::MakeConstSpan(header), kDefaultMaxFrameBytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->body_length, 24u);
  EXPECT_EQ(parsed->body_checksum, BodyChecksum(body));
}

// The header check is verified before anything else, so a corrupted length
// is reported as corruption, not as a bad length.
TEST(FrameHeader, HeaderCheckComesFirst) {
  std::string frame = FrameAround(std::string(8, '\0'));
  const uint32_t zero = 0;
  std::memcpy(frame.data(), &zero, 4);  // length 0, check now stale
  EXPECT_EQ(ParseFrameHeader(frame, kDefaultMaxFrameBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

struct LengthCase {
  uint32_t length;
  absl::StatusCode code;
};

TEST(FrameHeader, LengthRulesInOrder) {
  const LengthCase cases[] = {
      {0, absl::StatusCode::kInvalidArgument},
      {7, absl::StatusCode::kInvalidArgument},
      {12, absl::StatusCode::kInvalidArgument},
      {8, absl::StatusCode::kOk},
      {1024, absl::StatusCode::kOk},
      {1032, absl::StatusCode::kResourceExhausted},
      // Not a multiple of 8 and over the limit: the multiple rule comes first.
      {1033, absl::StatusCode::kInvalidArgument},
      {0xFFFFFFF8u, absl::StatusCode::kResourceExhausted},
  };
  for (const LengthCase& c : cases) {
    SCOPED_TRACE(c.length);
    char header[16] = {};
    std::memcpy(header, &c.length, 4);
    const uint32_t check =
        static_cast<uint32_t>(BodyChecksum(absl::Span<const char>(header, 12)));
    std::memcpy(header + 12, &check, 4);
    EXPECT_EQ(
        ParseFrameHeader(absl::MakeConstSpan(header), 1024).status().code(),
        c.code);
  }
}

}  // namespace
}  // namespace moonpool::wire
