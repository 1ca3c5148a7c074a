// GracefulShutdown with real signals: raise() to this process on a real
// UvLoop, with a real server and client on loopback. Signals are raised only
// while a GracefulShutdown watches them (libuv's handler is installed then;
// once it has closed, their default action is back).
#include "moonpool/transport/graceful_shutdown.h"

#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using Step = std::pair<int, ShutdownStep>;

std::unique_ptr<GracefulShutdown> WatchOrDie(UvLoop& loop,
                                             GracefulShutdownOptions options) {
  absl::StatusOr<std::unique_ptr<GracefulShutdown>> s =
      GracefulShutdown::Watch(loop, std::move(options));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

// Records every signal the shutdown acted on.
GracefulShutdownOptions Recording(std::vector<Step>* steps) {
  GracefulShutdownOptions o;
  o.signals = {SIGTERM, SIGINT};
  o.on_signal = [steps](int signum, ShutdownStep step) {
    steps->emplace_back(signum, step);
  };
  return o;
}

TEST(GracefulShutdown, FirstSignalDrainsAnswersWhatIsInFlightThenCloses) {
  UvLoop loop(UvLoopOptions{.seed = 71});
  ServerOptions server_options;
  server_options.drain_timeout = absl::Seconds(30);
  auto server = testing::BindOrDie(loop, server_options);
  ASSERT_NE(server, nullptr);
  ClientTransport client(loop, FastClient());
  std::vector<Step> steps;
  GracefulShutdownOptions options = Recording(&steps);
  int closing_calls = 0;
  size_t peers_at_closing = 0;
  options.on_closing = [&] {
    ++closing_calls;
    peers_at_closing = client.peer_count();
  };
  auto shutdown = WatchOrDie(loop, std::move(options));
  ASSERT_NE(shutdown, nullptr);
  shutdown->AddServer(*server);
  shutdown->AddClient(client);
  // Something that would keep Run going for 30 s: only the shutdown's Stop
  // makes it return sooner.
  auto keep_running = loop.CreateTimer([] {});
  keep_running->Start(loop.Now() + absl::Seconds(30));
  TaskScope scope(loop, testing::FailOnError());

  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  Reply reply;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), std::string("q")),
            &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  ASSERT_TRUE(taken->has_value());

  ASSERT_EQ(raise(SIGTERM), 0);
  EXPECT_TRUE(steps.empty()) << "acted inside raise()";
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_THAT(steps, ElementsAre(Pair(SIGTERM, ShutdownStep::kDrain)));
  EXPECT_EQ(shutdown->state(), GracefulShutdown::State::kDraining);
  EXPECT_FALSE(server->closed()) << "a request in flight keeps the drain open";
  EXPECT_FALSE(reply.has_value());

  // The request in flight is still answered, and the drain then ends.
  ASSERT_TRUE(server->Reply(**taken, "answered while draining").ok());
  const absl::Time start = loop.Now();
  loop.Run();
  EXPECT_LT(loop.Now() - start, absl::Seconds(20)) << "Run was not stopped";
  EXPECT_TRUE(shutdown->closed());
  EXPECT_TRUE(server->closed());
  ASSERT_TRUE(reply.has_value());
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ(**reply, "answered while draining");
  EXPECT_EQ(closing_calls, 1);
  EXPECT_EQ(peers_at_closing, 1u) << "on_closing runs before clients close";
  // The client was closed after the drain.
  Reply after;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), std::string("late")),
            &after));
  ASSERT_TRUE(RunUntil(loop, [&] { return after.has_value(); }));
  EXPECT_EQ(after->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(steps, ElementsAre(Pair(SIGTERM, ShutdownStep::kDrain)));
}

