// ServerTransport::Close: with and without drain, what NextMessage, Reply and
// the clients see.
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

Task<void> CloseServer(ServerTransport& server, bool drain, bool* done) {
  co_await server.Close(drain);
  *done = true;
}

TEST(Close, NextMessageReturnsNulloptAfterClose) {
  UvLoop loop(UvLoopOptions{.seed = 31});
  auto server = testing::BindOrDie(loop);
  TaskScope scope(loop, testing::FailOnError());
  std::optional<std::optional<IncomingMessage>> waiting, after;
  scope.Spawn(TakeOne(*server, &waiting));
  RunFor(loop, absl::Milliseconds(10));
  EXPECT_FALSE(waiting.has_value());
  bool closed = false;
  scope.Spawn(CloseServer(*server, /*drain=*/false, &closed));
  ASSERT_TRUE(RunUntil(loop, [&] { return closed && waiting.has_value(); }));
  EXPECT_FALSE(waiting->has_value());
  scope.Spawn(TakeOne(*server, &after));
  ASSERT_TRUE(RunUntil(loop, [&] { return after.has_value(); }));
  EXPECT_FALSE(after->has_value());
  EXPECT_TRUE(server->closed());
}

TEST(Close, DrainAnswersWhatWasAcceptedAndClientsRetryTheRestElsewhere) {
  UvLoop loop(UvLoopOptions{.seed = 32});
  ServerOptions options;
  options.max_requests_in_flight_per_connection = 2;
  auto first = testing::BindOrDie(loop, options);
  const driver::Address address = first->address();
  ClientTransport client(loop, FastClient());
  std::unique_ptr<ServerTransport> second;
  TaskScope scope(loop, testing::FailOnError());

  std::vector<Reply> replies(5);  // not idempotent
  for (size_t i = 0; i < replies.size(); ++i) {
    scope.Spawn(
        Store(client.Request<std::string>(address, absl::StrCat("r", i)),
              &replies[i]));
  }
  ASSERT_TRUE(
      RunUntil(loop, [&] { return first->stats().requests_received == 2; }));
  // Goodbye says: requests 1 and 2 will be answered, 3 to 5 will not.
  bool closed = false;
  int handled_first = 0;
  scope.Spawn(CloseServer(*first, /*drain=*/true, &closed));
  scope.Spawn(Echo(*first, &handled_first));
  ASSERT_TRUE(RunUntil(loop, [&] { return closed; }));
  EXPECT_EQ(handled_first, 2);
  EXPECT_EQ(first->stats().replies_sent, 2u);
  EXPECT_EQ(first->stats().connections_open, 0u);
  ASSERT_TRUE(replies[0].has_value() && replies[1].has_value());
  EXPECT_EQ(**replies[0], "r0");
  EXPECT_EQ(**replies[1], "r1");

  // The client keeps 3 to 5 (never processed: safe to send again) and
  // sends them once a server listens on the address again.
  second = testing::BindOrDie(loop, {}, address);
  ASSERT_NE(second, nullptr);
  int handled_second = 0;
  scope.Spawn(Echo(*second, &handled_second));
  ASSERT_TRUE(RunUntil(loop, [&] { return AllDone(replies); }));
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i]->ok()) << i << ": " << replies[i]->status();
    EXPECT_EQ(**replies[i], absl::StrCat("r", i));
  }
  EXPECT_EQ(handled_second, 3);
  EXPECT_GE(client.peer(address)->stats().retries, 3u);
  scope.Clear();
}

TEST(Close, DrainEndsAtTheTimeoutWhenAHandlerNeverAnswers) {
  UvLoop loop(UvLoopOptions{.seed = 33});
  ServerOptions options;
  options.drain_timeout = absl::Milliseconds(200);
  auto server = testing::BindOrDie(loop, options);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  Reply reply;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), "x"), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  const absl::Time start = loop.Now();
  bool closed = false;
  scope.Spawn(CloseServer(*server, /*drain=*/true, &closed));
  ASSERT_TRUE(RunUntil(loop, [&] { return closed; }));
  EXPECT_GE(loop.Now() - start, absl::Milliseconds(200));
  EXPECT_EQ(server->Reply(**taken, "late").code(),
            absl::StatusCode::kFailedPrecondition);
  // Written, never answered, not idempotent: maybe delivered.
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kAborted)
      << reply->status();
}

TEST(Close, WithoutDrainClosesAtOnceAndInFlightRequestsAreAborted) {
  UvLoop loop(UvLoopOptions{.seed = 34});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  Reply plain, idempotent;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), "x"), &plain));
  RequestOptions retry;
  retry.idempotent = true;
  retry.timeout = absl::Milliseconds(300);
  scope.Spawn(Store(client.Request<std::string>(server->address(), "y", retry),
                    &idempotent));
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().requests_received == 2; }));
  bool closed = false;
  scope.Spawn(CloseServer(*server, /*drain=*/false, &closed));
  ASSERT_TRUE(RunUntil(loop, [&] {
    return closed && plain.has_value() && idempotent.has_value();
  }));
  EXPECT_EQ(plain->status().code(), absl::StatusCode::kAborted)
      << plain->status();
  // The idempotent one was sent again, found nobody, and ran out of time.
  EXPECT_FALSE(idempotent->ok());
  EXPECT_EQ(server->stats().connections_open, 0u);
}

}  // namespace
}  // namespace moonpool::transport::testing
