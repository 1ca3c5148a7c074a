// Peer::Cancel and fail fast (PeerRequestOptions::wait_for_ready = false)
// on real loopback sockets: a cancelled request never calls back, a queued
// one is never sent, one in flight is cancelled on the wire on version 2
// only; a fail-fast request fails Unavailable once a connect attempt failed
// instead of waiting for its deadline.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/uv_loop.h"
#include "test_server.h"

namespace moonpool::driver {
namespace {

using testing::TestServer;

struct Outcome {
  bool done = false;
  bool destroyed = false;  // the callback was destroyed
  absl::Status status;
  std::string reply;
};

// Sets `destroyed` when the callback holding it goes.
class DestroyFlag {
 public:
  explicit DestroyFlag(Outcome& o) : o_(&o) {}
  DestroyFlag(DestroyFlag&& other) noexcept : o_(std::exchange(other.o_, {})) {}
  DestroyFlag& operator=(DestroyFlag&&) = delete;
  ~DestroyFlag() {
    if (o_ != nullptr) o_->destroyed = true;
  }

 private:
  Outcome* o_;
};

ReplyCallback Record(Outcome& o) {
  return [&o, flag = DestroyFlag(o)](absl::StatusOr<absl::string_view> r) {
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
  o.connection.keepalive_timeout = absl::Seconds(2);
  o.connection.default_request_timeout = absl::Seconds(5);
  o.backoff.initial = absl::Milliseconds(20);
  o.backoff.max = absl::Milliseconds(200);
  return o;
}

Address FreePort(UvLoop& loop) {
  auto listener = loop.Listen(Address::Loopback(0), {}, [](auto) {});
  EXPECT_TRUE(listener.ok());
  return (*listener)->address();
}

void RunFor(UvLoop& loop, absl::Duration d) {
  loop.RunUntil([] { return false; }, loop.Now() + d);
}

TEST(PeerCancel, QueuedRequestCancelledIsNeverSentAndNeverCallsBack) {
  UvLoop loop(UvLoopOptions{.seed = 11});
  TestServer server(loop, TestServer::Mode::kEcho);
  Peer peer(loop, server.address(), FastOptions());
  Outcome cancelled, kept;
  // Still connecting: both wait in the queue.
  absl::StatusOr<PeerRequestId> id =
      peer.Request("cancelled", {}, Record(cancelled));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(peer.Request("kept", {}, Record(kept)).ok());
  peer.Cancel(*id);
  EXPECT_TRUE(cancelled.destroyed);
  EXPECT_EQ(peer.pending_requests(), 1u);
  ASSERT_TRUE(
      loop.RunUntil([&] { return kept.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_TRUE(kept.status.ok()) << kept.status;
  EXPECT_FALSE(cancelled.done);
  EXPECT_EQ(server.payloads_seen(), std::vector<std::string>{"kept"});
  EXPECT_EQ(peer.stats().cancelled_queued, 1u);
  EXPECT_EQ(peer.stats().cancelled_in_flight, 0u);
}

TEST(PeerCancel, InFlightRequestCancelledSendsCancelOnVersion2) {
  UvLoop loop(UvLoopOptions{.seed = 12});
  TestServer server(loop, TestServer::Mode::kHold);
  Peer peer(loop, server.address(), FastOptions());
  Outcome o;
  absl::StatusOr<PeerRequestId> id = peer.Request("held", {}, Record(o));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(loop.RunUntil([&] { return server.requests_seen() == 1; },
                            loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(server.last_version(), 2u);
  peer.Cancel(*id);
  EXPECT_TRUE(o.destroyed);
  EXPECT_EQ(peer.pending_requests(), 0u);
  ASSERT_TRUE(loop.RunUntil([&] { return server.cancels_received() == 1; },
                            loop.Now() + absl::Seconds(5)));
  EXPECT_FALSE(o.done);
  EXPECT_EQ(peer.stats().cancelled_in_flight, 1u);
  // Once is enough: a second Cancel of the same id does nothing.
  peer.Cancel(*id);
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_EQ(server.cancels_received(), 1);
  EXPECT_EQ(peer.stats().cancelled_in_flight, 1u);
}

TEST(PeerCancel, NoCancelFrameOnVersion1AndTheLateReplyIsDropped) {
  UvLoop loop(UvLoopOptions{.seed = 13});
  TestServer server(loop, TestServer::Mode::kHold);
  PeerOptions options = FastOptions();
  options.connection.max_protocol_version = 1;
  Peer peer(loop, server.address(), options);
  Outcome o;
  absl::StatusOr<PeerRequestId> id = peer.Request("held", {}, Record(o));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(loop.RunUntil([&] { return server.requests_seen() == 1; },
                            loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(server.last_version(), 1u);
  peer.Cancel(*id);
  EXPECT_TRUE(o.destroyed);
  // The server now echoes: a later request is answered on the same
  // connection, and the cancelled one never calls back.
  server.set_mode(TestServer::Mode::kEcho);
  Outcome later;
  ASSERT_TRUE(peer.Request("later", {}, Record(later)).ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return later.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_TRUE(later.status.ok()) << later.status;
  EXPECT_EQ(server.cancels_received(), 0);
  EXPECT_FALSE(o.done);
  EXPECT_EQ(peer.stats().connections, 1u);
}

TEST(PeerCancel, CancelAfterTheOutcomeDoesNothing) {
  UvLoop loop(UvLoopOptions{.seed = 14});
  TestServer server(loop, TestServer::Mode::kEcho);
  Peer peer(loop, server.address(), FastOptions());
  Outcome o;
  absl::StatusOr<PeerRequestId> id = peer.Request("x", {}, Record(o));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(
      loop.RunUntil([&] { return o.done; }, loop.Now() + absl::Seconds(5)));
  peer.Cancel(*id);
  peer.Cancel(PeerRequestId());
  peer.Cancel(PeerRequestId(12345));
  EXPECT_EQ(peer.stats().cancelled_queued + peer.stats().cancelled_in_flight,
            0u);
  EXPECT_EQ(peer.stats().replies, 1u);
}

TEST(PeerFailFast, QueuedRequestFailsWhenTheFirstConnectFails) {
  UvLoop loop(UvLoopOptions{.seed = 15});
  Peer peer(loop, FreePort(loop), FastOptions());
  // The first connect is in progress: a fail-fast request waits for it.
  Outcome fast, patient;
  PeerRequestOptions fail_fast;
  fail_fast.wait_for_ready = false;
  fail_fast.deadline = loop.Now() + absl::Seconds(5);
  ASSERT_TRUE(peer.Request("fast", fail_fast, Record(fast)).ok());
  PeerRequestOptions waits;
  waits.deadline = loop.Now() + absl::Milliseconds(300);
  ASSERT_TRUE(peer.Request("patient", waits, Record(patient)).ok());
  const absl::Time start = loop.Now();
  ASSERT_TRUE(
      loop.RunUntil([&] { return fast.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(fast.status.code(), absl::StatusCode::kUnavailable) << fast.status;
  // Refused on loopback: well before either deadline.
  EXPECT_LT(loop.Now() - start, absl::Milliseconds(200));
  EXPECT_FALSE(patient.done);
  // The default still waits, through backoff, until its deadline.
  ASSERT_TRUE(loop.RunUntil([&] { return patient.done; },
                            loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(patient.status.code(), absl::StatusCode::kUnavailable)
      << patient.status;
  EXPECT_GE(loop.Now() - start, absl::Milliseconds(290));
}

TEST(PeerFailFast, UnavailableUpFrontWhileUnreachableUntilAHandshake) {
  UvLoop loop(UvLoopOptions{.seed = 16});
  const Address address = FreePort(loop);
  Peer peer(loop, address, FastOptions());
  ASSERT_TRUE(loop.RunUntil([&] { return peer.stats().connect_attempts >= 2; },
                            loop.Now() + absl::Seconds(5)));
  PeerRequestOptions fail_fast;
  fail_fast.wait_for_ready = false;
  Outcome o;
  absl::StatusOr<PeerRequestId> refused =
      peer.Request("x", fail_fast, Record(o));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_FALSE(o.done);  // failed up front: the callback is not called
  // The server comes up: once a handshake succeeded, fail-fast requests
  // go through.
  TestServer server(loop, TestServer::Mode::kEcho, address);
  Outcome waited;
  ASSERT_TRUE(peer.Request("waited", {}, Record(waited)).ok());
  ASSERT_TRUE(loop.RunUntil([&] { return waited.done; },
                            loop.Now() + absl::Seconds(5)));
  ASSERT_TRUE(waited.status.ok()) << waited.status;
  Outcome fast;
  ASSERT_TRUE(peer.Request("fast", fail_fast, Record(fast)).ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return fast.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_TRUE(fast.status.ok()) << fast.status;
  EXPECT_EQ(fast.reply, "fast");
}

TEST(PeerFailFast, ReconnectAfterAnEstablishedConnectionIsWaitedFor) {
  UvLoop loop(UvLoopOptions{.seed = 17});
  auto server = std::make_unique<TestServer>(loop, TestServer::Mode::kEcho);
  const Address address = server->address();
  PeerOptions options = FastOptions();
  options.backoff.initial = absl::Milliseconds(300);
  Peer peer(loop, address, options);
  Outcome first;
  ASSERT_TRUE(peer.Request("first", {}, Record(first)).ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return first.done; }, loop.Now() + absl::Seconds(5)));
  ASSERT_TRUE(first.status.ok()) << first.status;
  // The handshaken connection ends: that is no failed connect, so a
  // fail-fast request waits for the reconnect.
  server.reset();
  ASSERT_TRUE(
      loop.RunUntil([&] { return peer.state() == PeerState::kBackingOff; },
                    loop.Now() + absl::Seconds(5)));
  PeerRequestOptions fail_fast;
  fail_fast.wait_for_ready = false;
  Outcome fast;
  ASSERT_TRUE(peer.Request("fast", fail_fast, Record(fast)).ok());
  RunFor(loop, absl::Milliseconds(20));
  EXPECT_FALSE(fast.done);
  server = std::make_unique<TestServer>(loop, TestServer::Mode::kEcho, address);
  ASSERT_TRUE(
      loop.RunUntil([&] { return fast.done; }, loop.Now() + absl::Seconds(5)));
  EXPECT_TRUE(fast.status.ok()) << fast.status;
  EXPECT_EQ(peer.stats().connections, 2u);
}

}  // namespace
}  // namespace moonpool::driver