TEST(GracefulShutdown, SecondSignalClosesAtOnce) {
  UvLoop loop(UvLoopOptions{.seed = 72});
  ServerOptions server_options;
  server_options.drain_timeout = absl::Seconds(30);
  auto server = testing::BindOrDie(loop, server_options);
  ASSERT_NE(server, nullptr);
  ClientTransport client(loop, FastClient());
  std::vector<Step> steps;
  auto shutdown = WatchOrDie(loop, Recording(&steps));
  ASSERT_NE(shutdown, nullptr);
  shutdown->AddServer(*server);
  shutdown->AddClient(client);
  TaskScope scope(loop, testing::FailOnError());

  // A request the handler takes and never answers: the drain would wait
  // for it until the 30 s drain_timeout.
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  Reply reply;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), std::string("q")),
            &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));

  ASSERT_EQ(raise(SIGTERM), 0);
  RunFor(loop, absl::Milliseconds(50));
  ASSERT_EQ(shutdown->state(), GracefulShutdown::State::kDraining);
  const absl::Time start = loop.Now();
  ASSERT_EQ(raise(SIGINT), 0);
  ASSERT_TRUE(RunUntil(loop, [&] { return shutdown->closed(); }));
  EXPECT_LT(loop.Now() - start, absl::Seconds(5)) << "waited for the drain";
  EXPECT_TRUE(server->closed());
  EXPECT_THAT(steps, ElementsAre(Pair(SIGTERM, ShutdownStep::kDrain),
                                 Pair(SIGINT, ShutdownStep::kCloseNow)));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_FALSE(reply->ok()) << "the unanswered request was not answered";
  EXPECT_EQ(server->Reply(**taken, "too late").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(GracefulShutdown, DestroyingItStopsWatching) {
  UvLoop loop(UvLoopOptions{.seed = 73});
  auto server = testing::BindOrDie(loop);
  ASSERT_NE(server, nullptr);
  ClientTransport client(loop, FastClient());
  std::vector<Step> steps;
  auto shutdown = WatchOrDie(loop, Recording(&steps));
  ASSERT_NE(shutdown, nullptr);
  shutdown->AddServer(*server);
  shutdown->AddClient(client);
  // Caught by libuv's handler, not yet delivered: destroying the shutdown
  // first means it is never acted on.
  ASSERT_EQ(raise(SIGTERM), 0);
  shutdown.reset();
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  Reply reply;
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), std::string("still")),
      &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_TRUE(steps.empty());
  EXPECT_FALSE(server->closed());
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ(**reply, "still");
  scope.Clear();
}

Task<void> Forever(UvLoop& loop, bool* started) {
  *started = true;
  co_await driver::SleepUntil(loop, absl::InfiniteFuture());
}

TEST(GracefulShutdown, ProgramDrainIsCutAtDrainTimeout) {
  UvLoop loop(UvLoopOptions{.seed = 74});
  ClientTransport client(loop, FastClient());
  GracefulShutdownOptions options;
  options.signals = {SIGTERM};
  options.drain_timeout = absl::Milliseconds(200);
  options.stop_loop = false;
  auto shutdown = WatchOrDie(loop, std::move(options));
  ASSERT_NE(shutdown, nullptr);
  shutdown->AddClient(client);
  bool started = false;
  shutdown->SetDrain([&] { return Forever(loop, &started); });
  ASSERT_EQ(raise(SIGTERM), 0);
  const absl::Time start = loop.Now();
  ASSERT_TRUE(RunUntil(loop, [&] { return shutdown->closed(); }));
  EXPECT_TRUE(started);
  EXPECT_GE(loop.Now() - start, absl::Milliseconds(200));
  EXPECT_LT(loop.Now() - start, absl::Seconds(5));
}

TEST(GracefulShutdown, DrainWithoutASignalGoesThroughTheSameSteps) {
  UvLoop loop(UvLoopOptions{.seed = 75});
  auto server = testing::BindOrDie(loop);
  ASSERT_NE(server, nullptr);
  GracefulShutdownOptions options;
  options.signals = {SIGTERM};
  int closing_calls = 0;
  options.on_closing = [&] { ++closing_calls; };
  auto shutdown = WatchOrDie(loop, std::move(options));
  ASSERT_NE(shutdown, nullptr);
  shutdown->AddServer(*server);
  shutdown->Drain();
  EXPECT_EQ(shutdown->state(), GracefulShutdown::State::kDraining);
  EXPECT_FALSE(server->closed()) << "nothing happens inside Drain()";
  loop.Run();  // stopped, or out of work, once closed
  EXPECT_TRUE(shutdown->closed());
  EXPECT_TRUE(server->closed());
  EXPECT_EQ(closing_calls, 1);
}

TEST(GracefulShutdown, RejectsSignalsThatCannotBeWatched) {
  UvLoop loop;
  GracefulShutdownOptions options;
  options.signals = {SIGKILL};
  EXPECT_EQ(GracefulShutdown::Watch(loop, std::move(options)).status().code(),
            absl::StatusCode::kInvalidArgument);
  GracefulShutdownOptions negative;
  negative.drain_timeout = absl::Seconds(-1);
  EXPECT_EQ(GracefulShutdown::Watch(loop, std::move(negative)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moonpool::transport::testing
