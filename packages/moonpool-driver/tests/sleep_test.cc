// Sleep and SleepUntil on the real UvLoop: the loop's clock moves by at least
// the duration, a zero sleep still yields to the loop, and destroying a
// sleeping coroutine stops its timer.
#include "moonpool/driver/sleep.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
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

Task<absl::Duration> MeasureSleep(Loop& loop, absl::Duration d) {
  absl::Time start = loop.Now();
  co_await Sleep(loop, d);
  co_return loop.Now() - start;
}

TEST(Sleep, ResumesOnceTheLoopsClockHasMovedByTheDuration) {
  UvLoop loop;
  auto slept = RunTask(loop, MeasureSleep(loop, absl::Milliseconds(5)));
  ASSERT_TRUE(slept.has_value());
  EXPECT_GE(*slept, absl::Milliseconds(5));
  EXPECT_LT(*slept, absl::Seconds(5));
}

Task<bool> SleepUntilThen(Loop& loop, absl::Time t) {
  co_await SleepUntil(loop, t);
  co_return loop.Now() >= t;
}

TEST(Sleep, SleepUntilResumesAtTheTime) {
  UvLoop loop;
  EXPECT_EQ(
      RunTask(loop, SleepUntilThen(loop, loop.Now() + absl::Milliseconds(3))),
      true);
  // A time in the past resumes on a later turn.
  EXPECT_EQ(RunTask(loop, SleepUntilThen(loop, loop.Now() - absl::Hours(1))),
            true);
}

Task<void> ZeroSleepThenMark(Loop& loop, std::vector<int>* order) {
  co_await Sleep(loop, absl::ZeroDuration());
  order->push_back(2);
}

Task<void> Mark(std::vector<int>* order) {
  order->push_back(1);
  co_return;
}

TEST(Sleep, ZeroSleepStillSuspendsUntilALaterTurn) {
  UvLoop loop;
  std::vector<int> order;
  TaskScope scope(loop, [](absl::Status) {});
  // Both start on the same turn; the zero sleep lets the second run first.
  scope.Spawn(ZeroSleepThenMark(loop, &order));
  scope.Spawn(Mark(&order));
  loop.RunUntil([&] { return scope.empty(); }, loop.Now() + absl::Seconds(5));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

Task<void> SleepLong(Loop& loop, bool* destroyed, bool* woke) {
  DestroyFlag flag(destroyed);
  co_await Sleep(loop, absl::Hours(1));
  *woke = true;
}

TEST(Sleep, DestroyingTheSleepingCoroutineStopsItsTimer) {
  UvLoop loop;
  bool destroyed = false, woke = false;
  {
    TaskScope scope(loop, [](absl::Status) {});
    scope.Spawn(SleepLong(loop, &destroyed, &woke));
    loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
    EXPECT_EQ(scope.size(), 1u);
  }
  EXPECT_TRUE(destroyed);
  absl::Time before = loop.Now();
  loop.Run();  // Returns at once: no timer is armed any more.
  EXPECT_LT(loop.Now() - before, absl::Minutes(1));
  EXPECT_FALSE(woke);
}

Task<int> ManySleeps(Loop& loop, int n) {
  for (int i = 0; i < n; ++i) co_await Sleep(loop, absl::ZeroDuration());
  co_return n;
}

TEST(Sleep, TimerDestroyedFromInsideItsOwnCallbackIsSafe) {
  // Each sleep's timer is destroyed while its callback resumes the
  // coroutine, which then arms the next one.
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, ManySleeps(loop, 100)), 100);
}

}  // namespace
}  // namespace moonpool::driver
