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
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "wire_test_util.h"

namespace moonpool::wire {
namespace {

using ::moonpool::wire::testing::EncodeOne;
using ::moonpool::wire::testing::FrameAround;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `capnp encode` on `text` (a Frame in Cap'n Proto text format), with
// the schema at `schema` (by default the installed frame.capnp).
std::string CapnpEncode(const std::string& text,
                        const std::string& schema = MOONPOOL_FRAME_SCHEMA) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string stem =
      absl::StrCat("moonpool_golden_", ::getpid(), "_",
                   ::testing::UnitTest::GetInstance()->random_seed());
  const std::filesystem::path in = dir / (stem + ".txt");
  const std::filesystem::path out = dir / (stem + ".bin");
  std::ofstream(in) << text;
  const std::string command =
      absl::StrCat(MOONPOOL_CAPNP_TOOL, " encode -I", MOONPOOL_CAPNP_INCLUDE,
                   " ", schema, " Frame < ", in.string(), " > ", out.string());
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
      {"hello", Hello{kHelloMagic, kProtocolVersion1, "client-a", 0xfeedface},
       R"((hello = (magic = 0x4D4F4F4E504F4F4C, protocolVersion = 1,
            peerName = "client-a", incarnation = 4277009102)))"},
      // Version 2: a client speaking 1..2, and a server's answer choosing 2.
      {"hello v2 client",
       Hello{kHelloMagic, kProtocolVersion1, "client-a", 0xfeedface,
             kProtocolVersion2},
       R"((hello = (magic = 0x4D4F4F4E504F4F4C, protocolVersion = 1,
            peerName = "client-a", incarnation = 4277009102,
            maxProtocolVersion = 2)))"},
      {"hello v2 server",
       Hello{kHelloMagic, kProtocolVersion2, "server", 7, kProtocolVersion2},
       R"((hello = (magic = 0x4D4F4F4E504F4F4C, protocolVersion = 2,
            peerName = "server", incarnation = 7, maxProtocolVersion = 2)))"},
      {"cancel", Cancel{CorrelationId(12345)}, "(cancel = 12345)"},
      {"cancel max", Cancel{CorrelationId(0xffffffffffffffff)},
       "(cancel = 18446744073709551615)"},
      // Reply streams (version 2).
      {"stream request",
       EnvelopeView{CorrelationId(21),
                    EnvelopeKind::kRequest,
                    Endpoint(3),
                    "scan",
                    absl::Seconds(5),
                    absl::StatusCode::kOk,
                    {},
                    /*stream_credit=*/65536},
       R"((envelope = (correlationId = 21, kind = request, endpoint = 3,
            payload = 0x"7363616e", timeoutMicros = 5000000,
            streamCredit = 65536)))"},
      {"stream request without deadline, max credit",
       EnvelopeView{CorrelationId(22),
                    EnvelopeKind::kRequest,
                    kDefaultEndpoint,
                    {},
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {},
                    /*stream_credit=*/0xffffffffffffffff},
       R"((envelope = (correlationId = 22, kind = request,
            streamCredit = 18446744073709551615)))"},
      {"stream item",
       EnvelopeView{CorrelationId(21),
                    EnvelopeKind::kStreamItem,
                    Endpoint(3),
                    "key=value",
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {}},
       R"((envelope = (correlationId = 21, kind = streamItem, endpoint = 3,
            payload = 0x"6b65793d76616c7565")))"},
      {"stream end, empty",
       EnvelopeView{CorrelationId(21),
                    EnvelopeKind::kStreamEnd,
                    Endpoint(3),
                    {},
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {}},
       R"((envelope = (correlationId = 21, kind = streamEnd, endpoint = 3)))"},
      {"stream end with a last item",
       EnvelopeView{CorrelationId(23),
                    EnvelopeKind::kStreamEnd,
                    kDefaultEndpoint,
                    "z",
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {}},
       R"((envelope = (correlationId = 23, kind = streamEnd,
            payload = 0x"7a")))"},
      {"error ending a stream",
       EnvelopeView{CorrelationId(21),
                    EnvelopeKind::kError,
                    Endpoint(3),
                    {},
                    absl::ZeroDuration(),
                    absl::StatusCode::kDeadlineExceeded,
                    "scan took too long"},
       R"((envelope = (correlationId = 21, kind = error, endpoint = 3,
            errorMessage = "scan took too long", errorCode = 4)))"},
      // Exactly-once (version 2): the flag with a settled mark, typical and
      // the largest id; the settled mark alone (a plain request that lets
      // records go); the flag alone with a deadline and an endpoint.
      {"exactly-once request, answered below",
       EnvelopeView{CorrelationId(31),
                    EnvelopeKind::kRequest,
                    kDefaultEndpoint,
                    "inc",
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {},
                    /*stream_credit=*/0,
                    /*exactly_once=*/true,
                    /*answered_below=*/CorrelationId(29)},
       R"((envelope = (correlationId = 31, kind = request,
            payload = 0x"696e63", exactlyOnce = true, answeredBelow = 29)))"},
      {"exactly-once request, answered below max",
       EnvelopeView{CorrelationId(0xffffffffffffffff),
                    EnvelopeKind::kRequest,
                    Endpoint(0xffffffffffffffff),
                    {},
                    absl::ZeroDuration(),
                    absl::StatusCode::kOk,
                    {},
                    /*stream_credit=*/0,
                    /*exactly_once=*/true,
                    /*answered_below=*/CorrelationId(0xffffffffffffffff)},
       R"((envelope = (correlationId = 18446744073709551615, kind = request,
            endpoint = 18446744073709551615, exactlyOnce = true,
            answeredBelow = 18446744073709551615)))"},
      {"plain request, answered below only",
       EnvelopeView{CorrelationId(32),
                    EnvelopeKind::kRequest,
                    Endpoint(3),
                    "get",
                    absl::Milliseconds(250),
                    absl::StatusCode::kOk,
                    {},
                    /*stream_credit=*/0,
                    /*exactly_once=*/false,
                    /*answered_below=*/CorrelationId(30)},
       R"((envelope = (correlationId = 32, kind = request, endpoint = 3,
            payload = 0x"676574", timeoutMicros = 250000,
            answeredBelow = 30)))"},
      {"exactly-once request with a deadline and an endpoint",
       EnvelopeView{CorrelationId(33),
                    EnvelopeKind::kRequest,
                    Endpoint(0x1234567890abcdef),
                    "put k v",
                    absl::Seconds(2),
                    absl::StatusCode::kOk,
                    {},
                    /*stream_credit=*/0,
                    /*exactly_once=*/true,
                    /*answered_below=*/CorrelationId()},
       R"((envelope = (correlationId = 33, kind = request,
            endpoint = 1311768467294899695, payload = 0x"707574206b2076",
            timeoutMicros = 2000000, exactlyOnce = true)))"},
      {"credit", Credit{CorrelationId(21), 32768},
       "(credit = (correlationId = 21, bytes = 32768))"},
      {"credit max",
       Credit{CorrelationId(0xffffffffffffffff), 0xffffffffffffffff},
       R"((credit = (correlationId = 18446744073709551615,
            bytes = 18446744073709551615)))"},
      {"credit zero", Credit{CorrelationId(), 0}, "(credit = ())"},
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

