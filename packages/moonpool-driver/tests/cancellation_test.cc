// CancellationSource / CancellationToken / WithCancellation on the real
// UvLoop: cancellation reaching a sleeping task (its sleep cut short, its
// timer stopped), never inside Cancel(), already-cancelled tokens, the
// source's destructor, and tokens inside Select.
#include "moonpool/driver/cancellation.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "runtime_test_util.h"

namespace moonpool::driver {
namespace {

using runtime_test::DestroyFlag;
using runtime_test::RunTask;

static_assert(
    std::is_same_v<decltype(WithCancellation(CancellationToken(),
                                             std::declval<Task<int>>())),
                   Task<absl::StatusOr<int>>>);
static_assert(
    std::is_same_v<decltype(WithCancellation(
                       CancellationToken(),
                       std::declval<Task<absl::StatusOr<std::string>>>())),
                   Task<absl::StatusOr<std::string>>>);
static_assert(std::is_same_v<decltype(WithCancellation(CancellationToken(),
                                                       std::declval<Task<>>())),
                             Task<absl::Status>>);

// `on_sleeping`, if given, runs once the task is about to sleep: tests that
// cancel from there know the task started, whatever the machine's load.
Task<absl::StatusOr<int>> SleepThenAnswer(
    Loop& loop, absl::Duration d, bool* destroyed,
    absl::AnyInvocable<void()> on_sleeping = nullptr) {
  DestroyFlag flag(destroyed);
  if (on_sleeping) on_sleeping();
  co_await Sleep(loop, d);
  co_return 42;
}

std::unique_ptr<Timer> CancelLater(Loop& loop, CancellationSource& source,
                                   absl::Duration delay) {
  auto timer = loop.CreateTimer([&source] { source.Cancel("shutting down"); });
  timer->Start(loop.Now() + delay);
  return timer;
}

TEST(Cancellation, CancelReachesASleepingTaskAndStopsItsTimer) {
  UvLoop loop;
  CancellationSource source(loop);
  bool destroyed = false;
  std::unique_ptr<Timer> canceller;
  absl::Time start = loop.Now();
  auto result = RunTask(
      loop, WithCancellation(
                source.token(),
                SleepThenAnswer(loop, absl::Hours(1), &destroyed, [&] {
                  canceller = CancelLater(loop, source, absl::Milliseconds(2));
                })));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status(), absl::CancelledError("shutting down"));
  EXPECT_TRUE(destroyed);
  // The sleep was cut short, and its hour-long timer is gone with it: Run
  // returns at once for lack of anything to wait for.
  loop.Run();
  EXPECT_LT(loop.Now() - start, absl::Minutes(1));
}

TEST(Cancellation, TaskFinishingFirstIsNotAffectedByALaterCancel) {
  UvLoop loop;
  CancellationSource source(loop);
  bool destroyed = false;
  auto result = RunTask(
      loop, WithCancellation(
                source.token(),
                SleepThenAnswer(loop, absl::Milliseconds(1), &destroyed)));
  EXPECT_EQ(result, absl::StatusOr<int>(42));
  EXPECT_TRUE(destroyed);
  source.Cancel("too late");
  loop.Run();
  EXPECT_TRUE(source.cancelled());
  EXPECT_EQ(result, absl::StatusOr<int>(42));
}

TEST(Cancellation, AlreadyCancelledTokenNeverStartsTheTask) {
  UvLoop loop;
  CancellationSource source(loop);
  source.Cancel();
  bool started = false;
  auto task = [](bool* s) -> Task<> {
    *s = true;
    co_return;
  };
  auto result = RunTask(loop, WithCancellation(source.token(), task(&started)));
  EXPECT_EQ(result, absl::CancelledError("cancelled"));
  EXPECT_FALSE(started);
}

Task<void> WaitForCancel(CancellationToken token, std::vector<std::string>* log,
                         std::string name) {
  co_await token.WhenCancelled();
  log->push_back(name);
}

TEST(Cancellation, CancelWakesEveryWaiterOnALaterTurnNeverInsideTheCall) {
  UvLoop loop;
  CancellationSource source(loop);
  std::vector<std::string> log;
  TaskScope scope(loop, [](absl::Status) {});
  scope.Spawn(WaitForCancel(source.token(), &log, "a"));
  scope.Spawn(WaitForCancel(source.token(), &log, "b"));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  EXPECT_EQ(scope.size(), 2u);
  auto timer = loop.CreateTimer([&] {
    source.Cancel();
    EXPECT_TRUE(source.cancelled());
    log.push_back("after Cancel");
  });
  timer->Start(loop.Now());
  loop.RunUntil([&] { return scope.empty(); }, loop.Now() + absl::Seconds(5));
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0], "after Cancel");
  EXPECT_TRUE(scope.empty());
}

TEST(Cancellation, DestroyingTheSourceCancelsItsTokens) {
  UvLoop loop;
  auto source = std::make_unique<CancellationSource>(loop);
  CancellationToken token = source->token();
  bool destroyed = false;
  auto timer = loop.CreateTimer([&] { source.reset(); });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  auto result = RunTask(
      loop, WithCancellation(
                token, SleepThenAnswer(loop, absl::Hours(1), &destroyed)));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(token.cancelled());  // The token outlives its source.
  EXPECT_TRUE(destroyed);
}

TEST(Cancellation, DefaultTokenIsNeverCancelled) {
  UvLoop loop;
  CancellationToken token;
  EXPECT_FALSE(token.cancelled());
  EXPECT_TRUE(token.status().ok());
  bool destroyed = false;
  auto result = RunTask(
      loop, WithCancellation(token, SleepThenAnswer(loop, absl::Milliseconds(1),
                                                    &destroyed)));
  EXPECT_EQ(result, absl::StatusOr<int>(42));
}

Task<std::size_t> SleepOrCancel(Loop& loop, CancellationToken token,
                                absl::Duration sleep) {
  auto r = co_await Select(Sleep(loop, sleep), token.WhenCancelled());
  co_return r.index();
}

TEST(Cancellation, TokenCanBeABranchOfSelect) {
  UvLoop loop;
  CancellationSource source(loop);
  auto canceller = CancelLater(loop, source, absl::Milliseconds(1));
  EXPECT_EQ(RunTask(loop, SleepOrCancel(loop, source.token(), absl::Hours(1))),
            1u);
  EXPECT_EQ(RunTask(loop, SleepOrCancel(loop, CancellationToken(),
                                        absl::Milliseconds(1))),
            0u);
}

TEST(Cancellation, AwaitingACancelledTokenDoesNotSuspend) {
  UvLoop loop;
  CancellationSource source(loop);
  source.Cancel("first");
  source.Cancel("second");  // Idempotent: the first reason stays.
  WhenCancelledAwaitable awaitable = source.token().WhenCancelled();
  EXPECT_TRUE(awaitable.await_ready());
  EXPECT_EQ(source.token().status(), absl::CancelledError("first"));
}

TEST(Cancellation, WaiterDestroyedBeforeTheWakeUpRunsIsForgotten) {
  UvLoop loop;
  CancellationSource source(loop);
  std::vector<std::string> log;
  auto scope = std::make_unique<TaskScope>(loop, [](absl::Status) {});
  scope->Spawn(WaitForCancel(source.token(), &log, "a"));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  auto timer = loop.CreateTimer([&] {
    source.Cancel();  // Posts the wake-up...
    scope.reset();    // ...and the waiter is gone before it runs.
  });
  timer->Start(loop.Now());
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(2));
  EXPECT_TRUE(log.empty());
}

}  // namespace
}  // namespace moonpool::driver
