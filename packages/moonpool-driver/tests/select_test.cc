// Select on the real UvLoop: a timer racing a promise in both orders, losers
// destroyed before the winner's value comes back, void branches, branches
// that finish while starting, and cancelling a Select itself.
#include "moonpool/driver/select.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "runtime_test_util.h"

namespace moonpool::driver {
namespace {

using runtime_test::DestroyFlag;
using runtime_test::RunTask;

static_assert(std::is_same_v<AwaitResult<SelectAwaitable<int, void, int>>,
                             std::variant<int, std::monostate, int>>);

// Fulfils `promise` with `value` after `delay` of loop time.
std::unique_ptr<Timer> SetLater(Loop& loop, Promise<int> promise, int value,
                                absl::Duration delay) {
  auto timer = loop.CreateTimer(
      [p = std::move(promise), value]() mutable { p.Set(value); });
  timer->Start(loop.Now() + delay);
  return timer;
}

using PromiseOrTimer = std::variant<absl::StatusOr<int>, std::monostate>;

Task<PromiseOrTimer> Race(Loop& loop, Future<int> future,
                          absl::Duration sleep) {
  co_return co_await Select(std::move(future), Sleep(loop, sleep));
}

TEST(Select, PromiseFulfilledBeforeTheTimerWins) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  auto setter = SetLater(loop, std::move(promise), 42, absl::Milliseconds(2));
  absl::Time start = loop.Now();
  auto result = RunTask(loop, Race(loop, std::move(future), absl::Hours(1)));
  ASSERT_TRUE(result.has_value());
  ASSERT_EQ(result->index(), 0u);
  EXPECT_EQ(std::get<0>(*result), absl::StatusOr<int>(42));
  // The losing sleep's timer was stopped: the loop has nothing left to do.
  loop.Run();
  EXPECT_LT(loop.Now() - start, absl::Minutes(1));
}

TEST(Select, TimerFiringBeforeThePromiseWins) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  auto setter = SetLater(loop, std::move(promise), 42, absl::Milliseconds(50));
  auto result =
      RunTask(loop, Race(loop, std::move(future), absl::Milliseconds(2)));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->index(), 1u);
  // The loser forgot its waiter: the late Set resumes nothing.
  loop.Run();
}

Task<int> ReturnAfterSleep(Loop& loop, absl::Duration d, int value,
                           bool* destroyed) {
  DestroyFlag flag(destroyed);
  co_await Sleep(loop, d);
  co_return value;
}

struct LoserSeen {
  int value = 0;
  bool loser_destroyed_before_resume = false;
};

Task<LoserSeen> RaceTwoSleeps(Loop& loop, bool* fast, bool* slow) {
  auto r =
      co_await Select(ReturnAfterSleep(loop, absl::Milliseconds(1), 1, fast),
                      ReturnAfterSleep(loop, absl::Hours(1), 2, slow));
  co_return LoserSeen{std::get<0>(r), *slow};
}

TEST(Select, LosersAreDestroyedBeforeTheAwaiterResumes) {
  UvLoop loop;
  bool fast = false, slow = false;
  auto result = RunTask(loop, RaceTwoSleeps(loop, &fast, &slow));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->value, 1);
  EXPECT_TRUE(result->loser_destroyed_before_resume);
  EXPECT_TRUE(fast);  // The winner's frame goes with the Select.
}

Task<int> Immediately(int value) { co_return value; }

Task<int> MustNotStart(bool* started) {
  *started = true;
  co_return -1;
}

Task<std::size_t> FirstFinishesWhileStarting(Loop& loop, bool* third) {
  bool second_destroyed = false;
  auto r = co_await Select(
      ReturnAfterSleep(loop, absl::Hours(1), 0, &second_destroyed),
      Immediately(7), MustNotStart(third));
  EXPECT_TRUE(second_destroyed);
  EXPECT_EQ(std::get<1>(r), 7);
  co_return r.index();
}

