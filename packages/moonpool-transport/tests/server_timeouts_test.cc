// ServerTransport's timeouts for peers the keepalive cannot catch:
// ServerOptions::read_timeout (a frame trickled a byte at a time) and
// idle_timeout (a connection that never asks for anything). The hostile
// peers are raw loopback sockets; the loop runs in slices between their
// writes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

// A blocking loopback socket connected to `port` (the kernel completes the
// connect from the listen backlog; the loop accepts it when it next runs).
int ConnectRaw(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0)
      << errno;
  return fd;
}

// Whether the server closed `fd` (EOF or reset); anything it sent before is
// read and ignored.
bool ClosedByPeer(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

ServerOptions ShortTimeouts() {
  ServerOptions o;
  o.read_timeout = absl::Milliseconds(300);
  o.idle_timeout = absl::Milliseconds(400);
  // Long enough that only the timeouts under test can close anything.
  o.connection.keepalive_interval = absl::Seconds(5);
  o.connection.keepalive_timeout = absl::Seconds(20);
  return o;
}

TEST(ServerTimeouts, TrickledFrameIsClosedAfterTheReadTimeout) {
  UvLoop loop(UvLoopOptions{.seed = 31});
  ServerOptions options = ShortTimeouts();
  options.idle_timeout = absl::InfiniteDuration();
  auto server = testing::BindOrDie(loop, options);
  const int fd = ConnectRaw(server->address().port());
  const absl::Time start = loop.Now();
  // One byte of a 16-byte header every 50 ms: never silent for long, never
  // a whole frame.
  int sent = 0;
  while (!ClosedByPeer(fd) && sent < 16) {
    const char byte = 0x10;
    if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1) break;
    ++sent;
    RunFor(loop, absl::Milliseconds(50));
  }
  ASSERT_TRUE(RunUntil(
      loop, [&] { return ClosedByPeer(fd); }, absl::Seconds(2)));
  const absl::Duration took = loop.Now() - start;
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Milliseconds(900));
  EXPECT_LT(sent, 16);
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(server->stats().read_timeouts, 1u);
  EXPECT_EQ(server->stats().keepalive_timeouts, 0u);
  close(fd);
}

TEST(ServerTimeouts, WholeFramesSlowerThanTheReadTimeoutAreNotClosed) {
  UvLoop loop(UvLoopOptions{.seed = 32});
  ServerOptions options = ShortTimeouts();
  options.idle_timeout = absl::InfiniteDuration();
  auto server = testing::BindOrDie(loop, options);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  // Requests further apart than the read timeout, each frame whole: a
  // quiet client is not a slow one.
  for (int i = 0; i < 3; ++i) {
    Reply r;
    scope.Spawn(
        Store(client.Request<std::string>(server->address(), "hi"), &r));
    ASSERT_TRUE(RunUntil(loop, [&] { return r.has_value(); }));
    ASSERT_TRUE(r->ok()) << r->status();
    RunFor(loop, absl::Milliseconds(500));
  }
  ServerStats s = server->stats();
  EXPECT_EQ(s.read_timeouts, 0u);
  EXPECT_EQ(s.connections_accepted, 1u);
  EXPECT_EQ(s.connections_open, 1u);
  scope.Clear();
}

TEST(ServerTimeouts, IdleConnectionIsClosedWithGoodbyeAndTheClientComesBack) {
  UvLoop loop(UvLoopOptions{.seed = 33});
  auto server = testing::BindOrDie(loop, ShortTimeouts());
  // The client's keepalive pings every 200 ms: alive, but asking nothing.
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  Reply first;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), "one"), &first));
  ASSERT_TRUE(RunUntil(loop, [&] { return first.has_value(); }));
  ASSERT_TRUE(first->ok()) << first->status();
  const absl::Time answered = loop.Now();
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().connections_open == 0; }));
  EXPECT_GE(loop.Now() - answered, absl::Milliseconds(350));
  EXPECT_EQ(server->stats().idle_timeouts, 1u);
  EXPECT_EQ(server->stats().keepalive_timeouts, 0u);

  // The Goodbye told the client the close was graceful: its next request
  // reconnects and succeeds.
  Reply second;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), "two"), &second));
  ASSERT_TRUE(RunUntil(loop, [&] { return second.has_value(); }));
  ASSERT_TRUE(second->ok()) << second->status();
  EXPECT_EQ(**second, "two");
  EXPECT_EQ(server->stats().connections_accepted, 2u);
  scope.Clear();
}

TEST(ServerTimeouts, SilentSocketIsClosedAfterTheIdleTimeout) {
  UvLoop loop(UvLoopOptions{.seed = 34});
  auto server = testing::BindOrDie(loop, ShortTimeouts());
  const int fd = ConnectRaw(server->address().port());
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().connections_open == 1; }));
  // No Hello: nothing to say Goodbye on, the socket is just closed.
  ASSERT_TRUE(RunUntil(
      loop, [&] { return ClosedByPeer(fd); }, absl::Seconds(2)));
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(server->stats().idle_timeouts, 1u);
  EXPECT_EQ(server->stats().keepalive_timeouts, 0u);
  close(fd);
}

TEST(ServerTimeouts, AConnectionWithARequestInFlightIsNotIdle) {
  UvLoop loop(UvLoopOptions{.seed = 35});
  auto server = testing::BindOrDie(loop, ShortTimeouts());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  Reply r;
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), "slow",
                                  RequestOptions::Timeout(absl::Seconds(5))),
      &r));
  // Nobody takes the request for longer than the idle timeout.
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().queued_messages == 1; }));
  RunFor(loop, absl::Milliseconds(900));
  EXPECT_EQ(server->stats().idle_timeouts, 0u);
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  ASSERT_TRUE(RunUntil(loop, [&] { return r.has_value(); }));
  ASSERT_TRUE(r->ok()) << r->status();
  EXPECT_EQ(server->stats().connections_accepted, 1u);
  scope.Clear();
}

}  // namespace
}  // namespace moonpool::transport::testing
