// The Hello exchange, and peers that get it wrong.
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/types/span.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::protocol::testing {
namespace {

std::string Encoded(const wire::FrameValue& frame) {
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  EXPECT_TRUE(encoder.Encode(frame, out).ok());
  return std::string(out.Readable().data(), out.size());
}

TEST(ConnectionHandshake, ClientSpeaksFirstAndServerAnswers) {
  ConnectionPair p;
  EXPECT_FALSE(p.client.PendingOutput().empty());  // its Hello
  EXPECT_TRUE(p.server.PendingOutput().empty());   // waits for the client
  EXPECT_EQ(p.client.state(), ConnectionState::kHandshaking);
  p.Pump();
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  ASSERT_EQ(p.client_events.size(), 1u);
  EXPECT_EQ(p.client_events[0].kind, Recorded::kHandshakeDone);
  EXPECT_EQ(p.client_events[0].payload, "test-server");
  ASSERT_EQ(p.server_events.size(), 1u);
  EXPECT_EQ(p.server_events[0].payload, "test-client");
}

TEST(ConnectionHandshake, ClientMayPipelineRequestsAfterItsHello) {
  ConnectionPair p;
  ASSERT_TRUE(p.client.SendRequest("early", {}, p.now).ok());
  ASSERT_TRUE(p.client.SendOneWay(Endpoint(4), "note").ok());
  p.Pump();
  auto requests = OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].payload, "early");
  EXPECT_EQ(p.server_events[0].kind, Recorded::kHandshakeDone);
  EXPECT_EQ(OfKind(p.server_events, Recorded::kOneWayReceived).size(), 1u);
}

TEST(ConnectionHandshake, ServerSendsNothingBeforeTheClientHello) {
  Connection server(ServerOptions(), kStart);
  EXPECT_EQ(server.SendRequest("x", {}, kStart).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(server.SendOneWay(kDefaultEndpoint, "x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(server.SendGoodbye("x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(server.PendingOutput().empty());
}

TEST(ConnectionHandshake, VersionMismatchFailsRequestsWithFailedPrecondition) {
  // A server speaking only version 3 answers our Hello with its own.
  Connection client(ClientOptions(), kStart);
  ASSERT_TRUE(client.SendRequest("a", {}, kStart).ok());
  client.ConsumeOutput(client.PendingOutput().size());
  client.Receive(Encoded(wire::Hello{wire::kHelloMagic, 3, "v3", 5, 3}),
                 kStart);
  std::vector<Recorded> events = Drain(client);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Recorded::kRequestFailed);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(events[0].status.message(),
            "incompatible protocol versions: this side speaks 1..2, the peer "
            "3..3");
  EXPECT_EQ(events[1].kind, Recorded::kClosed);
  EXPECT_EQ(events[1].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(client.WantsClose());
  EXPECT_EQ(client.stats().protocol_errors.handshake_failures, 1u);
}

TEST(ConnectionHandshake, ServerAnswersAWrongVersionWithItsHelloThenCloses) {
  Connection server(ServerOptions(), kStart);
  server.Receive(Encoded(wire::Hello{wire::kHelloMagic, 7, "future", 5}),
                 kStart);
  std::vector<Recorded> events = Drain(server);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Recorded::kClosed);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kFailedPrecondition);
  // Its Hello (version 1, its lowest) is still to be written, so the client
  // learns the versions it speaks.
  Connection client(ClientOptions(), kStart);
  client.Receive(server.PendingOutput(), kStart);
  std::vector<Recorded> client_events = Drain(client);
  ASSERT_FALSE(client_events.empty());
  EXPECT_EQ(client_events.back().kind, Recorded::kHandshakeDone);
}

struct HostileCase {
  const char* name;
  std::string bytes;
  absl::StatusCode code;
};

TEST(ConnectionHandshake, HostileOpeningsCloseTheConnection) {
  std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const HostileCase cases[] = {
      {"garbage before Hello", garbage, absl::StatusCode::kDataLoss},
      {"wrong magic", Encoded(wire::Hello{0x1234, 1, "x", 5}),
       absl::StatusCode::kInvalidArgument},
      {"incarnation 0", Encoded(wire::Hello{wire::kHelloMagic, 1, "x", 0}),
       absl::StatusCode::kInvalidArgument},
      {"envelope before Hello",
       Encoded(EnvelopeView{CorrelationId(1),
                            EnvelopeKind::kRequest,
                            kDefaultEndpoint,
                            "x",
                            absl::ZeroDuration(),
                            absl::StatusCode::kOk,
                            {}}),
       absl::StatusCode::kInvalidArgument},
      {"ping before Hello", Encoded(wire::Ping{1}),
       absl::StatusCode::kInvalidArgument},
  };
  for (const HostileCase& c : cases) {
    SCOPED_TRACE(c.name);
    Connection server(ServerOptions(), kStart);
    server.Receive(c.bytes, kStart);
    std::vector<Recorded> events = Drain(server);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, Recorded::kClosed);
    EXPECT_EQ(events[0].status.code(), c.code) << events[0].status;
    EXPECT_EQ(server.state(), ConnectionState::kClosed);
    EXPECT_TRUE(server.WantsClose());
    EXPECT_TRUE(server.PendingOutput().empty());
  }
}

