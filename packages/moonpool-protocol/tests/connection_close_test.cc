// Closing: the outcome rules of DESIGN.md section 6, and Goodbye.
#include <string>

#include "absl/status/status.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::protocol::testing {
namespace {

TEST(ConnectionClose, ResetFailsWrittenAsMaybeDeliveredAndUnwrittenAsNotSent) {
  ConnectionPair p;
  p.Open();
  RequestOptions idempotent;
  idempotent.idempotent = true;
  auto written = p.client.SendRequest("w", {}, p.now);
  auto written_idempotent = p.client.SendRequest("wi", idempotent, p.now);
  p.client.ConsumeOutput(p.client.PendingOutput().size());
  auto unwritten = p.client.SendRequest("u", idempotent, p.now);
  // Half of the last frame was written: still not written.
  p.client.ConsumeOutput(p.client.PendingOutput().size() / 2);
  p.client.OnTransportClosed(absl::UnavailableError("connection reset"), p.now);
  auto events = Drain(p.client);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].id, *written);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(events[0].delivery, Delivery::kMaybeDelivered);
  EXPECT_FALSE(events[0].idempotent);
  EXPECT_NE(events[0].status.message().find("connection reset"),
            absl::string_view::npos);
  EXPECT_EQ(events[1].id, *written_idempotent);
  EXPECT_EQ(events[1].delivery, Delivery::kMaybeDelivered);
  EXPECT_TRUE(events[1].idempotent);
  EXPECT_EQ(events[2].id, *unwritten);
  EXPECT_EQ(events[2].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(events[2].delivery, Delivery::kNotSent);
  EXPECT_EQ(events[3].kind, Recorded::kClosed);
  EXPECT_EQ(events[3].status, absl::UnavailableError("connection reset"));
  EXPECT_TRUE(p.client.WantsClose());
  EXPECT_TRUE(p.client.PendingOutput().empty());
  EXPECT_EQ(p.client.stats().requests_in_flight, 0u);
}

TEST(ConnectionClose, SafeToRetryFollowsDeliveryAndIdempotence) {
  EXPECT_TRUE(SafeToRetry({CorrelationId(1), {}, Delivery::kNotSent, false}));
  EXPECT_TRUE(
      SafeToRetry({CorrelationId(1), {}, Delivery::kNotProcessed, false}));
  EXPECT_FALSE(
      SafeToRetry({CorrelationId(1), {}, Delivery::kMaybeDelivered, false}));
  EXPECT_TRUE(
      SafeToRetry({CorrelationId(1), {}, Delivery::kMaybeDelivered, true}));
}

TEST(ConnectionClose, RepliesReceivedBeforeTheCloseAreStillDelivered) {
  ConnectionPair p;
  p.Open();
  auto id = p.client.SendRequest("x", {}, p.now);
  p.Pump();
  ASSERT_TRUE(p.server.SendReply(*id, "answer").ok());
  p.client.Receive(p.server.PendingOutput(), p.now);
  p.client.OnTransportClosed(absl::OkStatus(), p.now);  // then EOF
  auto events = Drain(p.client);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Recorded::kReplyReceived);
  EXPECT_EQ(events[0].payload, "answer");
  EXPECT_EQ(events[1].kind, Recorded::kClosed);
  EXPECT_EQ(events[1].status.code(), absl::StatusCode::kUnavailable);
}

TEST(ConnectionClose, EndOfStreamInsideAFrameSaysSo) {
  ConnectionPair p;
  p.Open();
  ASSERT_TRUE(p.server.SendOneWay(kDefaultEndpoint, "partial").ok());
  absl::Span<const char> out = p.server.PendingOutput();
  p.client.Receive(out.subspan(0, out.size() - 4), p.now);
  p.client.OnTransportClosed(absl::OkStatus(), p.now);
  auto events = Drain(p.client);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(events[0].status.message().find("inside a frame"),
            absl::string_view::npos);
}

