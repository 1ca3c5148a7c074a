// ServerTransport's bounds: expired requests dropped and counted,
// backpressure (stop reading, then resume), and refused connections.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

TEST(ServerBounds, RequestsExpiredWhileQueuedAreDroppedAndCounted) {
  UvLoop loop(UvLoopOptions{.seed = 21});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  Reply short_lived, long_lived;
  scope.Spawn(Store(client.Request<std::string>(
                        server->address(), "short",
                        RequestOptions::Timeout(absl::Milliseconds(50))),
                    &short_lived));
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), "long",
                                  RequestOptions::Timeout(absl::Seconds(5))),
      &long_lived));
  ASSERT_TRUE(RunUntil(loop, [&] { return short_lived.has_value(); }));
  EXPECT_EQ(short_lived->status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().queued_messages == 2; }));
  RunFor(loop, absl::Milliseconds(20));  // the server's deadline passes too

  // The handler starts late: it never sees the expired one.
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ((*taken)->envelope.payload, "long");
  EXPECT_EQ(server->stats().expired_dropped, 1u);
  ASSERT_TRUE(server->Reply(**taken, "done").ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return long_lived.has_value(); }));
  ASSERT_TRUE(long_lived->ok()) << long_lived->status();
  EXPECT_EQ(**long_lived, "done");
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST(ServerBounds, PerConnectionBoundStopsReadingUntilTheQueueDrains) {
  UvLoop loop(UvLoopOptions{.seed = 22});
  ServerOptions options;
  options.max_requests_in_flight_per_connection = 4;
  auto server = testing::BindOrDie(loop, options);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::vector<Reply> replies(20);
  for (size_t i = 0; i < replies.size(); ++i) {
    scope.Spawn(Store(
        client.Request<std::string>(server->address(), absl::StrCat("r", i)),
        &replies[i]));
  }
  RunFor(loop, absl::Milliseconds(300));
  ServerStats s = server->stats();
  EXPECT_EQ(s.requests_received, 4u);
  EXPECT_EQ(s.queued_messages, 4u);
  EXPECT_EQ(s.requests_in_flight, 4u);
  EXPECT_EQ(s.paused_connections, 1u);
  EXPECT_GE(s.backpressure_pauses, 1u);
  for (const Reply& r : replies) EXPECT_FALSE(r.has_value());  // they wait

  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  ASSERT_TRUE(RunUntil(loop, [&] { return AllDone(replies); }));
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i]->ok()) << replies[i]->status();
    EXPECT_EQ(**replies[i], absl::StrCat("r", i));
  }
  EXPECT_EQ(handled, 20);
  EXPECT_EQ(server->stats().paused_connections, 0u);
}

TEST(ServerBounds, QueuedBytesAndTotalBoundsPauseEveryConnection) {
  UvLoop loop(UvLoopOptions{.seed = 23});
  ServerOptions options;
  options.max_queued_bytes = 1000;
  auto server = testing::BindOrDie(loop, options);
  std::vector<std::unique_ptr<ClientTransport>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<ClientTransport>(loop, FastClient()));
  }
  TaskScope scope(loop, testing::FailOnError());
  std::vector<Reply> replies(12);
  for (size_t i = 0; i < replies.size(); ++i) {
    scope.Spawn(Store(clients[i % 3]->Request<std::string>(
                          server->address(), std::string(400, 'a' + i)),
                      &replies[i]));
  }
  RunFor(loop, absl::Milliseconds(300));
  ServerStats s = server->stats();
  // Reading stops once 1000 bytes wait: after the third 400-byte payload.
  EXPECT_EQ(s.queued_messages, 3u);
  EXPECT_EQ(s.queued_bytes, 1200u);
  EXPECT_EQ(s.paused_connections, 3u);

  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  ASSERT_TRUE(RunUntil(loop, [&] { return AllDone(replies); }));
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i]->ok()) << replies[i]->status();
    EXPECT_EQ(**replies[i], std::string(400, 'a' + i));
  }
  scope.Clear();
}

TEST(ServerBounds, MaxConnectionsRefusesTheExcess) {
  UvLoop loop(UvLoopOptions{.seed = 24});
  ServerOptions options;
  options.max_connections = 2;
  auto server = testing::BindOrDie(loop, options);
  std::vector<std::unique_ptr<ClientTransport>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<ClientTransport>(loop, FastClient()));
  }
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  std::vector<Reply> first(2);
  for (int i = 0; i < 2; ++i) {
    scope.Spawn(Store(clients[i]->Request<std::string>(server->address(), "in"),
                      &first[i]));
  }
  ASSERT_TRUE(RunUntil(loop, [&] { return AllDone(first); }));
  for (const Reply& r : first) ASSERT_TRUE(r->ok()) << r->status();

  Reply third;
  scope.Spawn(Store(clients[2]->Request<std::string>(
                        server->address(), "out",
                        RequestOptions::Timeout(absl::Milliseconds(300))),
                    &third));
  ASSERT_TRUE(RunUntil(loop, [&] { return third.has_value(); }));
  EXPECT_FALSE(third->ok());
  ServerStats s = server->stats();
  EXPECT_GE(s.connections_refused, 1u);
  EXPECT_EQ(s.connections_accepted, 2u);
  EXPECT_EQ(s.connections_open, 2u);
  EXPECT_EQ(handled, 2);
  scope.Clear();
}

TEST(ServerBounds, BindRejectsZeroBounds) {
  UvLoop loop(UvLoopOptions{.seed = 25});
  ServerOptions options;
  options.max_connections = 0;
  auto s = ServerTransport::Bind(loop, driver::Address::Loopback(0), options);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ServerBounds, BindToATakenPortFails) {
  UvLoop loop(UvLoopOptions{.seed = 26});
  auto first = testing::BindOrDie(loop);
  auto second = ServerTransport::Bind(loop, first->address());
  EXPECT_FALSE(second.ok());
}

}  // namespace
}  // namespace moonpool::transport::testing
