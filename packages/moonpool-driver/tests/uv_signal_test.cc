// UvLoop::WatchSignals with real signals: raise() to this process while a
// watch is alive (libuv's handler is installed then, so the default action
// never runs). Every test ends by destroying the loop, whose destructor
// asserts (Debug builds) that libuv closed with no handle left open.
#include <signal.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/signal_watch.h"
#include "moonpool/driver/uv_loop.h"

namespace moonpool::driver {
namespace {

using ::testing::ElementsAre;

// Generous: the machine running the tests may be busy.
constexpr absl::Duration kPatience = absl::Seconds(10);

std::unique_ptr<SignalWatch> WatchOrDie(UvLoop& loop, std::vector<int> signals,
                                        SignalCallback on_signal) {
  absl::StatusOr<std::unique_ptr<SignalWatch>> watch =
      loop.WatchSignals(signals, std::move(on_signal));
  EXPECT_TRUE(watch.ok()) << watch.status();
  return watch.ok() ? std::move(*watch) : nullptr;
}

// Runs turns until `done()` or for `d` of the loop's time at most.
template <typename F>
bool RunFor(UvLoop& loop, F done, absl::Duration d = kPatience) {
  return loop.RunUntil(done, loop.Now() + d);
}

TEST(UvLoopSignals, CallsBackFromTheLoopNotInsideRaise) {
  UvLoop loop;
  std::vector<int> seen;
  auto watch =
      WatchOrDie(loop, {SIGUSR1}, [&](int signum) { seen.push_back(signum); });
  ASSERT_NE(watch, nullptr);
  ASSERT_EQ(raise(SIGUSR1), 0);
  EXPECT_TRUE(seen.empty()) << "called back inside raise()";
  EXPECT_TRUE(RunFor(loop, [&] { return !seen.empty(); }));
  EXPECT_THAT(seen, ElementsAre(SIGUSR1));
}

TEST(UvLoopSignals, EachDeliveryIsOneCallEvenBeforeTheLoopWakes) {
  UvLoop loop;
  std::vector<int> seen;
  auto watch = WatchOrDie(loop, {SIGUSR1, SIGUSR2},
                          [&](int signum) { seen.push_back(signum); });
  ASSERT_NE(watch, nullptr);
  // Each raise() runs the handler before it returns, so none is merged.
  ASSERT_EQ(raise(SIGUSR2), 0);
  ASSERT_EQ(raise(SIGUSR1), 0);
  ASSERT_EQ(raise(SIGUSR1), 0);
  EXPECT_TRUE(RunFor(loop, [&] { return seen.size() == 3; }));
  EXPECT_THAT(seen, ElementsAre(SIGUSR2, SIGUSR1, SIGUSR1));
}

TEST(UvLoopSignals, DestroyedWatchNeverCallsBackEvenForASignalAlreadyCaught) {
  UvLoop loop;
  int calls = 0;
  auto watch = WatchOrDie(loop, {SIGUSR1}, [&](int) { ++calls; });
  ASSERT_NE(watch, nullptr);
  ASSERT_EQ(raise(SIGUSR1), 0);  // caught: waiting in libuv's pipe
  watch.reset();
  // A timer keeps the loop polling, so the pipe is read.
  auto timer = loop.CreateTimer([] {});
  timer->Start(loop.Now() + absl::Milliseconds(50));
  loop.Run();
  EXPECT_EQ(calls, 0);
}

TEST(UvLoopSignals, WatchDestroyedWithASignalPendingLetsTheLoopCloseClean) {
  // The loop's destructor must still close libuv cleanly (asserted in
  // Debug builds) when a signal caught for a destroyed watch was never read.
  int calls = 0;
  {
    UvLoop loop;
    auto watch = WatchOrDie(loop, {SIGUSR1}, [&](int) { ++calls; });
    ASSERT_NE(watch, nullptr);
    ASSERT_EQ(raise(SIGUSR1), 0);
    watch.reset();
  }
  EXPECT_EQ(calls, 0);
}

TEST(UvLoopSignals, EndingTheLastWatchRestoresTheDefaultAction) {
  UvLoop loop;
  auto watch = WatchOrDie(loop, {SIGUSR1}, [](int) {});
  ASSERT_NE(watch, nullptr);
  struct sigaction action;
  ASSERT_EQ(sigaction(SIGUSR1, nullptr, &action), 0);
  EXPECT_NE(action.sa_handler, SIG_DFL) << "libuv's handler while watched";
  watch.reset();
  ASSERT_EQ(sigaction(SIGUSR1, nullptr, &action), 0);
  EXPECT_EQ(action.sa_handler, SIG_DFL);
}

TEST(UvLoopSignals, CallbackMayDestroyItsOwnWatch) {
  UvLoop loop;
  int calls = 0;
  std::unique_ptr<SignalWatch> watch;
  watch = WatchOrDie(loop, {SIGUSR1}, [&](int) {
    ++calls;
    watch.reset();
  });
  ASSERT_NE(watch, nullptr);
  ASSERT_EQ(raise(SIGUSR1), 0);
  EXPECT_TRUE(RunFor(loop, [&] { return watch == nullptr; }));
  EXPECT_EQ(calls, 1);
}

TEST(UvLoopSignals, TwoWatchesOfOneSignalAreBothCalled) {
  UvLoop loop;
  int first = 0;
  int second = 0;
  auto a = WatchOrDie(loop, {SIGUSR1}, [&](int) { ++first; });
  auto b = WatchOrDie(loop, {SIGUSR1}, [&](int) { ++second; });
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(raise(SIGUSR1), 0);
  EXPECT_TRUE(RunFor(loop, [&] { return first == 1 && second == 1; }));
  // Ending one watch leaves the other (and libuv's handler) in place.
  a.reset();
  ASSERT_EQ(raise(SIGUSR1), 0);
  EXPECT_TRUE(RunFor(loop, [&] { return second == 2; }));
  EXPECT_EQ(first, 1);
}

TEST(UvLoopSignals, AWatchAloneDoesNotKeepRunGoing) {
  UvLoop loop;
  auto watch = WatchOrDie(loop, {SIGUSR1}, [](int) {});
  ASSERT_NE(watch, nullptr);
  const absl::Time start = loop.Now();
  loop.Run();  // returns at once: nothing else to wait for
  EXPECT_LT(loop.Now() - start, absl::Seconds(1));
}

TEST(UvLoopSignals, RejectsWhatCannotBeWatched) {
  UvLoop loop;
  int calls = 0;
  auto count = [&calls](int) { ++calls; };
  struct Case {
    std::vector<int> signals;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "empty"},
           {{SIGKILL}, "SIGKILL cannot be caught"},
           {{SIGSTOP}, "SIGSTOP cannot be caught"},
           {{0}, "zero"},
           {{NSIG + 5}, "out of range"},
           {{SIGUSR1, SIGUSR1}, "repeated"},
       }) {
    SCOPED_TRACE(c.why);
    absl::StatusOr<std::unique_ptr<SignalWatch>> watch =
        loop.WatchSignals(c.signals, count);
    EXPECT_EQ(watch.status().code(), absl::StatusCode::kInvalidArgument)
        << watch.status();
  }
  EXPECT_EQ(calls, 0);
}

TEST(UvLoopSignals, SignalsListsWhatIsWatchedInOrder) {
  UvLoop loop;
  auto watch = WatchOrDie(loop, {SIGTERM, SIGINT}, [](int) {});
  ASSERT_NE(watch, nullptr);
  EXPECT_THAT(watch->signals(), ElementsAre(SIGTERM, SIGINT));
}

}  // namespace
}  // namespace moonpool::driver
