// The Buggify sites of the protocol (buggify.h), one at a time: each takes
// its rare path when its site fires, and the connection still keeps the
// contract the path bends. The random connection-pair test
// (connection_pair_random_test.cc) runs them all together.
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/buggify.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::protocol::testing {
namespace {

// Fires `site` only, every time; records every site asked.
BuggifyFn Only(absl::string_view site, std::set<std::string>* asked) {
  return [site, asked](absl::string_view s) {
    if (asked != nullptr) asked->insert(std::string(s));
    return s == site;
  };
}

ConnectionOptions With(ConnectionOptions o, BuggifyFn fn) {
  o.buggify = std::move(fn);
  return o;
}

TEST(ConnectionBuggify, SitesAreNamedByTheirLayerAndListedOnce) {
  std::set<std::string> names;
  for (absl::string_view site : kBuggifySites) {
    EXPECT_EQ(site.substr(0, 9), "protocol.") << site;
    EXPECT_TRUE(names.insert(std::string(site)).second) << site;
  }
  EXPECT_GE(names.size(), 4u);
}

TEST(ConnectionBuggify, EmptyFunctionNeverFires) {
  EXPECT_FALSE(Buggify(BuggifyFn(), "protocol.anything"));
  EXPECT_TRUE(Buggify([](absl::string_view) { return true; }, "x"));
}

TEST(ConnectionBuggify, TinyReceiveBufferDeliversFramesAByteAtATime) {
  std::set<std::string> asked;
  ConnectionPair p(
      ClientOptions(),
      With(ServerOptions(), Only(buggify_sites::kTinyReceiveBuffer, &asked)));
  // Without the site, the room asked for is offered.
  EXPECT_GE(p.client.PrepareReceive(4096).size(), 4096u);
  EXPECT_EQ(p.server.PrepareReceive(4096).size(), 1u);
  EXPECT_TRUE(asked.contains(std::string(buggify_sites::kTinyReceiveBuffer)));

  ASSERT_TRUE(p.client.SendRequest(std::string(3000, 'r'), {}, p.now).ok());
  absl::Span<const char> out = p.client.PendingOutput();
  const std::string bytes(out.data(), out.size());
  p.client.ConsumeOutput(bytes.size());
  std::vector<Recorded> events;
  size_t reads = 0;
  for (size_t done = 0; done < bytes.size(); ++reads) {
    absl::Span<char> room = p.server.PrepareReceive(bytes.size() - done);
    ASSERT_EQ(room.size(), 1u);
    room[0] = bytes[done++];
    p.server.CommitReceive(1, p.now);
    for (Recorded& r : Drain(p.server)) events.push_back(std::move(r));
  }
  EXPECT_EQ(reads, bytes.size());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Recorded::kHandshakeDone);
  EXPECT_EQ(events[1].kind, Recorded::kRequestReceived);
  EXPECT_EQ(events[1].payload, std::string(3000, 'r'));
  EXPECT_EQ(p.server.state(), ConnectionState::kOpen);
}

TEST(ConnectionBuggify, EarlyPingGoesOutAfterHalfTheIntervalOfSilence) {
  ConnectionPair p(
      With(ClientOptions(), Only(buggify_sites::kEarlyPing, nullptr)));
  p.Open();
  // The handshake's bytes set the next ping half an interval on.
  EXPECT_EQ(p.client.NextWakeup(), p.now + absl::Milliseconds(500));
  EXPECT_EQ(p.server.NextWakeup(), p.now + absl::Seconds(1));
  p.Advance(absl::Milliseconds(500));
  EXPECT_EQ(p.client.stats().pings_sent, 1u);
  EXPECT_EQ(p.server.stats().pings_sent, 0u);
  // Answered like any ping; and silence is still silence: the peer is
  // declared gone at the timeout, not before.
  p.Pump();
  EXPECT_EQ(p.server.stats().pings_received, 1u);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  for (int i = 0; i < 7; ++i) {
    p.Advance(absl::Milliseconds(500));
    p.client.ConsumeOutput(p.client.PendingOutput().size());
  }
  // 3.5 s after the pong: pings every half interval, still open.
  EXPECT_EQ(p.client.stats().pings_sent, 8u);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  p.Advance(absl::Milliseconds(500));
  EXPECT_EQ(p.client.state(), ConnectionState::kClosed);
  EXPECT_EQ(p.client.stats().keepalive_timeouts, 1u);
}

TEST(ConnectionBuggify, ReleaseIdleOutputGivesStorageBackBeforeEveryFrame) {
  // A 100 kB frame is under the retention threshold: kept, normally.
  for (bool buggify : {false, true}) {
    SCOPED_TRACE(buggify ? "buggify" : "ordinary");
    ConnectionPair p(
        buggify ? With(ClientOptions(),
                       Only(buggify_sites::kReleaseIdleOutput, nullptr))
                : ClientOptions());
    p.Open();
    ASSERT_TRUE(
        p.client.SendOneWay(kDefaultEndpoint, std::string(100'000, 'x')).ok());
    p.Pump();
    ASSERT_GE(p.client.output_capacity(), 100'000u);
    ASSERT_TRUE(p.client.SendOneWay(kDefaultEndpoint, "small").ok());
    if (buggify) {
      EXPECT_LT(p.client.output_capacity(), 100'000u);
    } else {
      EXPECT_GE(p.client.output_capacity(), 100'000u);
    }
    p.Pump();
    auto one_ways = OfKind(p.server_events, Recorded::kOneWayReceived);
    ASSERT_EQ(one_ways.size(), 2u);
    EXPECT_EQ(one_ways[1].payload, "small");
  }
}

TEST(ConnectionBuggify, EarlyWakeupComesHalfwayAndFindsNothingToDo) {
  ConnectionPair p(
      With(ClientOptions(), Only(buggify_sites::kEarlyWakeup, nullptr)));
  p.Open();
  const absl::Time ping_due = p.now + absl::Seconds(1);
  // Halfway, then halfway again, until a millisecond from the ping.
  absl::Time t = p.now;
  int wakeups = 0;
  while (true) {
    const absl::Time wake = p.client.NextWakeup();
    ASSERT_GT(wake, t);
    ASSERT_LE(wake, ping_due);
    if (wake == ping_due) break;
    EXPECT_EQ(wake - t, (ping_due - t) / 2);
    t = wake;
    p.client.AdvanceTime(t);
    EXPECT_TRUE(Drain(p.client).empty());
    EXPECT_TRUE(p.client.PendingOutput().empty());
    ++wakeups;
    ASSERT_LT(wakeups, 20);
  }
  EXPECT_EQ(wakeups, 10);  // 1 s halved down to under 1 ms
  EXPECT_EQ(p.client.stats().pings_sent, 0u);
  // The real wakeup does what is due.
  p.client.AdvanceTime(ping_due);
  EXPECT_EQ(p.client.stats().pings_sent, 1u);
  EXPECT_EQ(p.client.state(), ConnectionState::kOpen);
  // Closed: never, whatever the site says.
  p.client.OnTransportClosed(absl::UnavailableError("reset"), ping_due);
  Drain(p.client);
  EXPECT_EQ(p.client.NextWakeup(), absl::InfiniteFuture());
}

}  // namespace
}  // namespace moonpool::protocol::testing