TEST(ConnectionClose, GoodbyeAnswersWhatWasAcceptedAndRefusesTheRest) {
  ConnectionPair p;
  p.Open();
  auto first = p.client.SendRequest("1", {}, p.now);
  auto second = p.client.SendRequest("2", {}, p.now);
  p.Pump();
  // The server says goodbye; meanwhile the client sent a third request.
  ASSERT_TRUE(p.server.SendGoodbye("draining").ok());
  EXPECT_EQ(p.server.state(), ConnectionState::kClosing);
  auto third = p.client.SendRequest("3", {}, p.now);
  ASSERT_TRUE(third.ok());
  p.Pump();
  EXPECT_EQ(p.server.stats().requests_refused, 1u);
  auto client_failed = OfKind(p.client_events, Recorded::kRequestFailed);
  ASSERT_EQ(client_failed.size(), 1u);
  EXPECT_EQ(client_failed[0].id, *third);
  EXPECT_EQ(client_failed[0].delivery, Delivery::kNotProcessed);
  EXPECT_EQ(client_failed[0].status.code(), absl::StatusCode::kUnavailable);
  auto goodbye = OfKind(p.client_events, Recorded::kGoodbyeReceived);
  ASSERT_EQ(goodbye.size(), 1u);
  EXPECT_EQ(goodbye[0].id, *second);
  EXPECT_EQ(goodbye[0].payload, "draining");
  // No new requests on a closing connection.
  EXPECT_EQ(p.client.SendRequest("4", {}, p.now).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(p.server.WantsClose());  // two requests still to answer
  ASSERT_TRUE(p.server.SendReply(*first, "r1").ok());
  ASSERT_TRUE(p.server.SendReply(*second, "r2").ok());
  EXPECT_TRUE(p.server.WantsClose());
  p.Pump();
  EXPECT_EQ(OfKind(p.client_events, Recorded::kReplyReceived).size(), 2u);
  EXPECT_TRUE(p.client.WantsClose());
  // The server closes its socket; both sides see a graceful close.
  p.client.OnTransportClosed(absl::OkStatus(), p.now);
  p.server.OnTransportClosed(absl::OkStatus(), p.now);
  auto client_closed = OfKind(Drain(p.client), Recorded::kClosed);
  auto server_closed = OfKind(Drain(p.server), Recorded::kClosed);
  ASSERT_EQ(client_closed.size(), 1u);
  ASSERT_EQ(server_closed.size(), 1u);
  EXPECT_TRUE(client_closed[0].status.ok()) << client_closed[0].status;
  EXPECT_TRUE(server_closed[0].status.ok()) << server_closed[0].status;
}

TEST(ConnectionClose, ClientGoodbyeToo) {
  ConnectionPair p;
  p.Open();
  auto id = p.server.SendRequest("from server", {}, p.now);
  p.Pump();
  ASSERT_TRUE(p.client.SendGoodbye("bye").ok());
  ASSERT_TRUE(p.client.SendGoodbye("bye again").ok());  // no-op
  p.Pump();
  ASSERT_EQ(OfKind(p.server_events, Recorded::kGoodbyeReceived).size(), 1u);
  // The client still answers what it accepted.
  ASSERT_TRUE(p.client.SendReply(*id, "r").ok());
  p.Pump();
  EXPECT_EQ(OfKind(p.server_events, Recorded::kReplyReceived).size(), 1u);
  EXPECT_TRUE(p.client.WantsClose());
  EXPECT_TRUE(p.server.WantsClose());
}

TEST(ConnectionClose, CommandsAfterCloseFailClearly) {
  ConnectionPair p;
  p.Open();
  auto id = p.client.SendRequest("x", {}, p.now);
  p.Pump();
  p.server.OnTransportClosed(absl::UnavailableError("reset"), p.now);
  Drain(p.server);
  absl::Status s = p.server.SendReply(*id, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("reset"), absl::string_view::npos) << s;
  EXPECT_EQ(p.server.NextWakeup(), absl::InfiniteFuture());
  EXPECT_FALSE(p.server.NextEvent().has_value());
}

}  // namespace
}  // namespace moonpool::protocol::testing
