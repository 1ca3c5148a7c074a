// Requests, replies, error replies, one-way messages, deadlines and bounds.
#include <string>

#include "absl/status/status.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::protocol::testing {
namespace {

TEST(ConnectionRequest, ReplyReachesTheRequestItAnswers) {
  ConnectionPair p;
  p.Open();
  auto a = p.client.SendRequest("a", {}, p.now);
  auto b = p.client.SendRequest("b", {}, p.now);
  ASSERT_TRUE(a.ok() && b.ok());
  p.Pump();
  auto received = OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(received.size(), 2u);
  // Answer out of order.
  ASSERT_TRUE(p.server.SendReply(received[1].id, "reply-b").ok());
  ASSERT_TRUE(p.server.SendReply(received[0].id, "reply-a").ok());
  p.Pump();
  auto replies = OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].id, *b);
  EXPECT_EQ(replies[0].payload, "reply-b");
  EXPECT_TRUE(replies[0].status.ok());
  EXPECT_EQ(replies[1].id, *a);
  EXPECT_EQ(replies[1].payload, "reply-a");
  EXPECT_EQ(p.client.stats().requests_in_flight, 0u);
  EXPECT_EQ(p.client.stats().replies_received, 2u);
}

TEST(ConnectionRequest, CorrelationIdsStartAtOneAndIncrease) {
  ConnectionPair p;
  p.Open();
  for (uint64_t i = 1; i <= 5; ++i) {
    EXPECT_EQ(*p.client.SendRequest("x", {}, p.now), CorrelationId(i));
  }
}

TEST(ConnectionRequest, SharedGeneratorNeverReusesIdsAcrossConnections) {
  CorrelationIdGenerator ids;
  ConnectionOptions options = ClientOptions();
  options.ids = &ids;
  CorrelationId last;
  for (int connection = 0; connection < 3; ++connection) {
    ConnectionPair p(options);
    p.Open();
    for (int i = 0; i < 3; ++i) {
      CorrelationId id = *p.client.SendRequest("x", {}, p.now);
      EXPECT_GT(id, last);
      last = id;
    }
  }
  EXPECT_EQ(last, CorrelationId(9));
}

TEST(ConnectionRequest, ErrorReplyCarriesTheHandlersStatus) {
  ConnectionPair p;
  p.Open();
  auto id = p.client.SendRequest("get k", {}, p.now);
  p.Pump();
  ASSERT_TRUE(
      p.server.SendErrorReply(*id, absl::NotFoundError("no key k")).ok());
  p.Pump();
  auto replies = OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].status, absl::NotFoundError("no key k"));
}

