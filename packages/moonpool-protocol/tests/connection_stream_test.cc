// Reply streams (protocol version 2): a request with stream credit, items
// sent within the credit and granted back, the three ends, and a peer that
// breaks the flow-control rules.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/always.h"
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

// Opens a pair and sends one stream request with `credit`; returns its id,
// received by the server.
CorrelationId OpenStream(ConnectionPair& p, uint64_t credit,
                         absl::Duration timeout = absl::Seconds(10)) {
  p.Open();
  const CorrelationId id = *p.client.SendRequest(
      "scan", {.deadline = p.now + timeout, .stream_credit = credit}, p.now);
  p.Pump();
  std::vector<Recorded> requests =
      OfKind(p.server_events, Recorded::kRequestReceived);
  EXPECT_EQ(requests.size(), 1u);
  if (!requests.empty()) {
    EXPECT_EQ(requests[0].stream_credit, credit);
  }
  p.server_events.clear();
  return id;
}

std::vector<std::string> ItemsOf(const std::vector<Recorded>& events) {
  std::vector<std::string> items;
  for (const Recorded& r : OfKind(events, Recorded::kStreamItemReceived)) {
    items.push_back(r.payload);
  }
  return items;
}

TEST(ConnectionStream, ItemsArriveInOrderThenOneEnd) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 1000);
  for (const char* item : {"a", "bb", "ccc"}) {
    ASSERT_TRUE(p.server.StreamWritable(id));
    ASSERT_TRUE(p.server.SendStreamItem(id, item).ok());
  }
  ASSERT_TRUE(p.server.SendStreamEnd(id).ok());
  p.Pump();
  EXPECT_EQ(ItemsOf(p.client_events),
            (std::vector<std::string>{"a", "bb", "ccc"}));
  std::vector<Recorded> ends =
      OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_TRUE(ends[0].status.ok());
  EXPECT_TRUE(ends[0].stream_end);
  EXPECT_EQ(ends[0].payload, "");
  // The end came last.
  EXPECT_EQ(p.client_events.back().kind, Recorded::kReplyReceived);
  EXPECT_EQ(p.client.stats().requests_in_flight, 0u);
  EXPECT_EQ(p.server.stats().stream_items_sent, 3u);
  EXPECT_EQ(p.client.stats().stream_items_received, 3u);
  // Nothing is left to answer: the server may say goodbye and close.
  EXPECT_EQ(p.server.SendStreamItem(id, "late").code(),
            absl::StatusCode::kNotFound);
}

TEST(ConnectionStream, SenderStopsAtTheCreditAndResumesOnGrant) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 10);
  ASSERT_TRUE(p.server.SendStreamItem(id, "12345678").ok());  // 8 < 10
  EXPECT_TRUE(p.server.StreamWritable(id));                   // 8 < 10
  ASSERT_TRUE(p.server.SendStreamItem(id, "12345678").ok());  // now 16
  EXPECT_FALSE(p.server.StreamWritable(id));
  absl::Status s = p.server.SendStreamItem(id, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  p.Pump();
  EXPECT_EQ(ItemsOf(p.client_events).size(), 2u);

  // The client consumed the first item: 8 bytes back; 8 remain outstanding.
  ASSERT_TRUE(p.client.GrantCredit(id, 8).ok());
  EXPECT_EQ(p.client.stats().credits_sent, 1u);
  p.Pump();
  std::vector<Recorded> credits =
      OfKind(p.server_events, Recorded::kCreditReceived);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(credits[0].id, id);
  EXPECT_EQ(credits[0].credit_bytes, 8u);
  EXPECT_TRUE(p.server.StreamWritable(id));
  ASSERT_TRUE(p.server.SendStreamItem(id, "x").ok());
  EXPECT_TRUE(p.server.StreamWritable(id));  // 9 < 10
}

TEST(ConnectionStream,
     OneItemLargerThanTheCreditPassesWhenNothingIsOutstanding) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 4);
  ASSERT_TRUE(p.server.SendStreamItem(id, std::string(100, 'z')).ok());
  EXPECT_FALSE(p.server.StreamWritable(id));
  p.Pump();
  ASSERT_EQ(ItemsOf(p.client_events).size(), 1u);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  ASSERT_TRUE(p.client.GrantCredit(id, 100).ok());
  p.Pump();
  EXPECT_TRUE(p.server.StreamWritable(id));
}

