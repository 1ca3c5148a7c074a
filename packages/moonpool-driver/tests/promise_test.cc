// Promise<T> / Future<T> on the real UvLoop: values and errors, no
// suspension when already fulfilled, never resuming inside Set(), abandoned
// promises, and waiters that are destroyed first.
#include "moonpool/driver/promise.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "runtime_test_util.h"

namespace moonpool::driver {
namespace {

using runtime_test::DestroyFlag;
using runtime_test::RunTask;

static_assert(!std::is_copy_constructible_v<Promise<int>>);
static_assert(!std::is_copy_constructible_v<Future<int>>);
static_assert(std::is_same_v<AwaitResult<Future<int>>, absl::StatusOr<int>>);
static_assert(std::is_same_v<AwaitResult<Future<void>>, absl::Status>);

template <typename T>
Task<internal::PromiseResult<T>> Await(Future<T> future) {
  co_return co_await std::move(future);
}

TEST(Promise, ValueSetFromALoopCallbackReachesTheWaiter) {
  UvLoop loop;
  auto [promise, future] = MakePromise<std::string>(loop);
  auto timer = loop.CreateTimer(
      [p = std::move(promise)]() mutable { p.Set(std::string("pong")); });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  auto result = RunTask(loop, Await(std::move(future)));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, absl::StatusOr<std::string>("pong"));
}

TEST(Promise, ErrorStatusReachesTheWaiter) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  promise.Set(absl::NotFoundError("no such endpoint"));
  auto result = RunTask(loop, Await(std::move(future)));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status(), absl::NotFoundError("no such endpoint"));
}

TEST(Promise, VoidFutureYieldsAStatus) {
  UvLoop loop;
  auto [ok_promise, ok_future] = MakePromise<void>(loop);
  auto [bad_promise, bad_future] = MakePromise<void>(loop);
  ok_promise.Set();
  bad_promise.Set(absl::AbortedError("maybe delivered"));
  EXPECT_EQ(RunTask(loop, Await(std::move(ok_future))), absl::OkStatus());
  EXPECT_EQ(RunTask(loop, Await(std::move(bad_future))),
            absl::AbortedError("maybe delivered"));
}

TEST(Promise, MoveOnlyValuesAreHandedOver) {
  UvLoop loop;
  auto [promise, future] = MakePromise<std::unique_ptr<int>>(loop);
  promise.Set(std::make_unique<int>(7));
  auto result = RunTask(loop, Await(std::move(future)));
  ASSERT_TRUE(result.has_value() && result->ok());
  EXPECT_EQ(***result, 7);
}

TEST(Promise, AbandonedPromiseGivesCancelled) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  auto timer = loop.CreateTimer([p = std::make_unique<Promise<int>>(std::move(
                                     promise))]() mutable { p.reset(); });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  auto result = RunTask(loop, Await(std::move(future)));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status(),
            absl::CancelledError("promise destroyed before it was fulfilled"));
}

TEST(Promise, AbandonedBeforeAwaitGivesCancelledWithoutSuspending) {
  UvLoop loop;
  auto [promise, future] = MakePromise<void>(loop);
  { Promise<void> dropped = std::move(promise); }
  EXPECT_TRUE(future.ready());
  EXPECT_EQ(RunTask(loop, Await(std::move(future))),
            absl::CancelledError("promise destroyed before it was fulfilled"));
}

// Post runs functions in the order posted. A marker posted just before the
// await runs before any wake-up the await itself could post, so the marker
// tells whether the await went through the loop.
Task<bool> AwaitedThroughTheLoop(Loop& loop, Future<int> future, int* value) {
  // Shared: the marker may run after this frame is gone.
  auto marker = std::make_shared<bool>(false);
  loop.Post([marker] { *marker = true; });
  absl::StatusOr<int> v = co_await std::move(future);
  *value = v.value_or(-1);
  co_return *marker;
}

TEST(Promise, SetBeforeAwaitDoesNotSuspend) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  promise.Set(5);
  EXPECT_TRUE(promise.fulfilled());
  EXPECT_TRUE(future.ready());
  int value = 0;
  EXPECT_EQ(
      RunTask(loop, AwaitedThroughTheLoop(loop, std::move(future), &value)),
      false);
  EXPECT_EQ(value, 5);
}

TEST(Promise, SetAfterAwaitResumesOnALaterTurn) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  auto timer =
      loop.CreateTimer([p = std::move(promise)]() mutable { p.Set(6); });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  int value = 0;
  EXPECT_EQ(
      RunTask(loop, AwaitedThroughTheLoop(loop, std::move(future), &value)),
      true);
  EXPECT_EQ(value, 6);
}

Task<void> WaitAndRecord(Future<int> future, std::vector<std::string>* log) {
  absl::StatusOr<int> v = co_await std::move(future);
  log->push_back("resumed with " + std::to_string(v.value_or(-1)));
}

TEST(Promise, SetNeverResumesTheWaiterInsideTheCall) {
  UvLoop loop;
  std::vector<std::string> log;
  auto [promise, future] = MakePromise<int>(loop);
  TaskScope scope(loop, [](absl::Status) {});
  scope.Spawn(WaitAndRecord(std::move(future), &log));
  auto timer = loop.CreateTimer([&, p = std::move(promise)]() mutable {
    log.push_back("before Set");
    p.Set(9);
    log.push_back("after Set");
  });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  loop.RunUntil([&] { return scope.empty(); }, loop.Now() + absl::Seconds(5));
  EXPECT_EQ(log, (std::vector<std::string>{"before Set", "after Set",
                                           "resumed with 9"}));
}

Task<void> WaitGuarded(Future<int> future, bool* destroyed, bool* resumed) {
  DestroyFlag flag(destroyed);
  (void)co_await std::move(future);
  *resumed = true;
}

TEST(Promise, DestroyedWaiterIsForgottenBeforeSet) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  bool destroyed = false, resumed = false;
  {
    TaskScope scope(loop, [](absl::Status) {});
    scope.Spawn(WaitGuarded(std::move(future), &destroyed, &resumed));
    loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  }
  EXPECT_TRUE(destroyed);
  promise.Set(1);  // Nobody waits: nothing is posted, nothing resumes.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  EXPECT_FALSE(resumed);
}

TEST(Promise, WaiterDestroyedAfterSetButBeforeItsTurnIsNotResumed) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  bool destroyed = false, resumed = false;
  auto scope = std::make_unique<TaskScope>(loop, [](absl::Status) {});
  scope->Spawn(WaitGuarded(std::move(future), &destroyed, &resumed));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  // Set posts the resumption; the scope goes before the loop runs it.
  auto timer = loop.CreateTimer([&, p = std::move(promise)]() mutable {
    p.Set(2);
    scope.reset();
  });
  timer->Start(loop.Now());
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(2));
  EXPECT_TRUE(destroyed);
  EXPECT_FALSE(resumed);
}

TEST(Promise, FutureDroppedUnawaitedIsHarmless) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  { Future<int> dropped = std::move(future); }
  EXPECT_FALSE(future.valid());
  promise.Set(3);
  EXPECT_TRUE(promise.fulfilled());
}

}  // namespace
}  // namespace moonpool::driver