TEST(Select, BranchFinishingWhileStartingWinsAndLaterBranchesNeverStart) {
  UvLoop loop;
  bool third_started = false;
  EXPECT_EQ(RunTask(loop, FirstFinishesWhileStarting(loop, &third_started)),
            1u);
  EXPECT_FALSE(third_started);
}

Task<void> Nothing() { co_return; }

Task<std::size_t> VoidBranches(Loop& loop) {
  std::variant<std::monostate, std::monostate> r =
      co_await Select(SleepUntil(loop, absl::InfiniteFuture()), Nothing());
  co_return r.index();
}

TEST(Select, VoidBranchesGiveMonostate) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, VoidBranches(loop)), 1u);
}

Task<std::size_t> SameTypes(Loop& loop) {
  bool a = false, b = false;
  std::variant<int, int> r =
      co_await Select(ReturnAfterSleep(loop, absl::Milliseconds(20), 1, &a),
                      ReturnAfterSleep(loop, absl::Milliseconds(1), 2, &b));
  EXPECT_EQ(std::get<1>(r), 2);
  co_return r.index();
}

TEST(Select, BranchesOfOneTypeAreToldApartByIndex) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, SameTypes(loop)), 1u);
}

Task<std::size_t> SameTurn(Loop& loop, Future<int> first, Future<int> second) {
  auto r = co_await Select(std::move(first), std::move(second));
  co_return r.index();
}

TEST(Select, WhenBothAreReadyOnOneTurnTheFirstWokenWins) {
  UvLoop loop;
  auto [p0, f0] = MakePromise<int>(loop);
  auto [p1, f1] = MakePromise<int>(loop);
  // One callback fulfils both, the second branch's first: its resumption is
  // posted first, so it wins, and branch 0 is destroyed before its own.
  auto timer =
      loop.CreateTimer([a = std::move(p0), b = std::move(p1)]() mutable {
        b.Set(1);
        a.Set(0);
      });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  EXPECT_EQ(RunTask(loop, SameTurn(loop, std::move(f0), std::move(f1))), 1u);
}

Task<int> NestedSelect(Loop& loop) {
  bool d1 = false, d2 = false, d3 = false;
  auto inner = Select(ReturnAfterSleep(loop, absl::Milliseconds(30), 1, &d1),
                      ReturnAfterSleep(loop, absl::Milliseconds(2), 2, &d2));
  auto outer = co_await Select(
      std::move(inner), ReturnAfterSleep(loop, absl::Milliseconds(10), 3, &d3));
  if (outer.index() != 0) co_return -1;
  co_return std::get<1>(std::get<0>(outer));
}

TEST(Select, SelectsNest) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, NestedSelect(loop)), 2);
}

Task<void> SelectForever(Loop& loop, bool* a, bool* b) {
  (void)co_await Select(ReturnAfterSleep(loop, absl::Hours(1), 0, a),
                        ReturnAfterSleep(loop, absl::Hours(2), 0, b));
  ADD_FAILURE() << "the Select should have been destroyed first";
}

TEST(Select, DestroyingTheAwaitingCoroutineDestroysEveryBranch) {
  UvLoop loop;
  bool a = false, b = false;
  {
    TaskScope scope(loop, [](absl::Status) {});
    scope.Spawn(SelectForever(loop, &a, &b));
    loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
    EXPECT_FALSE(a || b);
  }
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
  absl::Time before = loop.Now();
  loop.Run();  // No timer left behind.
  EXPECT_LT(loop.Now() - before, absl::Minutes(1));
}

Task<int> ManySelects(Loop& loop, int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) {
    auto r = co_await Select(Immediately(1), Nothing());
    sum += std::get<0>(r);
  }
  co_return sum;
}

TEST(Select, ManySelectsInALoopDoNotGrowTheStack) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, ManySelects(loop, 100000)), 100000);
}

}  // namespace
}  // namespace moonpool::driver