TEST(ConnectionStream, PlainReplyIsAStreamOfOne) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 64);
  ASSERT_TRUE(p.server.SendReply(id, "only").ok());
  p.Pump();
  std::vector<Recorded> ends =
      OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_FALSE(ends[0].stream_end);
  EXPECT_EQ(ends[0].payload, "only");
  EXPECT_TRUE(ItemsOf(p.client_events).empty());
}

TEST(ConnectionStream, ErrorEndsTheStreamWithItsStatus) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 64);
  ASSERT_TRUE(p.server.SendStreamItem(id, "first").ok());
  ASSERT_TRUE(
      p.server.SendErrorReply(id, absl::NotFoundError("range moved")).ok());
  p.Pump();
  EXPECT_EQ(ItemsOf(p.client_events), std::vector<std::string>{"first"});
  std::vector<Recorded> ends =
      OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].status, absl::NotFoundError("range moved"));
}

TEST(ConnectionStream, DeadlineBoundsTheWholeStream) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 64, absl::Seconds(2));
  ASSERT_TRUE(p.server.SendStreamItem(id, "one").ok());
  p.Pump();
  p.Advance(absl::Seconds(3));
  std::vector<Recorded> failed =
      OfKind(p.client_events, Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  // A late item is dropped as for an unknown id, the connection unharmed.
  ASSERT_TRUE(p.server.SendStreamItem(id, "late").ok());
  p.Pump();
  EXPECT_EQ(ItemsOf(p.client_events).size(), 1u);
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
}

TEST(ConnectionStream, CancelCrossingItemsDropsThemAndCreditIsIgnored) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 1000);
  ASSERT_TRUE(p.server.SendStreamItem(id, "in flight").ok());
  ASSERT_TRUE(p.client.CancelRequest(id).ok());
  p.Pump();
  EXPECT_TRUE(ItemsOf(p.client_events).empty());
  EXPECT_EQ(p.client.stats().replies_dropped, 1u);
  ASSERT_EQ(OfKind(p.server_events, Recorded::kCancelReceived).size(), 1u);
  // The client can no longer grant credit for it.
  EXPECT_EQ(p.client.GrantCredit(id, 1).code(), absl::StatusCode::kNotFound);
  // The server ends it; a credit that crossed the end would be ignored.
  ASSERT_TRUE(p.server.SendStreamEnd(id).ok());
  p.client.Receive(Encoded(wire::Credit{id, 9}), p.now);
  Transfer(p.client, p.server, p.now);
  p.Pump();
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.server.stats().credits_ignored, 0u);
}

TEST(ConnectionStream, CreditForAnEndedStreamIsIgnored) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 100);
  ASSERT_TRUE(p.server.SendStreamItem(id, "abc").ok());
  ASSERT_TRUE(p.server.SendStreamEnd(id).ok());
  // The credit is written before the client reads the end: it crosses it.
  p.server.Receive(Encoded(wire::Credit{id, 3}), p.now);
  while (p.server.NextEvent()) {
  }
  EXPECT_EQ(p.server.stats().credits_ignored, 1u);
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
}

