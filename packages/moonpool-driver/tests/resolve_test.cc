// UvLoop::Resolve and a Peer given a host name, on the real resolver:
// "localhost" (from /etc/hosts) to a real listener, a name under the
// reserved .invalid TLD (RFC 6761: never resolves, answered without a name
// server by a stub that knows it, and bounded here in case one does not), a
// literal without a lookup, and a lookup abandoned before its answer.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/uv_loop.h"
#include "test_server.h"

namespace moonpool::driver {
namespace {

using ::testing::HasSubstr;
using testing::TestServer;

struct Lookup {
  bool done = false;
  absl::StatusOr<std::vector<Address>> result = absl::UnknownError("no answer");
};

ResolveCallback Record(Lookup& l) {
  return [&l](absl::StatusOr<std::vector<Address>> r) {
    EXPECT_FALSE(l.done) << "second answer";
    l.done = true;
    l.result = std::move(r);
  };
}

TEST(UvResolve, LocalhostResolvesToLoopbackWithThePort) {
  UvLoop loop(UvLoopOptions{.seed = 1});
  Lookup l;
  absl::StatusOr<std::unique_ptr<Resolution>> r =
      loop.Resolve("localhost", 4500, Record(l));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(l.done);  // never inside the call that started it
  ASSERT_TRUE(
      loop.RunUntil([&] { return l.done; }, loop.Now() + absl::Seconds(10)));
  ASSERT_TRUE(l.result.ok()) << l.result.status();
  ASSERT_FALSE(l.result->empty());
  bool has_v4_loopback = false;
  for (const Address& a : *l.result) {
    EXPECT_EQ(a.port(), 4500);
    has_v4_loopback |= a == Address::Loopback(4500);
  }
  EXPECT_TRUE(has_v4_loopback);  // /etc/hosts: 127.0.0.1 localhost
}

TEST(UvResolve, ReservedInvalidNameFailsFast) {
  UvLoop loop(UvLoopOptions{.seed = 2});
  Lookup l;
  absl::StatusOr<std::unique_ptr<Resolution>> r =
      loop.Resolve("nothing.invalid", 1, Record(l));
  ASSERT_TRUE(r.ok()) << r.status();
  // A bound, not an expectation: offline, the stub answers at once.
  ASSERT_TRUE(
      loop.RunUntil([&] { return l.done; }, loop.Now() + absl::Seconds(30)));
  ASSERT_FALSE(l.result.ok());
  EXPECT_THAT(l.result.status().code(),
              ::testing::AnyOf(absl::StatusCode::kNotFound,
                               absl::StatusCode::kUnavailable))
      << l.result.status();
  EXPECT_THAT(l.result.status().message(),
              HasSubstr("resolving nothing.invalid: "));
}

TEST(UvResolve, LiteralIsAnsweredWithItself) {
  UvLoop loop(UvLoopOptions{.seed = 3});
  Lookup v4, v6;
  auto r4 = loop.Resolve("10.1.2.3", 7, Record(v4));
  auto r6 = loop.Resolve("::1", 8, Record(v6));
  ASSERT_TRUE(r4.ok() && r6.ok());
  ASSERT_TRUE(loop.RunUntil([&] { return v4.done && v6.done; },
                            loop.Now() + absl::Seconds(10)));
  ASSERT_TRUE(v4.result.ok()) << v4.result.status();
  EXPECT_THAT(*v4.result,
              ::testing::ElementsAre(*Address::Parse("10.1.2.3:7")));
  ASSERT_TRUE(v6.result.ok()) << v6.result.status();
  EXPECT_THAT(*v6.result, ::testing::ElementsAre(*Address::Parse("[::1]:8")));
}

TEST(UvResolve, EmptyHostFailsUpFront) {
  UvLoop loop(UvLoopOptions{.seed = 4});
  bool called = false;
  auto r = loop.Resolve("", 1, [&](auto) { called = true; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(20));
  EXPECT_FALSE(called);
}

TEST(UvResolve, DestroyedHandleNeverCallsBack) {
  UvLoop loop(UvLoopOptions{.seed = 5});
  bool called = false;
  // Half dropped at once (uv_cancel takes them off the queue), half after
  // a real pause without running the loop: by then a thread has run
  // getaddrinfo, uv_cancel fails, and the answer waiting for the loop must
  // be swallowed.
  for (int i = 0; i < 8; ++i) {
    auto r = loop.Resolve("localhost", 1, [&](auto) { called = true; });
    ASSERT_TRUE(r.ok());
    if (i % 2 == 1) absl::SleepFor(absl::Milliseconds(20));
    r->reset();
  }
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(200));
  EXPECT_FALSE(called);
}

TEST(UvResolve, HandleMayBeDestroyedInsideItsCallback) {
  UvLoop loop(UvLoopOptions{.seed = 6});
  std::unique_ptr<Resolution> handle;
  int calls = 0;
  auto r = loop.Resolve("localhost", 1, [&](auto) {
    ++calls;
    handle.reset();
  });
  ASSERT_TRUE(r.ok());
  handle = std::move(*r);
  ASSERT_TRUE(
      loop.RunUntil([&] { return calls > 0; }, loop.Now() + absl::Seconds(10)));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(handle, nullptr);
}

PeerOptions FastOptions() {
  PeerOptions o;
  o.connection.default_request_timeout = absl::Seconds(5);
  o.backoff.initial = absl::Milliseconds(20);
  o.backoff.max = absl::Milliseconds(200);
  return o;
}

TEST(PeerWithName, ConnectsToLocalhostByName) {
  UvLoop loop(UvLoopOptions{.seed = 7});
  TestServer server(loop, TestServer::Mode::kEcho);
  absl::StatusOr<HostPort> target =
      HostPort::Parse(absl::StrCat("localhost:", server.address().port()));
  ASSERT_TRUE(target.ok()) << target.status();
  Peer peer(loop, *target, FastOptions());
  bool done = false;
  absl::StatusOr<std::string> reply = absl::UnknownError("none");
  ASSERT_TRUE(peer.Request("hi", {},
                           [&](absl::StatusOr<absl::string_view> r) {
                             done = true;
                             if (r.ok()) {
                               reply = std::string(*r);
                             } else {
                               reply = r.status();
                             }
                           })
                  .ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return done; }, loop.Now() + absl::Seconds(10)));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "hi");
  EXPECT_EQ(peer.target(), *target);
  EXPECT_EQ(peer.address(), server.address());  // the address it reached
  EXPECT_EQ(peer.stats().resolutions, 1u);
  // localhost may also be ::1, where nothing listens: tried first, refused,
  // then 127.0.0.1. Either way at least one attempt.
  EXPECT_GE(peer.stats().connect_attempts, 1u);
}

TEST(PeerWithName, NameThatDoesNotResolveIsUnavailableWithTheReason) {
  UvLoop loop(UvLoopOptions{.seed = 8});
  Peer peer(loop, *HostPort::Parse("nothing.invalid:1"), FastOptions());
  bool done = false;
  absl::Status status;
  PeerRequestOptions options;
  options.deadline = loop.Now() + absl::Milliseconds(300);
  ASSERT_TRUE(peer.Request("x", options,
                           [&](absl::StatusOr<absl::string_view> r) {
                             done = true;
                             status = r.status();
                           })
                  .ok());
  ASSERT_TRUE(
      loop.RunUntil([&] { return done; }, loop.Now() + absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("resolving nothing.invalid"));
  EXPECT_THAT(peer.last_error().message(),
              HasSubstr("resolving nothing.invalid"));
  EXPECT_GE(peer.stats().resolve_failures, 1u);
  EXPECT_EQ(peer.stats().connect_attempts, 0u);
}

}  // namespace
}  // namespace moonpool::driver