// A version 1 peer's Hello, as `capnp encode` makes it from the version 1
// schema's fields only, reads in the version 2 decoder with
// max_protocol_version 0; and a version 2 Hello that states no maximum is
// byte for byte a version 1 Hello (the new field fills a hole of the data
// section, so the struct did not grow).
TEST(FrameGolden, VersionOneHelloDecodesWithMaxProtocolVersionZero) {
  const std::string v1 = FrameAround(CapnpEncode(
      R"((hello = (magic = 0x4D4F4F4E504F4F4C, protocolVersion = 1,
            peerName = "old-peer", incarnation = 99)))"));
  FrameDecoder decoder;
  decoder.Feed(v1);
  absl::StatusOr<const FrameValue*> frame = decoder.Next();
  ASSERT_TRUE(frame.ok()) << frame.status();
  ASSERT_NE(*frame, nullptr);
  const auto* hello = std::get_if<Hello>(*frame);
  ASSERT_NE(hello, nullptr) << FrameKindName(**frame);
  EXPECT_EQ(hello->protocol_version, 1u);
  EXPECT_EQ(hello->max_protocol_version, 0u);
  EXPECT_EQ(hello->peer_name, "old-peer");
  EXPECT_EQ(hello->incarnation, 99u);
  EXPECT_EQ(EncodeOne(Hello{kHelloMagic, kProtocolVersion1, "old-peer", 99}),
            v1);
}

