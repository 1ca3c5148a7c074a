// Golden bytes: a frame built by this library equals, byte for byte, the
// 16-byte header plus the body that Cap'n Proto's own `capnp encode` tool
// produces from the schema for the same values. The tool runs in the test.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/wire/frame.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::EncodeOne;
using ::moonpool::wire::testing::FrameAround;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `capnp encode` on `text` (a Frame in Cap'n Proto text format).
std::string CapnpEncode(const std::string& text) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string stem =
      absl::StrCat("moonpool_golden_", ::getpid(), "_",
                   ::testing::UnitTest::GetInstance()->random_seed());
  const std::filesystem::path in = dir / (stem + ".txt");
  const std::filesystem::path out = dir / (stem + ".bin");
  std::ofstream(in) << text;
  const std::string command = absl::StrCat(
      MOONPOOL_CAPNP_TOOL, " encode -I", MOONPOOL_CAPNP_INCLUDE, " ",
      MOONPOOL_FRAME_SCHEMA, " Frame < ", in.string(), " > ", out.string());
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << command;
  std::string body = ReadFile(out);
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  return body;
}

struct GoldenCase {
  const char* name;
  FrameValue frame;
  const char* text;
};

TEST(FrameGolden, MatchesTheCapnpEncodeTool) {
  const GoldenCase cases[] = {
      {"request",
       EnvelopeView{CorrelationId(7),
                    EnvelopeKind::kRequest,
                    Endpoint(3),
                    "ping",
                    absl::Milliseconds(250),
                    absl::StatusCode::kOk,
                    {}},
       R"((envelope = (correlationId = 7, kind = request, endpoint = 3,
            payload = 0x"70696e67", timeoutMicros = 250000)))"},
      {"empty request",
       EnvelopeView{CorrelationId(1),
                    EnvelopeKind::kRequest,
                    kDefaultEndpoint,
                    {},
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {}},
       R"((envelope = (correlationId = 1, kind = request)))"},
      {"error reply",
       EnvelopeView{CorrelationId(9), EnvelopeKind::kError, kDefaultEndpoint,
                    "x", absl::ZeroDuration(), absl::StatusCode::kNotFound,
                    "no such key"},
       R"((envelope = (correlationId = 9, kind = error, payload = 0x"78",
            errorMessage = "no such key", errorCode = 5)))"},
      {"one-way",
       EnvelopeView{CorrelationId(),
                    EnvelopeKind::kOneWay,
                    Endpoint(12),
                    "note",
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {}},
       R"((envelope = (kind = oneWay, endpoint = 12, payload = 0x"6e6f7465")))"},
      {"hello", Hello{kHelloMagic, kProtocolVersion, "client-a", 0xfeedface},
       R"((hello = (magic = 0x4D4F4F4E504F4F4C, protocolVersion = 1,
            peerName = "client-a", incarnation = 4277009102)))"},
      {"ping", Ping{5}, "(ping = 5)"},
      {"pong", Pong{0xffffffffffffffff}, "(pong = 18446744073709551615)"},
      {"goodbye", Goodbye{CorrelationId(41), "draining"},
       R"((goodbye = (lastCorrelationId = 41, reason = "draining")))"},
  };
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string body = CapnpEncode(c.text);
    ASSERT_FALSE(body.empty());
    EXPECT_EQ(EncodeOne(c.frame), FrameAround(body));
  }
}

}  // namespace
}  // namespace moonpool::wire
