// Exactly-once requests at the Connection (protocol version 2, DESIGN.md
// section 5, "Exactly-once"): the flag and the settled mark go out only on a
// version 2 connection and only after the server's Hello, a resend keeps its
// first id, and the requester learns which failed requests carried the flag.
// The records themselves are the server's (OutcomeTable, transport); the
// Connection only carries the fields.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
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

// The request envelopes in `c`'s pending output, as the peer's decoder
// reads them (copied, so that they outlive the decoder).
std::vector<Envelope> RequestsInOutput(const Connection& c) {
  wire::FrameDecoder decoder;
  decoder.Feed(c.PendingOutput());
  std::vector<Envelope> out;
  while (true) {
    absl::StatusOr<const wire::FrameValue*> f = decoder.Next();
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok() || *f == nullptr) break;
    if (const auto* e = std::get_if<EnvelopeView>(*f)) {
      if (e->kind == EnvelopeKind::kRequest)
        out.push_back(Envelope::CopyOf(*e));
    }
  }
  return out;
}

RequestOptions ExactlyOnce(absl::Time deadline,
                           CorrelationId answered_below = CorrelationId()) {
  RequestOptions o;
  o.deadline = deadline;
  o.exactly_once = true;
  o.answered_below = answered_below;
  return o;
}

TEST(ConnectionExactlyOnce, BeforeTheHandshakeIsFailedPreconditionAndUsesNoId) {
  ConnectionPair p;
  ASSERT_EQ(p.client.state(), ConnectionState::kHandshaking);
  const size_t hello_bytes = p.client.PendingOutput().size();
  absl::StatusOr<CorrelationId> refused =
      p.client.SendRequest("inc", ExactlyOnce(p.now + absl::Seconds(1)), p.now);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  // Nothing written, no id taken: a plain request may still be pipelined
  // and gets the first id.
  EXPECT_EQ(p.client.PendingOutput().size(), hello_bytes);
  EXPECT_EQ(p.client.stats().requests_sent, 0u);
  EXPECT_EQ(*p.client.SendRequest("get", {}, p.now), CorrelationId(1));
  // After the handshake the same request goes out.
  p.Pump();
  ASSERT_EQ(p.client.state(), ConnectionState::kOpen);
  EXPECT_EQ(*p.client.SendRequest("inc", ExactlyOnce(p.now + absl::Seconds(1)),
                                  p.now),
            CorrelationId(2));
}

TEST(ConnectionExactlyOnce, OnVersionTwoTheServerSeesTheFlagAndTheMark) {
  ConnectionPair p;
  p.Open();
  ASSERT_EQ(p.client.version(), 2u);
  ASSERT_TRUE(p.client.SendRequest("a", {}, p.now).ok());
  const CorrelationId id = *p.client.SendRequest(
      "inc", ExactlyOnce(p.now + absl::Seconds(1), CorrelationId(2)), p.now);
  EXPECT_EQ(id, CorrelationId(2));
  std::vector<Envelope> sent = RequestsInOutput(p.client);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_FALSE(sent[0].exactly_once);
  EXPECT_TRUE(sent[1].exactly_once);
  EXPECT_EQ(sent[1].answered_below, CorrelationId(2));

  // The event and the view it carries say the same.
  Transfer(p.client, p.server, p.now);
  std::vector<RequestReceived> received;
  while (std::optional<Event> e = p.server.NextEvent()) {
    if (const auto* r = std::get_if<RequestReceived>(&*e)) {
      received.push_back(*r);
      EXPECT_EQ(r->exactly_once, r->request.exactly_once);
      EXPECT_EQ(r->answered_below, r->request.answered_below);
    }
  }
  ASSERT_EQ(received.size(), 2u);
  EXPECT_FALSE(received[0].exactly_once);
  EXPECT_FALSE(received[0].answered_below.valid());
  EXPECT_EQ(received[1].request.correlation_id, id);
  EXPECT_TRUE(received[1].exactly_once);
  EXPECT_EQ(received[1].answered_below, CorrelationId(2));
  EXPECT_EQ(received[1].request.payload, "inc");
}