TEST(ConnectionStream, GrantMisuseIsRefusedAndTheConnectionUnaffected) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 100);
  ASSERT_TRUE(p.server.SendStreamItem(id, "abc").ok());
  p.Pump();
  EXPECT_EQ(p.client.GrantCredit(id, 4).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(p.client.GrantCredit(id, 0).ok());
  EXPECT_EQ(p.client.GrantCredit(CorrelationId(999), 1).code(),
            absl::StatusCode::kNotFound);
  const CorrelationId unary = *p.client.SendRequest(
      "get", {.deadline = p.now + absl::Seconds(1)}, p.now);
  EXPECT_EQ(p.client.GrantCredit(unary, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.client.stats().credits_sent, 0u);
}

TEST(ConnectionStream, StreamCommandsOnAUnaryRequestFailPrecondition) {
  ConnectionPair p;
  p.Open();
  const CorrelationId id = *p.client.SendRequest(
      "get", {.deadline = p.now + absl::Seconds(1)}, p.now);
  p.Pump();
  EXPECT_FALSE(p.server.StreamWritable(id));
  EXPECT_EQ(p.server.SendStreamItem(id, "x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(p.server.SendStreamEnd(id).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(p.server.SendReply(id, "ok").ok());
}

// A peer that sends past its credit is closed with ResourceExhausted, and
// the Always point reports the breach.
TEST(ConnectionStream, PeerSendingPastItsCreditIsClosedResourceExhausted) {
  std::vector<std::pair<bool, std::string>> reports;
  ConnectionOptions client_options = ClientOptions();
  client_options.always = [&](bool held, absl::string_view name,
                              absl::string_view) {
    reports.emplace_back(held, std::string(name));
  };
  ConnectionPair p(client_options);
  const CorrelationId id = OpenStream(p, 8);
  ASSERT_TRUE(p.server.SendStreamItem(id, "12345678").ok());
  p.Pump();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_TRUE(reports[0].first);
  // A second item with nothing granted back: hand-made, as a broken server
  // would send it.
  EnvelopeView item{id,     EnvelopeKind::kStreamItem, kDefaultEndpoint,
                    "more", absl::ZeroDuration(),      absl::StatusCode::kOk,
                    {}};
  p.client.Receive(Encoded(item), p.now);
  std::vector<Recorded> events = Drain(p.client);
  ASSERT_EQ(p.client.state(), ConnectionState::kClosed);
  EXPECT_EQ(p.client.close_status().code(),
            absl::StatusCode::kResourceExhausted)
      << p.client.close_status();
  EXPECT_EQ(p.client.stats().protocol_errors.credit_overruns, 1u);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_FALSE(reports[1].first);
  EXPECT_EQ(reports[1].second, always_points::kStreamWithinCredit);
  // The stream's request failed with the close.
  std::vector<Recorded> failed = OfKind(events, Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].id, id);
}

TEST(ConnectionStream, StreamKindsForAUnaryRequestCloseTheConnection) {
  for (EnvelopeKind kind :
       {EnvelopeKind::kStreamItem, EnvelopeKind::kStreamEnd}) {
    ConnectionPair p;
    p.Open();
    const CorrelationId id = *p.client.SendRequest(
        "get", {.deadline = p.now + absl::Seconds(1)}, p.now);
    EnvelopeView e{id,
                   kind,
                   kDefaultEndpoint,
                   "x",
                   absl::ZeroDuration(),
                   absl::StatusCode::kOk,
                   {}};
    p.client.Receive(Encoded(e), p.now);
    Drain(p.client);
    EXPECT_EQ(p.client.close_status().code(),
              absl::StatusCode::kInvalidArgument)
        << EnvelopeKindName(kind);
    EXPECT_EQ(p.client.stats().protocol_errors.unexpected_frames, 1u);
  }
}

TEST(ConnectionStream, CreditBeyondOutstandingOrForAUnaryRequestCloses) {
  {
    ConnectionPair p;
    const CorrelationId id = OpenStream(p, 100);
    ASSERT_TRUE(p.server.SendStreamItem(id, "abc").ok());
    p.server.Receive(Encoded(wire::Credit{id, 4}), p.now);
    Drain(p.server);
    EXPECT_EQ(p.server.close_status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    ConnectionPair p;
    p.Open();
    const CorrelationId id = *p.client.SendRequest(
        "get", {.deadline = p.now + absl::Seconds(1)}, p.now);
    p.Pump();
    p.server.Receive(Encoded(wire::Credit{id, 1}), p.now);
    Drain(p.server);
    EXPECT_EQ(p.server.close_status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ConnectionStream, VersionOneConnectionIgnoresCreditAndAnswersOnce) {
  // A version 2 client and a version 1 server: the pipelined request
  // carried its credit, which the version 1 side does not see.
  ConnectionPair p(ClientOptions(), WithVersions(ServerOptions(), 1, 1));
  const CorrelationId id = *p.client.SendRequest(
      "scan", {.deadline = p.now + absl::Seconds(1), .stream_credit = 64},
      p.now);
  p.Pump();
  ASSERT_EQ(p.client.version(), 1u);
  std::vector<Recorded> requests =
      OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].stream_credit, 0u);
  EXPECT_EQ(p.server.SendStreamItem(id, "x").code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(p.server.SendReply(id, "all of it").ok());
  p.Pump();
  std::vector<Recorded> ends =
      OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].payload, "all of it");

  // On the now known version 1 connection, no credit is sent at all, and a
  // stream kind from the peer is a protocol error.
  const CorrelationId second = *p.client.SendRequest(
      "scan", {.deadline = p.now + absl::Seconds(1), .stream_credit = 64},
      p.now);
  p.Pump();
  requests = OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].stream_credit, 0u);
  EnvelopeView item{second, EnvelopeKind::kStreamItem, kDefaultEndpoint,
                    "x",    absl::ZeroDuration(),      absl::StatusCode::kOk,
                    {}};
  p.client.Receive(Encoded(item), p.now);
  Drain(p.client);
  EXPECT_EQ(p.client.close_status().code(), absl::StatusCode::kInvalidArgument);
}

