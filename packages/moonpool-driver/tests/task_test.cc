// Task<T> and TaskScope on the real UvLoop: laziness, values, long await
// chains, cancellation by destruction, spawned tasks and their errors, and
// the loop destroying what is still suspended.
#include "moonpool/driver/task.h"

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "runtime_test_util.h"

namespace moonpool::driver {
namespace {

using runtime_test::DestroyFlag;
using runtime_test::Discard;
using runtime_test::RunTask;

static_assert(!std::is_copy_constructible_v<Task<int>>);
static_assert(!std::is_copy_assignable_v<Task<int>>);
static_assert(std::is_nothrow_move_constructible_v<Task<int>>);
static_assert(Awaitable<Task<int>>);
static_assert(std::is_same_v<AwaitResult<Task<std::string>>, std::string>);

Task<int> Return(int value) { co_return value; }

Task<int> AddOne(Task<int> inner) { co_return 1 + co_await std::move(inner); }

Task<void> SetFlag(bool* flag) {
  *flag = true;
  co_return;
}

TEST(Task, DoesNotStartUntilAwaited) {
  UvLoop loop;
  bool ran = false;
  Task<void> task = SetFlag(&ran);
  EXPECT_TRUE(task.valid());
  EXPECT_FALSE(ran);
  ASSERT_TRUE(RunTask(loop, std::move(task)).has_value());
  EXPECT_TRUE(ran);
}

TEST(Task, AwaitYieldsTheValue) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, AddOne(AddOne(Return(40)))), 42);
}

Task<std::unique_ptr<std::string>> MakeMoveOnly() {
  co_return std::make_unique<std::string>("moved, never copied");
}

TEST(Task, MoveOnlyValuesAreMovedOut) {
  UvLoop loop;
  auto result = RunTask(loop, MakeMoveOnly());
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(**result, "moved, never copied");
}

Task<absl::StatusOr<int>> Parse(std::string text) {
  if (text.empty()) co_return absl::InvalidArgumentError("empty");
  co_return static_cast<int>(text.size());
}

Task<absl::Status> SumOfParses(int* sum) {
  absl::StatusOr<int> a = co_await Parse("abc");
  if (!a.ok()) co_return a.status();
  absl::StatusOr<int> b = co_await Parse("");
  if (!b.ok()) co_return b.status();
  *sum = *a + *b;
  co_return absl::OkStatus();
}

TEST(Task, ErrorsTravelAsStatusValues) {
  UvLoop loop;
  int sum = 0;
  auto result = RunTask(loop, SumOfParses(&sum));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sum, 0);
}

Task<int> SuspendThenReturn(Loop& loop, int value) {
  co_await Sleep(loop, absl::Milliseconds(1));
  co_return value;
}

Task<std::vector<int>> Sequence(Loop& loop) {
  std::vector<int> order;
  order.push_back(co_await Return(1));
  order.push_back(co_await SuspendThenReturn(loop, 2));
  order.push_back(co_await AddOne(SuspendThenReturn(loop, 2)));
  co_return order;
}

TEST(Task, NestedAwaitsThatSuspendResumeInOrder) {
  UvLoop loop;
  auto result = RunTask(loop, Sequence(loop));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, (std::vector<int>{1, 2, 3}));
}

constexpr int kDeepChain = 100000;

Task<long> SumSequentially(int n) {
  long sum = 0;
  for (int i = 0; i < n; ++i) sum += co_await Return(i);
  co_return sum;
}

// Each await of a task that finishes without suspending hands control to the
// child and back. Without the trampoline (awaitable.h) a GCC build with ASan
// grows the stack on each of these and overflows.
TEST(Task, HundredThousandSequentialAwaitsDoNotGrowTheStack) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, SumSequentially(kDeepChain)),
            static_cast<long>(kDeepChain) * (kDeepChain - 1) / 2);
}

Task<int> Depth(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await Depth(n - 1);
}

TEST(Task, HundredThousandNestedAwaitsDoNotGrowTheStack) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, Depth(kDeepChain)), kDeepChain);
}

Task<int> DepthThenSleep(Loop& loop, int n) {
  if (n == 0) {
    co_await Sleep(loop, absl::Milliseconds(1));
    co_return 0;
  }
  co_return 1 + co_await DepthThenSleep(loop, n - 1);
}

TEST(Task, DeepChainResumesFromALoopCallbackWithoutGrowingTheStack) {
  UvLoop loop;
  EXPECT_EQ(RunTask(loop, DepthThenSleep(loop, kDeepChain)), kDeepChain);
}

Task<int> WaitForFuture(Future<int> future, bool* destroyed, bool* resumed) {
  DestroyFlag flag(destroyed);
  absl::StatusOr<int> value = co_await std::move(future);
  *resumed = true;
  co_return value.value_or(-1);
}