TEST(ConnectionExactlyOnce, PlainVersionTwoRequestsCarryAnsweredBelowToo) {
  ConnectionPair p;
  p.Open();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(p.client.SendRequest("x", {}, p.now).ok());
  RequestOptions o;
  o.answered_below = CorrelationId(3);
  const CorrelationId id = *p.client.SendRequest("y", o, p.now);
  p.Pump();
  std::vector<Recorded> received =
      OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(received.size(), 4u);
  EXPECT_EQ(received[3].id, id);
  EXPECT_FALSE(received[3].exactly_once);
  EXPECT_EQ(received[3].answered_below, CorrelationId(3));
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(received[i].answered_below.valid()) << i;
  }
}

// A version 1 connection, whichever side speaks only version 1: the
// request goes out as a plain one (no flag, no mark on the wire), the
// server sees neither, and a maybe-delivered loss is not reported as
// exactly-once (no server kept an outcome for it).
TEST(ConnectionExactlyOnce, VersionOneConnectionSendsNeitherField) {
  struct Case {
    const char* name;
    ConnectionOptions client;
    ConnectionOptions server;
  };
  const Case cases[] = {
      {"server max 1", ClientOptions(), WithVersions(ServerOptions(), 1, 1)},
      {"client max 1", WithVersions(ClientOptions(), 1, 1), ServerOptions()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ConnectionPair p(c.client, c.server);
    p.Open();
    ASSERT_EQ(p.client.version(), 1u);
    const CorrelationId id = *p.client.SendRequest(
        "inc", ExactlyOnce(p.now + absl::Seconds(1), CorrelationId(1)), p.now);
    RequestOptions plain;
    plain.answered_below = CorrelationId(2);
    const CorrelationId second = *p.client.SendRequest("get", plain, p.now);
    std::vector<Envelope> sent = RequestsInOutput(p.client);
    ASSERT_EQ(sent.size(), 2u);
    for (const Envelope& e : sent) {
      EXPECT_FALSE(e.exactly_once);
      EXPECT_FALSE(e.answered_below.valid());
    }
    p.Pump();
    std::vector<Recorded> received =
        OfKind(p.server_events, Recorded::kRequestReceived);
    ASSERT_EQ(received.size(), 2u);
    EXPECT_EQ(received[0].id, id);
    EXPECT_EQ(received[1].id, second);
    for (const Recorded& r : received) {
      EXPECT_FALSE(r.exactly_once);
      EXPECT_FALSE(r.answered_below.valid());
    }
    p.client.OnTransportClosed(absl::UnavailableError("reset"), p.now);
    std::vector<Recorded> failed =
        OfKind(Drain(p.client), Recorded::kRequestFailed);
    ASSERT_EQ(failed.size(), 2u);
    for (const Recorded& f : failed) {
      EXPECT_EQ(f.status.code(), absl::StatusCode::kAborted) << f.status;
      EXPECT_EQ(f.delivery, Delivery::kMaybeDelivered);
      EXPECT_FALSE(f.exactly_once);
    }
  }
}

// A resend on a new connection: the request goes out with the id it was
// first sent with, and the shared generator is not advanced by it.
TEST(ConnectionExactlyOnce, ResendOnANewConnectionKeepsItsIdAndTheGenerator) {
  CorrelationIdGenerator ids;
  ConnectionOptions options = ClientOptions();
  options.ids = &ids;
  CorrelationId first;
  {
    ConnectionPair p(options);
    p.Open();
    ASSERT_TRUE(p.client.SendRequest("a", {}, p.now).ok());
    first = *p.client.SendRequest("inc", ExactlyOnce(p.now + absl::Seconds(5)),
                                  p.now);
    ASSERT_TRUE(p.client.SendRequest("b", {}, p.now).ok());
    p.Pump();
    p.client.OnTransportClosed(absl::UnavailableError("reset"), p.now);
    std::vector<Recorded> failed =
        OfKind(Drain(p.client), Recorded::kRequestFailed);
    ASSERT_EQ(failed.size(), 3u);
    EXPECT_EQ(failed[1].id, first);
    EXPECT_TRUE(failed[1].exactly_once);
  }
  ASSERT_EQ(first, CorrelationId(2));
  ConnectionPair p(options);
  p.Open();
  RequestOptions resend = ExactlyOnce(p.now + absl::Seconds(5));
  resend.id = first;
  EXPECT_EQ(*p.client.SendRequest("inc", resend, p.now), first);
  // The generator is where the first connection left it.
  EXPECT_EQ(*p.client.SendRequest("c", {}, p.now), CorrelationId(4));
  p.Pump();
  std::vector<Recorded> received =
      OfKind(p.server_events, Recorded::kRequestReceived);
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[0].id, first);
  EXPECT_TRUE(received[0].exactly_once);
  EXPECT_EQ(received[0].payload, "inc");
  EXPECT_EQ(received[1].id, CorrelationId(4));
  // The resend is answered like any request.
  ASSERT_TRUE(p.server.SendReply(first, "1").ok());
  p.Pump();
  std::vector<Recorded> replies =
      OfKind(p.client_events, Recorded::kReplyReceived);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].id, first);
  EXPECT_EQ(p.client.stats().requests_in_flight, 1u);
}

