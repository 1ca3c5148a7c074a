// Cancel (protocol version 2): CancelRequest on the requester's side,
// CancelReceived on the other, and the cancels that have no effect.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// The kinds ("hello", "envelope", "cancel"...) of the frames in `bytes`.
std::vector<std::string> FrameKinds(absl::Span<const char> bytes) {
  wire::FrameDecoder decoder;
  decoder.Feed(bytes);
  std::vector<std::string> kinds;
  while (true) {
    absl::StatusOr<const wire::FrameValue*> f = decoder.Next();
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok() || *f == nullptr) break;
    kinds.emplace_back(wire::FrameKindName(**f));
  }
  return kinds;
}

TEST(ConnectionCancel, CancelledRequestHasNoOutcomeAndItsReplyIsDropped) {
  ConnectionPair p;
  p.Open();
  ASSERT_EQ(p.client.version(), 2u);
  const CorrelationId id = *p.client.SendRequest(
      "work", {.deadline = p.now + absl::Seconds(1)}, p.now);
  p.Pump();
  ASSERT_EQ(OfKind(p.server_events, Recorded::kRequestReceived).size(), 1u);

  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  EXPECT_EQ(p.client.stats().requests_in_flight, 0u);
  EXPECT_EQ(FrameKinds(p.client.PendingOutput()),
            std::vector<std::string>{"cancel"});
  p.Pump();
  std::vector<Recorded> cancels =
      OfKind(p.server_events, Recorded::kCancelReceived);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].id, id);
  // The request still awaits its answer on the server; the answer is
  // dropped by the client as for an unknown id.
  ASSERT_TRUE(p.server.SendReply(id, "late").ok());
  p.Pump();
  // Past the deadline and through the close: still nothing for it.
  p.Advance(absl::Seconds(2));
  ASSERT_TRUE(p.client.SendGoodbye("done").ok());
  p.Pump();
  for (const Recorded& e : p.client_events) {
    EXPECT_NE(e.kind, Recorded::kReplyReceived) << e.id;
    EXPECT_NE(e.kind, Recorded::kRequestFailed) << e.id;
  }
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
  EXPECT_EQ(p.client.stats().requests_cancelled, 1u);
  EXPECT_EQ(p.client.stats().cancels_sent, 1u);
  EXPECT_EQ(p.server.stats().cancels_received, 1u);
  EXPECT_EQ(p.server.stats().cancels_ignored, 0u);
}

TEST(ConnectionCancel, CancelOfARequestNotPendingIsNotFound) {
  ConnectionPair p;
  p.Open();
  EXPECT_EQ(p.client.CancelRequest(CorrelationId(99)).code(),
            absl::StatusCode::kNotFound);
  const CorrelationId id = *p.client.SendRequest("x", {}, p.now);
  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  EXPECT_EQ(p.client.CancelRequest(id).code(), absl::StatusCode::kNotFound);
  // Answered already: nothing to cancel.
  const CorrelationId answered = *p.client.SendRequest("y", {}, p.now);
  p.Pump();
  ASSERT_TRUE(p.server.SendReply(answered, "r").ok());
  p.Pump();
  EXPECT_EQ(p.client.CancelRequest(answered).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(p.client.stats().cancels_sent, 1u);
}

TEST(ConnectionCancel, CancelBeforeTheHandshakeIsSentOnceTheServerSaysTwo) {
  ConnectionPair p;
  const CorrelationId id = *p.client.SendRequest("early", {}, p.now);
  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  // The version is not known yet: no cancel frame behind the request.
  EXPECT_EQ(FrameKinds(p.client.PendingOutput()),
            (std::vector<std::string>{"hello", "envelope"}));
  p.Pump();
  ASSERT_EQ(p.server_events.size(), 3u);
  EXPECT_EQ(p.server_events[0].kind, Recorded::kHandshakeDone);
  EXPECT_EQ(p.server_events[1].kind, Recorded::kRequestReceived);
  EXPECT_EQ(p.server_events[2].kind, Recorded::kCancelReceived);
  EXPECT_EQ(p.server_events[2].id, id);
  EXPECT_EQ(p.client.stats().cancels_sent, 1u);
  // Only a handshake on the client's side.
  ASSERT_EQ(p.client_events.size(), 1u);
  EXPECT_EQ(p.client_events[0].kind, Recorded::kHandshakeDone);
}

TEST(ConnectionCancel, CancelBeforeTheHandshakeIsDroppedWhenTheServerSaysOne) {
  ConnectionPair p(ClientOptions(), WithVersions(ServerOptions(), 1, 1));
  const CorrelationId id = *p.client.SendRequest("early", {}, p.now);
  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  p.Pump();
  EXPECT_EQ(p.client.version(), 1u);
  EXPECT_EQ(p.client.stats().cancels_sent, 0u);
  EXPECT_TRUE(p.client.PendingOutput().empty());
  // The version 1 server saw the Hello and the request, nothing else.
  EXPECT_EQ(p.server.stats().frames_in, 2u);
  EXPECT_EQ(OfKind(p.server_events, Recorded::kCancelReceived).size(), 0u);
  // Its answer is dropped by the client.
  ASSERT_TRUE(p.server.SendReply(id, "r").ok());
  p.Pump();
  EXPECT_EQ(OfKind(p.client_events, Recorded::kReplyReceived).size(), 0u);
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
}

TEST(ConnectionCancel, VersionOneConnectionSendsNoCancelAndIgnoresOne) {
  for (bool client_v2 : {false, true}) {
    SCOPED_TRACE(client_v2 ? "v2 client, v1 server" : "v1 both");
    ConnectionPair p(WithVersions(ClientOptions(), 1, client_v2 ? 2 : 1),
                     WithVersions(ServerOptions(), 1, 1));
    p.Open();
    const CorrelationId id = *p.client.SendRequest("x", {}, p.now);
    p.Pump();
    ASSERT_TRUE(p.client.CancelRequest(id).ok());
    EXPECT_TRUE(p.client.PendingOutput().empty());
    EXPECT_EQ(p.client.stats().cancels_sent, 0u);
    // A cancel frame on a version 1 connection has no effect, and does not
    // close it.
    p.server.Receive(Encoded(wire::Cancel{id}), p.now);
    EXPECT_TRUE(Drain(p.server).empty());
    EXPECT_EQ(p.server.stats().cancels_ignored, 1u);
    EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  }
  // A version 2 server on a version 1 connection ignores it too.
  ConnectionPair p(WithVersions(ClientOptions(), 1, 1), ServerOptions());
  p.Open();
  ASSERT_EQ(p.server.version(), 1u);
  const CorrelationId id = *p.client.SendRequest("x", {}, p.now);
  p.Pump();
  p.server.Receive(Encoded(wire::Cancel{id}), p.now);
  EXPECT_TRUE(Drain(p.server).empty());
  EXPECT_EQ(p.server.stats().cancels_ignored, 1u);
}

TEST(ConnectionCancel, CancelForAnUnknownOrAlreadyCancelledIdIsIgnored) {
  ConnectionPair p;
  p.Open();
  p.server.Receive(Encoded(wire::Cancel{CorrelationId(42)}), p.now);
  EXPECT_TRUE(Drain(p.server).empty());
  EXPECT_EQ(p.server.stats().cancels_ignored, 1u);
  const CorrelationId id = *p.client.SendRequest("x", {}, p.now);
  p.Pump();
  // A peer that cancels twice: one event.
  p.server.Receive(Encoded(wire::Cancel{id}), p.now);
  p.server.Receive(Encoded(wire::Cancel{id}), p.now);
  std::vector<Recorded> events = Drain(p.server);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Recorded::kCancelReceived);
  EXPECT_EQ(p.server.stats().cancels_received, 1u);
  EXPECT_EQ(p.server.stats().cancels_ignored, 2u);
  // After AbandonRequest the id is unknown too.
  ASSERT_TRUE(p.server.AbandonRequest(id).ok());
  p.server.Receive(Encoded(wire::Cancel{id}), p.now);
  EXPECT_TRUE(Drain(p.server).empty());
  EXPECT_EQ(p.server.stats().cancels_ignored, 3u);
}