Task<int> AwaitChild(Task<int> child, bool* destroyed) {
  DestroyFlag flag(destroyed);
  co_return co_await std::move(child);
}

TEST(Task, CoroutineCanBeCancelledWhileSuspended) {
  UvLoop loop;
  auto [promise, future] = MakePromise<int>(loop);
  bool child_destroyed = false, parent_destroyed = false, resumed = false;
  TaskScope scope(loop, [](absl::Status) {});
  scope.Spawn(Discard(
      AwaitChild(WaitForFuture(std::move(future), &child_destroyed, &resumed),
                 &parent_destroyed)));
  // Run the chain until it suspends on the future.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(5));
  EXPECT_EQ(scope.size(), 1u);
  EXPECT_FALSE(child_destroyed);
  scope.Clear();  // destroys the spawned task, which owns the chain
  EXPECT_TRUE(child_destroyed);
  EXPECT_TRUE(parent_destroyed);
  // The future forgot its waiter: fulfilling it now resumes nothing.
  promise.Set(7);
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(5));
  EXPECT_FALSE(resumed);
}

Task<int> SleepForever(Loop& loop, bool* destroyed) {
  DestroyFlag flag(destroyed);
  co_await SleepUntil(loop, absl::InfiniteFuture());
  co_return 0;
}

Task<int> Chain(Loop& loop, int n, bool* leaf_destroyed) {
  if (n == 0) co_return co_await SleepForever(loop, leaf_destroyed);
  co_return co_await Chain(loop, n - 1, leaf_destroyed);
}

TEST(Task, DestroyingASuspendedChainDestroysEveryFrame) {
  UvLoop loop;
  bool leaf_destroyed = false;
  TaskScope scope(loop, [](absl::Status) {});
  scope.Spawn(Discard(Chain(loop, 1000, &leaf_destroyed)));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  EXPECT_EQ(scope.size(), 1u);
  EXPECT_FALSE(leaf_destroyed);
  scope.Clear();
  EXPECT_TRUE(leaf_destroyed);
  EXPECT_EQ(scope.size(), 0u);
}

TEST(Task, DestroyingAnUnstartedTaskNeverRunsIt) {
  bool ran = false;
  { Task<void> task = SetFlag(&ran); }
  EXPECT_FALSE(ran);
}

// ---------------------------------------------------------------------------
// TaskScope

Task<void> Record(std::vector<int>* order, int id) {
  order->push_back(id);
  co_return;
}

TEST(TaskScope, SpawnStartsTasksOnALaterTurnInSpawnOrder) {
  UvLoop loop;
  std::vector<int> order;
  TaskScope scope(loop, [](absl::Status) {});
  scope.Spawn(Record(&order, 1));
  scope.Spawn(Record(&order, 2));
  scope.Spawn(Record(&order, 3));
  EXPECT_TRUE(order.empty()) << "Spawn ran a task inside the call";
  EXPECT_EQ(scope.size(), 3u);
  loop.RunUntil([&] { return scope.empty(); }, loop.Now() + absl::Seconds(5));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(scope.size(), 0u);
}

Task<absl::Status> Fail(std::string message) {
  co_return absl::UnavailableError(message);
}

Task<absl::Status> Succeed() { co_return absl::OkStatus(); }

TEST(TaskScope, ErrorHandlerReceivesAFailingTasksStatus) {
  UvLoop loop;
  std::vector<absl::Status> errors;
  TaskScope scope(loop, [&](absl::Status s) { errors.push_back(s); });
  scope.Spawn(Succeed());
  scope.Spawn(Fail("peer went away"));
  loop.RunUntil([&] { return scope.empty(); }, loop.Now() + absl::Seconds(5));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], absl::UnavailableError("peer went away"));
}

Task<absl::Status> FailAfterSleep(Loop& loop) {
  co_await Sleep(loop, absl::Milliseconds(2));
  co_return absl::DataLossError("checksum");
}

