// Payload storage handed back to the transports (driver::BufferPool): a
// server handler that gives its message back with Reply(std::move(msg), ...)
// and a client whose request strings come from its pool still get every
// byte right, whatever the sizes, and an error reply given back the same
// way still reaches its caller.
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

// Echoes each request, giving the message back; a request that starts with
// "fail" is answered with an error, given back too.
Task<void> GivingBackEcho(ServerTransport& server, int* handled) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    ++*handled;
    if (absl::string_view(m->envelope.payload).substr(0, 4) == "fail") {
      const absl::Status error = absl::NotFoundError(m->envelope.payload);
      EXPECT_TRUE(server.ReplyError(std::move(*m), error).ok());
    } else {
      EXPECT_TRUE(
          server.Reply(std::move(*m), absl::string_view(m->envelope.payload))
              .ok());
    }
    // Given back: the message no longer holds its payload.
    EXPECT_TRUE(m->envelope.payload.empty());
  }
}

std::string PayloadOf(int i) {
  // Sizes from inline strings to past the pool's largest kept buffer.
  static constexpr size_t kSizes[] = {0, 5, 64, 200, 4096, 70000};
  std::string s(kSizes[i % 6], '\0');
  for (size_t k = 0; k < s.size(); ++k) {
    s[k] = static_cast<char>('a' + (static_cast<size_t>(i) * 7 + k) % 26);
  }
  return s;
}

TEST(PayloadReuse, EchoesGivenBackKeepEveryByteAcrossRounds) {
  UvLoop loop(UvLoopOptions{.seed = 21});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  for (int h = 0; h < 3; ++h) scope.Spawn(GivingBackEcho(*server, &handled));

  // Several rounds, so that later requests and messages reuse the strings
  // the earlier ones gave back.
  constexpr int kRounds = 4;
  constexpr int kPerRound = 24;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::optional<absl::StatusOr<std::string>>> replies(kPerRound);
    for (int i = 0; i < kPerRound; ++i) {
      scope.Spawn(Store(client.Request<std::string>(server->address(),
                                                    PayloadOf(round * 31 + i)),
                        &replies[i]));
    }
    ASSERT_TRUE(RunUntil(loop, [&] {
      for (auto& r : replies) {
        if (!r.has_value()) return false;
      }
      return true;
    }));
    for (int i = 0; i < kPerRound; ++i) {
      ASSERT_TRUE(replies[i]->ok()) << replies[i]->status();
      EXPECT_EQ(**replies[i], PayloadOf(round * 31 + i))
          << "round " << round << " request " << i;
    }
  }
  EXPECT_EQ(handled, kRounds * kPerRound);
}

TEST(PayloadReuse, AnErrorReplyGivenBackReachesItsCaller) {
  UvLoop loop(UvLoopOptions{.seed = 22});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(GivingBackEcho(*server, &handled));
  const std::string request = "fail: " + std::string(100, 'q');
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), request), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reply->status().message(), request);
}

TEST(PayloadReuse, ARequestGivenItsStringSendsItWithoutACopy) {
  UvLoop loop(UvLoopOptions{.seed = 23});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(GivingBackEcho(*server, &handled));
  const std::string expected = PayloadOf(5);  // 70,000 bytes
  std::string request = expected;
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), std::move(request)),
            &reply));
  // Given away: the transport holds the bytes now (moved, not copied).
  EXPECT_TRUE(request.empty());  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ(**reply, expected);
}

}  // namespace
}  // namespace moonpool::transport::testing