// The peer requires increasing ids, so a resend id at or below the last id
// sent on this connection is refused before anything is written; the
// generator is untouched and the connection stays usable.
TEST(ConnectionExactlyOnce, ResendIdNotAboveTheLastSentIsInvalidArgument) {
  CorrelationIdGenerator ids;
  ConnectionOptions options = ClientOptions();
  options.ids = &ids;
  ConnectionPair p(options);
  p.Open();
  ASSERT_EQ(*p.client.SendRequest("a", {}, p.now), CorrelationId(1));
  ASSERT_EQ(*p.client.SendRequest("b", {}, p.now), CorrelationId(2));
  const size_t output = p.client.PendingOutput().size();
  const uint64_t sent = p.client.stats().requests_sent;
  for (uint64_t id : {uint64_t{1}, uint64_t{2}}) {
    SCOPED_TRACE(id);
    for (bool exactly_once : {true, false}) {
      RequestOptions resend = ExactlyOnce(p.now + absl::Seconds(1));
      resend.exactly_once = exactly_once;
      resend.id = CorrelationId(id);
      absl::StatusOr<CorrelationId> r =
          p.client.SendRequest("x", resend, p.now);
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
          << r.status();
      EXPECT_EQ(p.client.PendingOutput().size(), output);
      EXPECT_EQ(p.client.stats().requests_sent, sent);
      EXPECT_EQ(p.client.stats().requests_in_flight, 2u);
    }
  }
  EXPECT_EQ(*p.client.SendRequest("c", {}, p.now), CorrelationId(3));
  p.Pump();
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  EXPECT_EQ(OfKind(p.server_events, Recorded::kRequestReceived).size(), 3u);
}

TEST(ConnectionExactlyOnce, MaybeDeliveredLossReportsTheFlagAborted) {
  ConnectionPair p;
  p.Open();
  const CorrelationId plain = *p.client.SendRequest("get", {}, p.now);
  const CorrelationId once = *p.client.SendRequest(
      "inc", ExactlyOnce(p.now + absl::Seconds(5)), p.now);
  p.Pump();
  p.client.OnTransportClosed(absl::UnavailableError("connection reset"), p.now);
  std::vector<Recorded> failed =
      OfKind(Drain(p.client), Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 2u);
  for (const Recorded& f : failed) {
    EXPECT_EQ(f.status.code(), absl::StatusCode::kAborted) << f.status;
    EXPECT_EQ(f.delivery, Delivery::kMaybeDelivered);
    EXPECT_FALSE(f.idempotent);
    EXPECT_EQ(f.exactly_once, f.id == once) << f.id.ToString();
  }
  EXPECT_TRUE(failed[0].id == plain || failed[1].id == plain);
}