TEST(ConnectionHandshake, SecondHelloIsAProtocolError) {
  ConnectionPair p;
  p.Open();
  p.server.Receive(Encoded(wire::Hello{wire::kHelloMagic, 1, "again", 5}),
                   p.now);
  std::vector<Recorded> events = Drain(p.server);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.server.stats().protocol_errors.unexpected_frames, 1u);
}

// ---- Version negotiation (DESIGN.md section 5, "Version 2") ----

struct MixCase {
  const char* name;
  uint32_t client_min, client_max, server_min, server_max;
  uint32_t version;  // 0: incompatible
  // The Status message each side closes with when incompatible.
  const char* client_says = "";
  const char* server_says = "";
};

TEST(ConnectionHandshake, EveryMixOfVersionRangesAgreesOrFailsOnBothSides) {
  const MixCase cases[] = {
      {"v1-only client, v2 server", 1, 1, 1, 2, 1},
      {"v2 client, v1-only server", 1, 2, 1, 1, 1},
      {"v2 client, v2 server", 1, 2, 1, 2, 2},
      {"v2-only client, v2 server", 2, 2, 1, 2, 2},
      {"v2 client, v2-only server", 1, 2, 2, 2, 2},
      {"v1-only both", 1, 1, 1, 1, 1},
      {"v2-only client, v1-only server", 2, 2, 1, 1, 0,
       "incompatible protocol versions: this side speaks 2..2, the peer 1..1",
       "incompatible protocol versions: this side speaks 1..1, the peer 2..2"},
      {"v1-only client, v2-only server", 1, 1, 2, 2, 0,
       "incompatible protocol versions: this side speaks 1..1, the peer 2..2",
       "incompatible protocol versions: this side speaks 2..2, the peer 1..1"},
  };
  for (const MixCase& c : cases) {
    SCOPED_TRACE(c.name);
    ConnectionPair p(WithVersions(ClientOptions(), c.client_min, c.client_max),
                     WithVersions(ServerOptions(), c.server_min, c.server_max));
    EXPECT_EQ(p.client.version(), 0u);  // unknown before the handshake
    absl::StatusOr<CorrelationId> id = p.client.SendRequest("x", {}, p.now);
    ASSERT_TRUE(id.ok());
    p.Pump();
    EXPECT_EQ(p.client.version(), c.version);
    EXPECT_EQ(p.server.version(), c.version);
    if (c.version != 0) {
      ASSERT_FALSE(p.client_events.empty());
      EXPECT_EQ(p.client_events[0].kind, Recorded::kHandshakeDone);
      EXPECT_EQ(p.client_events[0].version, c.version);
      ASSERT_FALSE(p.server_events.empty());
      EXPECT_EQ(p.server_events[0].kind, Recorded::kHandshakeDone);
      EXPECT_EQ(p.server_events[0].version, c.version);
      EXPECT_EQ(OfKind(p.server_events, Recorded::kRequestReceived).size(), 1u);
      EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
      continue;
    }
    // The client's pipelined request fails with the handshake's Status,
    // then the connection closes with it; the server, which processed
    // nothing, closes too.
    ASSERT_EQ(p.client_events.size(), 2u);
    EXPECT_EQ(p.client_events[0].kind, Recorded::kRequestFailed);
    EXPECT_EQ(p.client_events[0].id, *id);
    EXPECT_EQ(p.client_events[0].status,
              absl::FailedPreconditionError(c.client_says));
    EXPECT_EQ(p.client_events[1].kind, Recorded::kClosed);
    EXPECT_EQ(p.client_events[1].status,
              absl::FailedPreconditionError(c.client_says));
    ASSERT_EQ(p.server_events.size(), 1u);
    EXPECT_EQ(p.server_events[0].kind, Recorded::kClosed);
    EXPECT_EQ(p.server_events[0].status,
              absl::FailedPreconditionError(c.server_says));
    EXPECT_EQ(p.client.stats().protocol_errors.handshake_failures, 1u);
    EXPECT_EQ(p.server.stats().protocol_errors.handshake_failures, 1u);
    EXPECT_TRUE(p.client.WantsClose());
    EXPECT_TRUE(p.server.WantsClose());
  }
}