TEST(TaskScope, ErrorHandlerMayDestroyTheScope) {
  UvLoop loop;
  absl::Status seen;
  std::unique_ptr<TaskScope> scope;
  scope = std::make_unique<TaskScope>(loop, [&](absl::Status s) {
    seen = s;
    scope.reset();
  });
  bool other_destroyed = false;
  scope->Spawn(FailAfterSleep(loop));
  scope->Spawn(Discard(SleepForever(loop, &other_destroyed)));
  loop.RunUntil([&] { return scope == nullptr; },
                loop.Now() + absl::Seconds(5));
  EXPECT_EQ(scope, nullptr);
  EXPECT_EQ(seen.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(other_destroyed);
}

TEST(TaskScope, DestroyingTheScopeCancelsSuspendedTasksAndStopsTheirTimers) {
  UvLoop loop;
  bool a = false, b = false;
  {
    TaskScope scope(loop, [](absl::Status) {});
    scope.Spawn(Discard(SleepForever(loop, &a)));
    scope.Spawn(Discard(SuspendThenReturn(loop, 1)));
    scope.Spawn([](Loop& l, bool* d) -> Task<void> {
      DestroyFlag flag(d);
      co_await Sleep(l, absl::Hours(1));
    }(loop, &b));
    loop.RunUntil([] { return false; }, loop.Now() + absl::Microseconds(1));
    EXPECT_GE(scope.size(), 2u);
    EXPECT_FALSE(a);
    EXPECT_FALSE(b);
  }
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
  // The hour-long timer went with its task: Run has nothing to wait for.
  absl::Time before = loop.Now();
  loop.Run();
  EXPECT_LT(loop.Now() - before, absl::Seconds(1));
}

TEST(TaskScope, TasksDestroyedBeforeTheirTurnNeverRun) {
  UvLoop loop;
  bool ran = false;
  {
    TaskScope scope(loop, [](absl::Status) {});
    scope.Spawn(SetFlag(&ran));
  }
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(2));
  EXPECT_FALSE(ran);
}

TEST(TaskScope, ScopeIsUsableAfterClear) {
  UvLoop loop;
  bool first = false, second = false;
  TaskScope scope(loop, [](absl::Status) {});
  scope.Spawn(SetFlag(&first));
  scope.Clear();
  EXPECT_TRUE(scope.empty());
  scope.Spawn(SetFlag(&second));
  loop.RunUntil([&] { return scope.empty(); }, loop.Now() + absl::Seconds(5));
  EXPECT_FALSE(first);
  EXPECT_TRUE(second);
}

// A destructor inside a task destroys the scope while the scope is
// destroying that task: the scope must stop touching itself at once.
struct ResetOnDestroy {
  std::unique_ptr<TaskScope>* scope;
  ~ResetOnDestroy() { scope->reset(); }
};

Task<void> ResetScopeWhenDestroyed(Loop& loop,
                                   std::unique_ptr<TaskScope>* scope) {
  ResetOnDestroy reset{scope};
  co_await SleepUntil(loop, absl::InfiniteFuture());
}

TEST(TaskScope, ScopeDestroyedFromADestructorOfItsOwnTaskDuringClear) {
  UvLoop loop;
  bool other = false;
  auto scope = std::make_unique<TaskScope>(loop, [](absl::Status) {});
  scope->Spawn(Discard(SleepForever(loop, &other)));
  scope->Spawn(ResetScopeWhenDestroyed(loop, &scope));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  scope->Clear();
  EXPECT_EQ(scope, nullptr);
  EXPECT_TRUE(other);
}

// ---------------------------------------------------------------------------
// Destroying the loop

Task<void> OwnsAScope(Loop& loop, bool* inner_destroyed, bool* outer) {
  DestroyFlag flag(outer);
  TaskScope inner(loop, [](absl::Status) {});
  inner.Spawn(Discard(SleepForever(loop, inner_destroyed)));
  co_await SleepUntil(loop, absl::InfiniteFuture());
}

TEST(TaskScope, DestroyingTheLoopDestroysSuspendedTasksAndLeaksNothing) {
  bool sleeping = false, waiting = false, inner = false, outer = false,
       resumed = false;
  auto loop = std::make_unique<UvLoop>();
  auto scope = std::make_unique<TaskScope>(*loop, [](absl::Status) {});
  auto [promise, future] = MakePromise<int>(*loop);
  scope->Spawn(Discard(SleepForever(*loop, &sleeping)));
  scope->Spawn(Discard(WaitForFuture(std::move(future), &waiting, &resumed)));
  scope->Spawn(OwnsAScope(*loop, &inner, &outer));
  loop->RunUntil([] { return false; }, loop->Now() + absl::Milliseconds(5));
  EXPECT_EQ(scope->size(), 3u);
  EXPECT_FALSE(sleeping || waiting || inner || outer);
  // Spawned now, its start is still queued when the loop goes.
  bool never = false;
  scope->Spawn(SetFlag(&never));
  loop.reset();
  EXPECT_TRUE(sleeping);
  EXPECT_TRUE(waiting);
  EXPECT_TRUE(inner);
  EXPECT_TRUE(outer);
  EXPECT_FALSE(never);
  // The scope outlived its loop: it is detached and empty, and safe to use.
  EXPECT_TRUE(scope->empty());
  bool after = false;
  scope->Spawn(SetFlag(&after));
  EXPECT_TRUE(scope->empty());
  EXPECT_FALSE(after);
  scope.reset();
  // Fulfilling a promise whose waiter is gone (and whose loop is gone) is a
  // no-op: nobody is waiting, so nothing is posted.
  promise.Set(1);
  EXPECT_FALSE(resumed);
}

}  // namespace
}  // namespace moonpool::driver