// A side that speaks only version 1 is version 1 exactly: even before the
// handshake its requests carry no stream credit on the wire.
TEST(ConnectionStream, VersionOneOnlyClientNeverSendsCredit) {
  ConnectionPair p(WithVersions(ClientOptions(), 1, 1), ServerOptions());
  ASSERT_TRUE(p.client
                  .SendRequest("scan",
                               {.deadline = p.now + absl::Seconds(1),
                                .stream_credit = 64},
                               p.now)
                  .ok());
  wire::FrameDecoder decoder;
  decoder.Feed(p.client.PendingOutput());
  int envelopes = 0;
  while (true) {
    absl::StatusOr<const wire::FrameValue*> f = decoder.Next();
    ASSERT_TRUE(f.ok()) << f.status();
    if (*f == nullptr) break;
    if (const auto* e = std::get_if<EnvelopeView>(*f)) {
      ++envelopes;
      EXPECT_EQ(e->stream_credit, 0u);
    }
  }
  EXPECT_EQ(envelopes, 1);
}

// The sender reports the invariant at every item it sends, as the
// receiver does at every item it receives.
TEST(ConnectionStream, BothEndsReportTheCreditInvariantPerItem) {
  int client_reports = 0;
  int server_reports = 0;
  ConnectionOptions client_options = ClientOptions();
  client_options.always = [&](bool held, absl::string_view name,
                              absl::string_view) {
    EXPECT_TRUE(held) << name;
    ++client_reports;
  };
  ConnectionOptions server_options = ServerOptions();
  server_options.always = [&](bool held, absl::string_view name,
                              absl::string_view) {
    EXPECT_TRUE(held) << name;
    ++server_reports;
  };
  ConnectionPair p(client_options, server_options);
  const CorrelationId id = OpenStream(p, 100);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(p.server.SendStreamItem(id, "ab").ok());
  p.Pump();
  EXPECT_EQ(server_reports, 3);
  EXPECT_EQ(client_reports, 3);
}

TEST(ConnectionStream, VersionOneConnectionIgnoresCreditFrames) {
  ConnectionPair p(WithVersions(ClientOptions(), 1, 1), ServerOptions());
  p.Open();
  const CorrelationId id = *p.client.SendRequest(
      "get", {.deadline = p.now + absl::Seconds(1)}, p.now);
  p.Pump();
  p.server.Receive(Encoded(wire::Credit{id, 1}), p.now);
  Drain(p.server);
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.server.stats().credits_ignored, 1u);
}

TEST(ConnectionStream, ConnectionLossFailsTheStreamAfterItsItems) {
  ConnectionPair p;
  const CorrelationId id = OpenStream(p, 100);
  ASSERT_TRUE(p.server.SendStreamItem(id, "one").ok());
  p.Pump();
  p.client.OnTransportClosed(absl::UnavailableError("reset"), p.now);
  std::vector<Recorded> events = Drain(p.client);
  std::vector<Recorded> failed = OfKind(events, Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].id, id);
  EXPECT_EQ(failed[0].status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ItemsOf(p.client_events), std::vector<std::string>{"one"});
}

}  // namespace
}  // namespace moonpool::protocol::testing
