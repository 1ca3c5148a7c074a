// Peer on real loopback sockets and UvLoop: reconnect with backoff, a server
// that dies mid-request, a stall, a version mismatch.
#include "moonpool/driver/peer.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/driver/uv_loop.h"
#include "test_server.h"

namespace moonpool::driver {
namespace {

using testing::TestServer;

// The outcome of one request, kept past the callback.
struct Outcome {
  bool done = false;
  absl::Status status;
  std::string reply;
};

ReplyCallback Record(Outcome& o) {
  return [&o](absl::StatusOr<absl::string_view> r) {
    EXPECT_FALSE(o.done) << "second outcome";
    o.done = true;
    if (r.ok()) {
      o.reply = std::string(*r);
    } else {
      o.status = r.status();
    }
  };
}

PeerOptions FastOptions() {
  PeerOptions o;
  o.connection.keepalive_interval = absl::Milliseconds(100);
  o.connection.keepalive_timeout = absl::Milliseconds(400);
  o.connection.default_request_timeout = absl::Seconds(5);
  o.backoff.initial = absl::Milliseconds(20);
  o.backoff.max = absl::Milliseconds(200);
  return o;
}

// A port nothing listens on (bound once, then released).
Address FreePort(UvLoop& loop) {
  auto listener = loop.Listen(Address::Loopback(0), {}, [](auto) {});
  EXPECT_TRUE(listener.ok());
  Address a = (*listener)->address();
  return a;
}

bool AllDone(const std::vector<Outcome>& outcomes) {
  for (const Outcome& o : outcomes) {
    if (!o.done) return false;
  }
  return true;
}

TEST(Peer, RequestReplyRoundTrip) {
  UvLoop loop(UvLoopOptions{.seed = 1});
  TestServer server(loop, TestServer::Mode::kEcho);
  Peer peer(loop, server.address(), FastOptions());
  Outcome o;
  ASSERT_TRUE(peer.Request("hello", {}, Record(o)).ok());
  EXPECT_FALSE(o.done);  // never inside Request
  ASSERT_TRUE(
      loop.RunUntil([&] { return o.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.reply, "hello");
  EXPECT_EQ(peer.state(), PeerState::kConnected);
  EXPECT_EQ(peer.stats().handshakes, 1u);
}

TEST(Peer, ConnectsAfterBackoffOnceTheServerListens) {
  UvLoop loop(UvLoopOptions{.seed = 2});
  const Address address = FreePort(loop);
  Peer peer(loop, address, FastOptions());
  std::vector<Outcome> outcomes(3);
  for (Outcome& o : outcomes) {
    ASSERT_TRUE(peer.Request("queued", {}, Record(o)).ok());
  }
  // Nobody listens for a while: attempts are refused and backed off.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(300));
  EXPECT_FALSE(AllDone(outcomes));
  const uint64_t attempts_before = peer.stats().connect_attempts;
  EXPECT_GE(attempts_before, 2u);
  // 20, 40, 80, 160, 200... ms: not a storm.
  EXPECT_LE(attempts_before, 8u);
  EXPECT_EQ(peer.last_error().code(), absl::StatusCode::kUnavailable)
      << peer.last_error();
  TestServer server(loop, TestServer::Mode::kEcho, address);
  ASSERT_TRUE(loop.RunUntil([&] { return AllDone(outcomes); },
                            loop.Now() + absl::Seconds(5)));
  for (const Outcome& o : outcomes) {
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.reply, "queued");
  }
  EXPECT_EQ(server.requests_seen(), 3);
}

TEST(Peer, UnreachableUntilTheDeadlineIsUnavailable) {
  UvLoop loop(UvLoopOptions{.seed = 3});
  Peer peer(loop, FreePort(loop), FastOptions());
  Outcome o;
  PeerRequestOptions options;
  options.deadline = loop.Now() + absl::Milliseconds(150);
  ASSERT_TRUE(peer.Request("x", options, Record(o)).ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return o.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(o.status.code(), absl::StatusCode::kUnavailable) << o.status;
}

TEST(Peer, ServerClosingMidRequestFailsOrRetriesPerIdempotence) {
  UvLoop loop(UvLoopOptions{.seed = 4});
  TestServer server(loop, TestServer::Mode::kCloseOnRequest);
  Peer peer(loop, server.address(), FastOptions());
  Outcome plain, idempotent;
  ASSERT_TRUE(peer.Request("plain", {}, Record(plain)).ok());
  PeerRequestOptions retry;
  retry.idempotent = true;
  ASSERT_TRUE(peer.Request("idempotent", retry, Record(idempotent)).ok());
  // The server dies on the first request it sees; both were written.
  ASSERT_TRUE(
      loop.RunUntil([&] { return plain.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(plain.status.code(), absl::StatusCode::kAborted) << plain.status;
  EXPECT_FALSE(idempotent.done);
  // The server comes back as an echo server: the idempotent one succeeds,
  // and a request queued meanwhile is sent after the reconnect.
  server.set_mode(TestServer::Mode::kEcho);
  Outcome later;
  ASSERT_TRUE(peer.Request("later", {}, Record(later)).ok());
  ASSERT_TRUE(loop.RunUntil([&] { return idempotent.done && later.done; },
                            loop.Now() + absl::Seconds(5)));
  EXPECT_TRUE(idempotent.status.ok()) << idempotent.status;
  EXPECT_EQ(idempotent.reply, "idempotent");
  EXPECT_TRUE(later.status.ok()) << later.status;
  EXPECT_GE(peer.stats().retries, 1u);
  EXPECT_GE(peer.stats().connections, 2u);
}

TEST(Peer, StallKeepsRequestsUntilTheKeepaliveDeclaresThePeerGone) {
  UvLoop loop(UvLoopOptions{.seed = 5});
  TestServer server(loop, TestServer::Mode::kStall);
  Peer peer(loop, server.address(), FastOptions());
  Outcome o;
  ASSERT_TRUE(peer.Request("stuck", {}, Record(o)).ok());
  // Well past the keepalive interval, but before its timeout: still waiting.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(250));
  EXPECT_FALSE(o.done);
  ASSERT_TRUE(
      loop.RunUntil([&] { return o.done; }, loop.Now() + absl::Seconds(5)));
  // Written, not idempotent, connection declared dead: maybe delivered.
  EXPECT_EQ(o.status.code(), absl::StatusCode::kAborted) << o.status;
  EXPECT_NE(o.status.message().find("keepalive"), absl::string_view::npos)
      << o.status;
  EXPECT_EQ(peer.stats().keepalive_timeouts, 1u);
}

TEST(Peer, VersionMismatchIsFailedPreconditionWithoutAReconnectStorm) {
  UvLoop loop(UvLoopOptions{.seed = 6});
  TestServer server(loop, TestServer::Mode::kWrongVersion);
  PeerOptions options = FastOptions();
  options.backoff.initial = absl::Milliseconds(50);
  options.backoff.max = absl::Seconds(5);
  Peer peer(loop, server.address(), options);
  Outcome o;
  ASSERT_TRUE(peer.Request("x", {}, Record(o)).ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return o.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(o.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(o.status.message(),
            "incompatible protocol versions: this side speaks 1..2, the peer "
            "3..3");
  // Over one second, backoff (50, 100, 200, 400 ms...) allows a handful of
  // attempts, not hundreds.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Seconds(1));
  EXPECT_LE(server.connections_accepted(), 6);
  EXPECT_GE(server.connections_accepted(), 2);
}

TEST(Peer, CloseCancelsEverythingPending) {
  UvLoop loop(UvLoopOptions{.seed = 7});
  Peer peer(loop, FreePort(loop), FastOptions());
  Outcome o;
  ASSERT_TRUE(peer.Request("x", {}, Record(o)).ok());
  peer.Close();
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(peer.Request("y", {}, Record(o)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(Peer, DestroyedWithAPumpScheduledIsSafe) {
  UvLoop loop(UvLoopOptions{.seed = 9});
  Outcome o;
  {
    Peer peer(loop, FreePort(loop), FastOptions());
    ASSERT_TRUE(peer.Request("x", {}, Record(o)).ok());  // schedules a pump
  }
  EXPECT_EQ(o.status.code(), absl::StatusCode::kCancelled);
  // The pump must not run for the destroyed Peer (ASan would catch it).
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(20));
}

TEST(Peer, BoundedQueueRefusesAtOnce) {
  UvLoop loop(UvLoopOptions{.seed = 8});
  PeerOptions options = FastOptions();
  options.max_queued_requests = 2;
  Peer peer(loop, FreePort(loop), options);
  std::vector<Outcome> outcomes(3);
  EXPECT_TRUE(peer.Request("1", {}, Record(outcomes[0])).ok());
  EXPECT_TRUE(peer.Request("2", {}, Record(outcomes[1])).ok());
  EXPECT_EQ(peer.Request("3", {}, Record(outcomes[2])).status().code(),
            absl::StatusCode::kResourceExhausted);
  peer.Close();
  EXPECT_FALSE(outcomes[2].done);
}

}  // namespace
}  // namespace moonpool::driver