TEST(ConnectionCancel, CancelCrossingTheReplyIsHarmlessOnBothSides) {
  ConnectionPair p;
  p.Open();
  const CorrelationId id = *p.client.SendRequest("x", {}, p.now);
  p.Pump();
  // Both in flight at once: the reply one way, the cancel the other.
  ASSERT_TRUE(p.server.SendReply(id, "r").ok());
  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  p.Pump();
  EXPECT_TRUE(p.client_events.empty());
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
  EXPECT_EQ(OfKind(p.server_events, Recorded::kCancelReceived).size(), 0u);
  EXPECT_EQ(p.server.stats().cancels_ignored, 1u);
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
}

TEST(ConnectionCancel, ServerMayCancelWhatItSentToTheClient) {
  ConnectionPair p;
  p.Open();
  const CorrelationId id = *p.server.SendRequest("callback", {}, p.now);
  p.Pump();
  ASSERT_TRUE(p.server.CancelRequest(id).ok());
  p.Pump();
  std::vector<Recorded> cancels =
      OfKind(p.client_events, Recorded::kCancelReceived);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].id, id);
}

TEST(ConnectionCancel, CancelledRequestFailsNothingWhenTheConnectionDies) {
  ConnectionPair p;
  p.Open();
  const CorrelationId kept = *p.client.SendRequest("kept", {}, p.now);
  const CorrelationId dropped = *p.client.SendRequest("dropped", {}, p.now);
  p.Pump();
  ASSERT_TRUE(p.client.CancelRequest(dropped).ok());
  p.client.OnTransportClosed(absl::UnavailableError("reset"), p.now);
  // Nothing more is written once the transport closed.
  EXPECT_EQ(FrameKinds(p.client.PendingOutput()),
            std::vector<std::string>{"cancel"});
  std::vector<Recorded> events = Drain(p.client);
  std::vector<Recorded> failed = OfKind(events, Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].id, kept);
  EXPECT_EQ(events.back().kind, Recorded::kClosed);
}

TEST(ConnectionCancel, CancelAfterTheTransportClosedWritesNothing) {
  ConnectionPair p;
  p.Open();
  const CorrelationId id = *p.client.SendRequest("x", {}, p.now);
  p.Pump();
  p.client.OnTransportClosed(absl::UnavailableError("reset"), p.now);
  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  EXPECT_TRUE(p.client.PendingOutput().empty());
  EXPECT_EQ(p.client.stats().cancels_sent, 0u);
  std::vector<Recorded> events = Drain(p.client);
  EXPECT_EQ(OfKind(events, Recorded::kRequestFailed).size(), 0u);
}

}  // namespace
}  // namespace moonpool::protocol::testing