// The version 1 schema (DESIGN.md section 5, as frame.capnp was before
// version 2), to make what a version 1 peer sends.
constexpr char kVersionOneSchema[] = R"(@0xad3a0e3e8bcce13d;
struct Frame {
  union {
    hello    @0 :Hello;
    envelope @1 :Envelope;
    ping     @2 :UInt64;
    pong     @3 :UInt64;
    goodbye  @4 :Goodbye;
  }
}
struct Hello {
  magic           @0 :UInt64;
  protocolVersion @1 :UInt32;
  peerName        @2 :Text;
  incarnation     @3 :UInt64;
}
struct Envelope {
  correlationId @0 :UInt64;
  kind          @1 :Kind;
  endpoint      @2 :UInt64;
  payload       @3 :Data;
  errorMessage  @4 :Text;
  timeoutMicros @5 :UInt64;
  errorCode     @6 :UInt32;
  enum Kind { request @0; reply @1; error @2; oneWay @3; }
}
struct Goodbye {
  lastCorrelationId @0 :UInt64;
  reason            @1 :Text;
}
)";

// A version 1 peer's request, encoded by `capnp encode` from the version 1
// schema (its Envelope has a smaller data section: no exactlyOnce,
// answeredBelow, streamCredit), decodes with stream_credit 0, i.e. as a
// request for one reply; and the same values encoded with the current
// schema read the same.
TEST(FrameGolden, VersionOneEnvelopeDecodesWithStreamCreditZero) {
  const std::filesystem::path schema =
      std::filesystem::temp_directory_path() /
      absl::StrCat("moonpool_frame_v1_", ::getpid(), ".capnp");
  std::ofstream(schema) << kVersionOneSchema;
  const char* text =
      R"((envelope = (correlationId = 7, kind = request, endpoint = 3,
            payload = 0x"70696e67", timeoutMicros = 250000)))";
  const std::string v1 = FrameAround(CapnpEncode(text, schema.string()));
  std::filesystem::remove(schema);
  const std::string v2 = FrameAround(CapnpEncode(text));
  // The version 1 Envelope is the smaller struct: the new fields did grow it.
  EXPECT_LT(v1.size(), v2.size());
  const EnvelopeView expected{
      CorrelationId(7),        EnvelopeKind::kRequest, Endpoint(3), "ping",
      absl::Milliseconds(250), absl::StatusCode::kOk,  {},
      /*stream_credit=*/0};
  for (const std::string* bytes : {&v1, &v2}) {
    SCOPED_TRACE(bytes == &v1 ? "version 1 schema" : "version 2 schema");
    FrameDecoder decoder;
    decoder.Feed(*bytes);
    absl::StatusOr<const FrameValue*> frame = decoder.Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_NE(*frame, nullptr);
    const auto* envelope = std::get_if<EnvelopeView>(*frame);
    ASSERT_NE(envelope, nullptr) << FrameKindName(**frame);
    EXPECT_EQ(envelope->stream_credit, 0u);
    EXPECT_TRUE(*envelope == expected);
  }
}

// A version 1 peer's requests, encoded by `capnp encode` from the version 1
// schema (no exactlyOnce, no answeredBelow), decode as not exactly-once with
// nothing settled: the fields read as their defaults (false, id 0 =
// invalid), so a version 1 request can never ask a server to keep an
// outcome or let records go.
TEST(FrameGolden, VersionOneEnvelopeDecodesAsNotExactlyOnceNothingSettled) {
  const std::filesystem::path schema =
      std::filesystem::temp_directory_path() /
      absl::StrCat("moonpool_frame_v1_eo_", ::getpid(), ".capnp");
  std::ofstream(schema) << kVersionOneSchema;
  const char* const texts[] = {
      R"((envelope = (correlationId = 7, kind = request, endpoint = 3,
            payload = 0x"70696e67", timeoutMicros = 250000)))",
      R"((envelope = (correlationId = 18446744073709551615, kind = request,
            endpoint = 18446744073709551615, timeoutMicros = 1)))",
      R"((envelope = (correlationId = 1, kind = request)))",
  };
  for (const char* text : texts) {
    SCOPED_TRACE(text);
    const std::string v1 = FrameAround(CapnpEncode(text, schema.string()));
    FrameDecoder decoder;
    decoder.Feed(v1);
    absl::StatusOr<const FrameValue*> frame = decoder.Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_NE(*frame, nullptr);
    const auto* envelope = std::get_if<EnvelopeView>(*frame);
    ASSERT_NE(envelope, nullptr) << FrameKindName(**frame);
    EXPECT_EQ(envelope->kind, EnvelopeKind::kRequest);
    EXPECT_FALSE(envelope->exactly_once);
    EXPECT_FALSE(envelope->answered_below.valid());
    EXPECT_EQ(envelope->answered_below, CorrelationId());
    // Our encoder writes the same values as the version 2 tool does: the
    // defaults are not sent as anything but zeros.
    EXPECT_EQ(EncodeOne(**frame), FrameAround(CapnpEncode(text)));
  }
  std::filesystem::remove(schema);
}

}  // namespace
}  // namespace moonpool::wire