// Hello bytes: the frames written by the version 1 encoder (before version
// 2 existed) for ClientOptions() and ServerOptions(), produced by `capnp
// encode` from the version 1 schema with the header computed by Python's
// xxhash. A side configured for version 1 only must send exactly these.
constexpr char kV1ClientHelloHex[] =
    "5800000098d819ebb74370903f8cd37f000000000a000000000000000200010000000000"
    "00000000000000000000000000000000030001004c4f4f504e4f4f4d0100000000000000"
    "0b000000000000000100000062000000746573742d636c69656e740000000000";
constexpr char kV1ServerHelloHex[] =
    "5800000028f89fac1b27e661c2c64031000000000a000000000000000200010000000000"
    "00000000000000000000000000000000030001004c4f4f504e4f4f4d0100000000000000"
    "16000000000000000100000062000000746573742d7365727665720000000000";

std::string Hex(absl::Span<const char> bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

TEST(ConnectionHandshake, VersionOneOnlySideSendsTheVersionOneHelloBytes) {
  Connection client(WithVersions(ClientOptions(), 1, 1), kStart);
  EXPECT_EQ(Hex(client.PendingOutput()), kV1ClientHelloHex);
  // A version 1 server answers any client that offers version 1 the same
  // way, whatever else the client's Hello says.
  for (uint32_t client_max : {1u, 2u}) {
    SCOPED_TRACE(client_max);
    Connection server(WithVersions(ServerOptions(), 1, 1), kStart);
    server.Receive(
        Encoded(wire::Hello{wire::kHelloMagic, 1, "c", 5, client_max}), kStart);
    Drain(server);
    EXPECT_EQ(Hex(server.PendingOutput()), kV1ServerHelloHex);
  }
}

TEST(ConnectionHandshake, VersionTwoSideStatesItsRangeInItsHello) {
  wire::FrameDecoder decoder;
  Connection client(ClientOptions(), kStart);
  decoder.Feed(client.PendingOutput());
  absl::StatusOr<const wire::FrameValue*> frame = decoder.Next();
  ASSERT_TRUE(frame.ok() && *frame != nullptr);
  const auto& hello = std::get<wire::Hello>(**frame);
  EXPECT_EQ(hello.protocol_version, 1u);
  EXPECT_EQ(hello.max_protocol_version, 2u);
}

TEST(ConnectionHandshake, VersionOneOnlySideIgnoresThePeersMaxField) {
  // A client offering 0..2 is refused by a version 1 server (it reads
  // protocolVersion 0, as version 1 code does) but accepted by a version 2
  // server, which reads the range.
  const std::string hello =
      Encoded(wire::Hello{wire::kHelloMagic, 0, "odd", 5, 2});
  Connection v1(WithVersions(ServerOptions(), 1, 1), kStart);
  v1.Receive(hello, kStart);
  std::vector<Recorded> events = Drain(v1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kFailedPrecondition);
  Connection v2(ServerOptions(), kStart);
  v2.Receive(hello, kStart);
  events = Drain(v2);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Recorded::kHandshakeDone);
  EXPECT_EQ(v2.version(), 2u);
}

TEST(ConnectionHandshake, ClientRefusesAServerPickOutsideItsRange) {
  // A (broken) server that picks 2 for a version 1 client.
  Connection client(WithVersions(ClientOptions(), 1, 1), kStart);
  client.Receive(Encoded(wire::Hello{wire::kHelloMagic, 2, "s", 5, 2}), kStart);
  std::vector<Recorded> events = Drain(client);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].status,
            absl::FailedPreconditionError(
                "incompatible protocol versions: this side speaks 1..1, the "
                "peer 2..2"));
  EXPECT_EQ(client.version(), 0u);
}

}  // namespace
}  // namespace moonpool::protocol::testing