TEST(ConnectionExactlyOnce, DeadlineAfterWritingReportsTheFlag) {
  ConnectionPair p;
  p.Open();
  const CorrelationId once = *p.client.SendRequest(
      "inc", ExactlyOnce(p.now + absl::Seconds(1)), p.now);
  const CorrelationId plain = *p.client.SendRequest(
      "get", {.deadline = p.now + absl::Seconds(1)}, p.now);
  p.Pump();
  p.Advance(absl::Seconds(1));
  std::vector<Recorded> failed =
      OfKind(p.client_events, Recorded::kRequestFailed);
  ASSERT_EQ(failed.size(), 2u);
  for (const Recorded& f : failed) {
    EXPECT_EQ(f.status.code(), absl::StatusCode::kDeadlineExceeded) << f.status;
    EXPECT_EQ(f.delivery, Delivery::kMaybeDelivered);
    EXPECT_EQ(f.exactly_once, f.id == once) << f.id.ToString();
  }
  EXPECT_TRUE(failed[0].id == plain || failed[1].id == plain);
}

// A version 1 peer may leave any bits in fields it does not know; on a
// version 1 connection they mean nothing, in the event and in its view.
TEST(ConnectionExactlyOnce, VersionOnePeersBitsAreClearedInRequestReceived) {
  struct Case {
    const char* name;
    ConnectionOptions client;
    ConnectionOptions server;
  };
  const Case cases[] = {
      {"server max 1", ClientOptions(), WithVersions(ServerOptions(), 1, 1)},
      {"client max 1", WithVersions(ClientOptions(), 1, 1), ServerOptions()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ConnectionPair p(c.client, c.server);
    p.Open();
    ASSERT_EQ(p.server.version(), 1u);
    EnvelopeView forged{CorrelationId(100),
                        EnvelopeKind::kRequest,
                        kDefaultEndpoint,
                        "inc",
                        absl::Seconds(1),
                        absl::StatusCode::kOk,
                        {},
                        /*stream_credit=*/0,
                        /*exactly_once=*/true,
                        /*answered_below=*/CorrelationId(99)};
    p.server.Receive(Encoded(forged), p.now);
    int received = 0;
    while (std::optional<Event> e = p.server.NextEvent()) {
      const auto* r = std::get_if<RequestReceived>(&*e);
      ASSERT_NE(r, nullptr);
      ++received;
      EXPECT_EQ(r->request.correlation_id, CorrelationId(100));
      EXPECT_FALSE(r->exactly_once);
      EXPECT_FALSE(r->answered_below.valid());
      EXPECT_FALSE(r->request.exactly_once);
      EXPECT_FALSE(r->request.answered_below.valid());
    }
    EXPECT_EQ(received, 1);
    EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  }
  // The same frame on a version 2 connection keeps both.
  ConnectionPair p;
  p.Open();
  EnvelopeView request{CorrelationId(100),
                       EnvelopeKind::kRequest,
                       kDefaultEndpoint,
                       "inc",
                       absl::Seconds(1),
                       absl::StatusCode::kOk,
                       {},
                       /*stream_credit=*/0,
                       /*exactly_once=*/true,
                       /*answered_below=*/CorrelationId(99)};
  p.server.Receive(Encoded(request), p.now);
  std::vector<Recorded> received =
      OfKind(Drain(p.server), Recorded::kRequestReceived);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_TRUE(received[0].exactly_once);
  EXPECT_EQ(received[0].answered_below, CorrelationId(99));
}

}  // namespace
}  // namespace moonpool::protocol::testing
