// Keepalive (DESIGN.md section 5): only silence counts.
#include <string>

#include "absl/status/status.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::protocol::testing {
namespace {

TEST(ConnectionKeepalive, SilentPeerIsPingedEveryIntervalThenDeclaredGone) {
  ConnectionPair p;
  p.Open();
  EXPECT_EQ(p.client.NextWakeup(), p.now + absl::Seconds(1));
  // The server goes silent: only the client's clock moves.
  absl::Time t = p.now;
  for (int i = 1; i <= 3; ++i) {
    t += absl::Seconds(1);
    p.client.AdvanceTime(t);
    // The client's link is writable; only the server is silent.
    p.client.ConsumeOutput(p.client.PendingOutput().size());
    EXPECT_EQ(p.client.stats().pings_sent, static_cast<uint64_t>(i));
    EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  }
  t += absl::Seconds(1);  // 4 s of silence
  p.client.AdvanceTime(t);
  auto events = Drain(p.client);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Recorded::kClosed);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p.client.stats().keepalive_timeouts, 1u);
}

TEST(ConnectionKeepalive, UnwrittenPingsDoNotPileUpWhileAPeerTricklesBytes) {
  // Found by fuzz/protocol_connection_fuzzer: a peer that sends a byte now
  // and then (so it is never declared gone) and never reads made the output
  // grow by one ping per interval, past every bound.
  ConnectionPair p;
  p.Open();
  const std::string pong = [] {
    wire::FrameEncoder encoder;
    wire::ByteBuffer out;
    EXPECT_TRUE(encoder.Encode(wire::Pong{1}, out).ok());
    return std::string(out.Readable().data(), out.Readable().size());
  }();
  absl::Time t = p.now;
  for (size_t i = 0; i < 3 * pong.size(); ++i) {
    t += absl::Milliseconds(1500);
    p.client.Receive(absl::Span<const char>(&pong[i % pong.size()], 1), t);
    t += absl::Milliseconds(1500);
    p.client.AdvanceTime(t);
    Drain(p.client);
  }
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.client.stats().pings_sent, 1u);
  const size_t one_ping = p.client.PendingOutput().size();
  // Once that ping is written, the next interval sends another.
  p.client.ConsumeOutput(one_ping);
  p.client.AdvanceTime(t + absl::Seconds(1));
  EXPECT_EQ(p.client.stats().pings_sent, 2u);
  EXPECT_EQ(p.client.PendingOutput().size(), one_ping);
}

TEST(ConnectionKeepalive, PongKeepsAnIdleConnectionAlive) {
  ConnectionPair p;
  p.Open();
  for (int i = 0; i < 20; ++i) {
    p.Advance(absl::Milliseconds(700));
    p.Pump();
  }
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
  EXPECT_GT(p.client.stats().pings_sent + p.server.stats().pings_sent, 0u);
  EXPECT_EQ(p.client.stats().keepalive_timeouts, 0u);
}

TEST(ConnectionKeepalive, TrafficMeansNoPings) {
  ConnectionPair p;
  p.Open();
  for (int i = 0; i < 20; ++i) {
    p.now += absl::Milliseconds(500);
    ASSERT_TRUE(p.client.SendOneWay(kDefaultEndpoint, "tick").ok());
    ASSERT_TRUE(p.server.SendOneWay(kDefaultEndpoint, "tock").ok());
    p.Pump();
    p.client.AdvanceTime(p.now);
    p.server.AdvanceTime(p.now);
  }
  EXPECT_EQ(p.client.stats().pings_sent, 0u);
  EXPECT_EQ(p.server.stats().pings_sent, 0u);
}

TEST(ConnectionKeepalive, LargeFrameStillArrivingIsNotADeadPeer) {
  ConnectionPair p;
  p.Open();
  ASSERT_TRUE(
      p.server.SendOneWay(kDefaultEndpoint, std::string(100'000, 'x')).ok());
  // The frame trickles in, 1000 bytes every 900 ms: never a whole frame for
  // far longer than the timeout, but never 4 s of silence either.
  absl::Span<const char> out = p.server.PendingOutput();
  std::string bytes(out.data(), out.size());
  p.server.ConsumeOutput(bytes.size());
  size_t pos = 0;
  int steps = 0;
  while (pos < bytes.size() && steps < 10) {
    p.now += absl::Milliseconds(900);
    const size_t n = std::min<size_t>(1000, bytes.size() - pos);
    p.client.Receive(absl::Span<const char>(bytes.data() + pos, n), p.now);
    pos += n;
    p.client.AdvanceTime(p.now);
    ++steps;
  }
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  EXPECT_EQ(p.client.stats().keepalive_timeouts, 0u);
}

TEST(ConnectionKeepalive, IntervalAndTimeoutAreConfigurable) {
  ConnectionOptions options = ClientOptions();
  options.keepalive_interval = absl::Milliseconds(100);
  options.keepalive_timeout = absl::Milliseconds(250);
  ConnectionPair p(options);
  p.Open();
  EXPECT_EQ(p.client.NextWakeup(), p.now + absl::Milliseconds(100));
  p.client.AdvanceTime(p.now + absl::Milliseconds(100));
  EXPECT_EQ(p.client.stats().pings_sent, 1u);
  p.client.AdvanceTime(p.now + absl::Milliseconds(250));
  EXPECT_EQ(p.client.state(), ConnectionState::kClosed);
}

TEST(ConnectionKeepalive, ServerThatNeverAnswersHelloTimesOut) {
  Connection client(ClientOptions(), kStart);
  ASSERT_TRUE(client.SendRequest("x", {}, kStart).ok());
  client.ConsumeOutput(client.PendingOutput().size());
  client.AdvanceTime(kStart + absl::Seconds(4));
  auto events = Drain(client);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Recorded::kRequestFailed);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(events[0].delivery, Delivery::kMaybeDelivered);
  EXPECT_EQ(events[1].kind, Recorded::kClosed);
}

TEST(ConnectionKeepalive, PingFloodFromAPeerThatDoesNotReadClosesIt) {
  ConnectionPair p;
  p.Open();
  wire::FrameEncoder encoder;
  wire::ByteBuffer pings;
  for (uint64_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(encoder.Encode(wire::Ping{i}, pings).ok());
  }
  // The server never gets to write its pongs.
  p.server.Receive(pings.Readable(), p.now);
  auto events = Drain(p.server);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Recorded::kClosed);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p.server.stats().protocol_errors.ping_floods, 1u);
  EXPECT_EQ(p.server.stats().pings_received, 65u);
}

TEST(ConnectionKeepalive, PingsAnsweredAsTheyAreReadAreNotAFlood) {
  ConnectionPair p;
  p.Open();
  wire::FrameEncoder encoder;
  for (uint64_t i = 0; i < 1000; ++i) {
    wire::ByteBuffer ping;
    ASSERT_TRUE(encoder.Encode(wire::Ping{i}, ping).ok());
    p.server.Receive(ping.Readable(), p.now);
    EXPECT_TRUE(Drain(p.server).empty());
    p.server.ConsumeOutput(p.server.PendingOutput().size());
  }
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
}

}  // namespace
}  // namespace moonpool::protocol::testing
