// The Hello exchange, and peers that get it wrong.
#include <string>

#include "absl/status/status.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/wire/byte_buffer.h"
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
  // A server speaking version 2 answers our Hello with its own.
  Connection client(ClientOptions(), kStart);
  ASSERT_TRUE(client.SendRequest("a", {}, kStart).ok());
  client.ConsumeOutput(client.PendingOutput().size());
  client.Receive(Encoded(wire::Hello{wire::kHelloMagic, 2, "v2", 5}), kStart);
  std::vector<Recorded> events = Drain(client);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Recorded::kRequestFailed);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(events[0].status.message(),
            "incompatible protocol version 2, this side speaks 1");
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
  // Its Hello is still to be written, so the client learns version 1.
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

}  // namespace
}  // namespace moonpool::protocol::testing