TEST(ConnectionRequest, ErrorReplyNeedsAnError) {
  ConnectionPair p;
  p.Open();
  auto id = p.client.SendRequest("x", {}, p.now);
  p.Pump();
  EXPECT_EQ(p.server.SendErrorReply(*id, absl::OkStatus()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(p.server.SendReply(*id, "fine").ok());  // still awaited
}

TEST(ConnectionRequest, ReplyToUnknownOrAnsweredRequestIsNotFound) {
  ConnectionPair p;
  p.Open();
  EXPECT_EQ(p.server.SendReply(CorrelationId(99), "x").code(),
            absl::StatusCode::kNotFound);
  auto id = p.client.SendRequest("x", {}, p.now);
  p.Pump();
  EXPECT_TRUE(p.server.SendReply(*id, "once").ok());
  EXPECT_EQ(p.server.SendReply(*id, "twice").code(),
            absl::StatusCode::kNotFound);
}

TEST(ConnectionRequest, AbandonedRequestIsForgottenUnanswered) {
  ConnectionPair p;
  p.Open();
  auto id = p.client.SendRequest("x", {}, p.now);
  p.Pump();
  const size_t output_before = p.server.PendingOutput().size();
  ASSERT_TRUE(p.server.AbandonRequest(*id).ok());
  EXPECT_EQ(p.server.PendingOutput().size(), output_before);  // nothing sent
  EXPECT_EQ(p.server.SendReply(*id, "late").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(p.server.AbandonRequest(*id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(p.server.stats().requests_abandoned, 1u);
  // A goodbye has nothing left to wait for.
  ASSERT_TRUE(p.server.SendGoodbye("bye").ok());
  EXPECT_TRUE(p.server.WantsClose());
}

TEST(ConnectionRequest, OneWayArrivesWithItsEndpoint) {
  ConnectionPair p;
  p.Open();
  ASSERT_TRUE(p.client.SendOneWay(Endpoint(42), "fire and forget").ok());
  ASSERT_TRUE(p.server.SendOneWay(Endpoint(7), "and back").ok());
  p.Pump();
  auto at_server = OfKind(p.server_events, Recorded::kOneWayReceived);
  ASSERT_EQ(at_server.size(), 1u);
  EXPECT_EQ(at_server[0].endpoint, Endpoint(42));
  EXPECT_EQ(at_server[0].payload, "fire and forget");
  EXPECT_EQ(OfKind(p.client_events, Recorded::kOneWayReceived).size(), 1u);
}

TEST(ConnectionRequest, ServerMaySendRequestsToo) {
  ConnectionPair p;
  p.Open();
  auto id = p.server.SendRequest("from server", {}, p.now);
  ASSERT_TRUE(id.ok());
  p.Pump();
  auto at_client = OfKind(p.client_events, Recorded::kRequestReceived);
  ASSERT_EQ(at_client.size(), 1u);
  ASSERT_TRUE(p.client.SendReply(at_client[0].id, "ok").ok());
  p.Pump();
  EXPECT_EQ(OfKind(p.server_events, Recorded::kReplyReceived).size(), 1u);
}

TEST(ConnectionRequest, BudgetTravelsAndBecomesADeadlineOnTheReceiversClock) {
  ConnectionPair p;
  p.Open();
  RequestOptions options;
  options.deadline = p.now + absl::Milliseconds(1500);
  options.endpoint = Endpoint(3);
  ASSERT_TRUE(p.client.SendRequest("x", options, p.now).ok());
  p.now += absl::Milliseconds(200);  // transit time, counted by the receiver
  p.Pump();
  auto received = OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].deadline, kStart + absl::Milliseconds(200 + 1500));
  EXPECT_EQ(received[0].endpoint, Endpoint(3));
}

TEST(ConnectionRequest, DefaultDeadlineApplies) {
  ConnectionOptions options = ClientOptions();
  options.default_request_timeout = absl::Seconds(2);
  options.keepalive_timeout = absl::Seconds(100);
  ConnectionPair p(options);
  p.Open();
  ASSERT_TRUE(p.client.SendRequest("x", {}, p.now).ok());
  p.Pump();
  auto received = OfKind(p.server_events, Recorded::kRequestReceived);
  EXPECT_EQ(received[0].deadline, p.now + absl::Seconds(2));
  p.Advance(absl::Milliseconds(1999));
  EXPECT_TRUE(OfKind(p.client_events, Recorded::kRequestFailed).empty());
  p.Advance(absl::Milliseconds(1));
  auto failed = OfKind(p.client_events, Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(failed[0].delivery, Delivery::kMaybeDelivered);
}

TEST(ConnectionRequest, DeadlineBeforeWritingSaysNotSent) {
  ConnectionPair p;
  p.Open();
  RequestOptions options;
  options.deadline = p.now + absl::Milliseconds(10);
  ASSERT_TRUE(p.client.SendRequest("x", options, p.now).ok());
  p.client.AdvanceTime(p.now + absl::Milliseconds(10));
  auto events = Drain(p.client);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(events[0].delivery, Delivery::kNotSent);
}

TEST(ConnectionRequest, LateReplyAfterDeadlineIsDroppedAndCounted) {
  ConnectionPair p;
  p.Open();
  RequestOptions options;
  options.deadline = p.now + absl::Milliseconds(100);
  auto id = p.client.SendRequest("x", options, p.now);
  p.Pump();
  p.Advance(absl::Milliseconds(100));
  ASSERT_EQ(OfKind(p.client_events, Recorded::kRequestFailed).size(), 1u);
  ASSERT_TRUE(p.server.SendReply(*id, "too late").ok());
  p.Pump();
  EXPECT_TRUE(OfKind(p.client_events, Recorded::kReplyReceived).empty());
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
}

TEST(ConnectionRequest, ReplyForAnIdNeverSentIsDroppedNotFatal) {
  ConnectionPair p;
  p.Open();
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  ASSERT_TRUE(encoder
                  .Encode(EnvelopeView{CorrelationId(12345),
                                       EnvelopeKind::kReply,
                                       kDefaultEndpoint,
                                       "stray",
                                       absl::ZeroDuration(),
                                       absl::StatusCode::kOk,
                                       {}},
                          out)
                  .ok());
  p.client.Receive(out.Readable(), p.now);
  EXPECT_TRUE(Drain(p.client).empty());
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
}

TEST(ConnectionRequest, PastDeadlineIsRefusedAtOnce) {
  ConnectionPair p;
  p.Open();
  RequestOptions options;
  options.deadline = p.now;
  EXPECT_EQ(p.client.SendRequest("x", options, p.now).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(p.client.stats().requests_sent, 0u);
}

TEST(ConnectionRequest, PendingRequestBoundIsResourceExhausted) {
  ConnectionOptions options = ClientOptions();
  options.max_pending_requests = 3;
  ConnectionPair p(options);
  p.Open();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(p.client.SendRequest("x", {}, p.now).ok());
  EXPECT_EQ(p.client.SendRequest("x", {}, p.now).status().code(),
            absl::StatusCode::kResourceExhausted);
  p.Pump();
  auto received = OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_TRUE(p.server.SendReply(received[0].id, "").ok());
  p.Pump();
  EXPECT_TRUE(p.client.SendRequest("x", {}, p.now).ok());
}

TEST(ConnectionRequest, OutputBoundIsResourceExhausted) {
  ConnectionOptions options = ClientOptions();
  options.max_output_bytes = 4096;
  ConnectionPair p(options);
  p.Open();
  const std::string payload(1000, 'x');
  int sent = 0;
  absl::Status last;
  while (true) {
    auto id = p.client.SendRequest(payload, {}, p.now);
    if (!id.ok()) {
      last = id.status();
      break;
    }
    ++sent;
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GE(sent, 2);
  EXPECT_LE(p.client.PendingOutput().size(), 4096u);
  EXPECT_EQ(p.client.SendOneWay(kDefaultEndpoint, payload).code(),
            absl::StatusCode::kResourceExhausted);
  // Draining the output makes room again.
  p.Pump();
  EXPECT_TRUE(p.client.SendRequest(payload, {}, p.now).ok());
}

TEST(ConnectionRequest, FrameBoundIsResourceExhausted) {
  ConnectionOptions options = ClientOptions();
  options.max_frame_bytes = 1024;
  ConnectionPair p(options);
  p.Open();
  EXPECT_EQ(
      p.client.SendRequest(std::string(2000, 'x'), {}, p.now).status().code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(p.client.SendRequest(std::string(500, 'x'), {}, p.now).ok());
}

TEST(ConnectionRequest, OversizedFrameFromThePeerClosesTheConnection) {
  ConnectionOptions server = ServerOptions();
  server.max_frame_bytes = 1024;
  ConnectionPair p(ClientOptions(), server);
  p.Open();
  ASSERT_TRUE(p.client.SendRequest(std::string(4000, 'x'), {}, p.now).ok());
  p.Pump();
  auto closed = OfKind(p.server_events, Recorded::kClosed);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p.server.stats().protocol_errors.oversized_frames, 1u);
}

TEST(ConnectionRequest, RequestIdsThatGoBackwardsAreAProtocolError) {
  ConnectionPair p;
  p.Open();
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  for (uint64_t id : {5, 5}) {
    ASSERT_TRUE(encoder
                    .Encode(EnvelopeView{CorrelationId(id),
                                         EnvelopeKind::kRequest,
                                         kDefaultEndpoint,
                                         "x",
                                         absl::ZeroDuration(),
                                         absl::StatusCode::kOk,
                                         {}},
                            out)
                    .ok());
  }
  p.server.Receive(out.Readable(), p.now);
  auto events = Drain(p.server);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Recorded::kRequestReceived);
  EXPECT_EQ(events[1].kind, Recorded::kClosed);
  EXPECT_EQ(events[1].status.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moonpool::protocol::testing
