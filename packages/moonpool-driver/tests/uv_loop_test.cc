// UvLoop without sockets: its clock, timers, posted work, the cross-thread
// post, RunUntil / Run / Stop, the seeded random source and a clean
// destruction. Every test ends by destroying the loop, whose destructor
// asserts (Debug builds) that libuv closed with no handle left open.
#include "moonpool/driver/uv_loop.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moonpool::driver {
namespace {

using ::testing::ElementsAre;

// Generous: the machine running the tests may be busy.
constexpr absl::Duration kPatience = absl::Seconds(10);

TEST(UvLoop, NowIsMonotonicAndFollowsTheClock) {
  UvLoop loop;
  const absl::Time start = loop.Now();
  EXPECT_LE(absl::AbsDuration(start - absl::Now()), absl::Seconds(1))
      << "Now() reads as the wall clock at construction";
  absl::Time last = start;
  bool monotonic = true;
  auto timer = loop.CreateTimer([] {});
  timer->Start(start + absl::Milliseconds(20));
  while (timer->active()) {
    loop.RunUntil([&] { return !timer->active(); }, loop.Now() + kPatience);
    monotonic = monotonic && loop.Now() >= last;
    last = loop.Now();
  }
  EXPECT_TRUE(monotonic);
  EXPECT_GE(loop.Now() - start, absl::Milliseconds(20));
}

TEST(UvLoop, NowStaysPutWithinOneCallback) {
  UvLoop loop;
  absl::Time first, second;
  loop.Post([&] {
    first = loop.Now();
    absl::SleepFor(absl::Milliseconds(5));
    second = loop.Now();
  });
  loop.Run();
  EXPECT_EQ(first, second);
  // The next turn sees the time that passed.
  absl::Time later;
  loop.Post([&] { later = loop.Now(); });
  loop.Run();
  EXPECT_GE(later - first, absl::Milliseconds(5));
}

TEST(UvLoop, NowHasSubMillisecondResolution) {
  UvLoop loop;
  // Over many turns some reading must fall between whole milliseconds.
  bool fractional = false;
  for (int i = 0; i < 50 && !fractional; ++i) {
    loop.Post([] {});
    loop.Run();
    const absl::Duration since_epoch = loop.Now() - absl::UnixEpoch();
    fractional = since_epoch % absl::Milliseconds(1) != absl::ZeroDuration();
  }
  EXPECT_TRUE(fractional);
}

TEST(UvLoop, TimersFireInTimeOrder) {
  UvLoop loop;
  std::vector<int> fired;
  const absl::Time t0 = loop.Now();
  auto a = loop.CreateTimer([&] { fired.push_back(30); });
  auto b = loop.CreateTimer([&] { fired.push_back(10); });
  auto c = loop.CreateTimer([&] { fired.push_back(20); });
  a->Start(t0 + absl::Milliseconds(30));
  b->Start(t0 + absl::Milliseconds(10));
  c->Start(t0 + absl::Milliseconds(20));
  EXPECT_TRUE(a->active());
  loop.Run();  // returns when no timer is left
  EXPECT_THAT(fired, ElementsAre(10, 20, 30));
  EXPECT_FALSE(a->active());
}

TEST(UvLoop, TimerNeverFiresBeforeItsTime) {
  UvLoop loop;
  // Odd sub-millisecond offsets exercise the rounding to libuv's
  // milliseconds.
  std::vector<absl::Time> when;
  std::vector<std::unique_ptr<Timer>> timers;
  int early = 0;
  int fired = 0;
  for (int i = 0; i < 20; ++i) {
    when.push_back(loop.Now() + absl::Microseconds(137 + 311 * i));
  }
  for (int i = 0; i < 20; ++i) {
    timers.push_back(loop.CreateTimer([&, i] {
      ++fired;
      if (loop.Now() < when[i]) ++early;
    }));
    timers.back()->Start(when[i]);
  }
  loop.Run();
  EXPECT_EQ(fired, 20);
  EXPECT_EQ(early, 0);
}

TEST(UvLoop, TimerRearmsFromItsOwnCallback) {
  UvLoop loop;
  int fired = 0;
  std::unique_ptr<Timer> timer;
  timer = loop.CreateTimer([&] {
    if (++fired < 3) timer->Start(loop.Now() + absl::Milliseconds(2));
  });
  timer->Start(loop.Now() + absl::Milliseconds(2));
  loop.Run();
  EXPECT_EQ(fired, 3);
}

TEST(UvLoop, StoppedTimerNeverFires) {
  UvLoop loop;
  bool fired = false;
  auto timer = loop.CreateTimer([&] { fired = true; });
  timer->Start(loop.Now() + absl::Milliseconds(5));
  timer->Stop();
  EXPECT_FALSE(timer->active());
  // A timer due now and stopped before its turn does not fire either.
  timer->Start(loop.Now() - absl::Seconds(1));
  timer->Stop();
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(30));
  EXPECT_FALSE(fired);
}

TEST(UvLoop, StartAgainMovesTheTimer) {
  UvLoop loop;
  int fired = 0;
  absl::Time fired_at;
  auto timer = loop.CreateTimer([&] {
    ++fired;
    fired_at = loop.Now();
  });
  const absl::Time t0 = loop.Now();
  timer->Start(t0 + absl::Seconds(30));
  timer->Start(t0 + absl::Milliseconds(5));
  loop.Run();
  EXPECT_EQ(fired, 1);
  EXPECT_GE(fired_at - t0, absl::Milliseconds(5));
  EXPECT_LT(fired_at - t0, absl::Seconds(30));
}

TEST(UvLoop, TimerStartedInThePastFiresOnNextTurnNotInsideStart) {
  UvLoop loop;
  bool fired = false;
  auto timer = loop.CreateTimer([&] { fired = true; });
  timer->Start(loop.Now() - absl::Seconds(1));
  EXPECT_FALSE(fired);
  EXPECT_TRUE(timer->active());
  timer->Start(absl::InfinitePast());
  EXPECT_FALSE(fired);
  loop.Run();
  EXPECT_TRUE(fired);
}

TEST(UvLoop, TimerRearmedForNowEachTimeDoesNotStarveTheLoop) {
  // libuv 1.44 would run a zero-delay timer restarted from its own callback
  // again in the same pass, forever. Here it fires once per turn, and
  // posted work (one per turn, reposting itself) interleaves with it.
  UvLoop loop;
  int turns = 0;
  std::vector<int> fire_turns;
  std::unique_ptr<Timer> timer;
  timer = loop.CreateTimer([&] {
    fire_turns.push_back(turns);
    if (fire_turns.size() < 5) timer->Start(loop.Now());
  });
  std::function<void()> tick = [&] {
    ++turns;
    if (turns < 20) loop.Post(tick);
  };
  loop.Post(tick);
  timer->Start(loop.Now());
  loop.Run();
  ASSERT_EQ(fire_turns.size(), 5u);
  for (size_t i = 1; i < fire_turns.size(); ++i) {
    EXPECT_GT(fire_turns[i], fire_turns[i - 1]) << i;
  }
}

TEST(UvLoop, TimerArmedForNeverIsActiveButDoesNotKeepRunGoing) {
  UvLoop loop;
  bool fired = false;
  auto timer = loop.CreateTimer([&] { fired = true; });
  timer->Start(absl::InfiniteFuture());
  EXPECT_TRUE(timer->active());
  const absl::Time t0 = absl::Now();
  loop.Run();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  EXPECT_FALSE(fired);
  EXPECT_TRUE(timer->active());
}

TEST(UvLoop, TimerMayDestroyItselfInItsCallback) {
  UvLoop loop;
  auto witness = std::make_shared<int>(0);
  std::unique_ptr<Timer> timer;
  int fired = 0;
  timer = loop.CreateTimer([&, witness] {
    ++fired;
    timer.reset();  // the running callback and its captures stay valid
    EXPECT_EQ(*witness, 0);
  });
  timer->Start(loop.Now());
  loop.Run();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(timer, nullptr);
  EXPECT_EQ(witness.use_count(), 1) << "the callback's captures were freed";
}

TEST(UvLoop, PostRunsInOrderAndNeverInsidePost) {
  UvLoop loop;
  std::vector<int> ran;
  for (int i = 0; i < 5; ++i) {
    loop.Post([&ran, i] { ran.push_back(i); });
  }
  EXPECT_TRUE(ran.empty());
  loop.Run();
  EXPECT_THAT(ran, ElementsAre(0, 1, 2, 3, 4));
}

// Work posted by posted work waits for the batch it was posted from (it runs
// after the loop polled for I/O once, in libuv's check phase), never inside
// it.
TEST(UvLoop, PostedWhileDrainingRunsAfterTheBatch) {
  UvLoop loop;
  std::vector<std::string> ran;
  loop.Post([&] {
    ran.push_back("a");
    loop.Post([&] { ran.push_back("b (posted by a)"); });
    EXPECT_THAT(ran, ElementsAre("a"));  // not inline
  });
  loop.Post([&] { ran.push_back("c"); });
  loop.Run();
  EXPECT_THAT(ran, ElementsAre("a", "c", "b (posted by a)"));
}

TEST(UvLoop, PostedWorkDoesNotLetTheLoopBlock) {
  UvLoop loop;
  // A far timer keeps the loop alive; posted work must still run at once,
  // not after the timer.
  auto far = loop.CreateTimer([] {});
  far->Start(loop.Now() + absl::Seconds(60));
  bool ran = false;
  loop.Post([&] { ran = true; });
  const absl::Time t0 = absl::Now();
  EXPECT_TRUE(loop.RunUntil([&] { return ran; }, loop.Now() + kPatience));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
}

TEST(UvLoop, RunUntilReturnsFalseAtTheDeadline) {
  UvLoop loop;
  auto far = loop.CreateTimer([] {});
  far->Start(loop.Now() + absl::Seconds(60));  // something to wait for
  const absl::Time t0 = loop.Now();
  const absl::Time deadline = t0 + absl::Milliseconds(50);
  EXPECT_FALSE(loop.RunUntil([] { return false; }, deadline));
  EXPECT_GE(loop.Now(), deadline);
  EXPECT_LT(loop.Now() - t0, absl::Seconds(5));
  EXPECT_TRUE(far->active());
}

TEST(UvLoop, RunUntilReturnsTrueOnceDone) {
  UvLoop loop;
  bool done = false;
  auto timer = loop.CreateTimer([&] { done = true; });
  timer->Start(loop.Now() + absl::Milliseconds(10));
  const absl::Time t0 = loop.Now();
  EXPECT_TRUE(loop.RunUntil([&] { return done; }, t0 + absl::Seconds(30)));
  EXPECT_LT(loop.Now() - t0, absl::Seconds(5));
}

TEST(UvLoop, RunUntilAlreadyDoneRunsNoTurn) {
  UvLoop loop;
  bool ran = false;
  loop.Post([&] { ran = true; });
  EXPECT_TRUE(loop.RunUntil([] { return true; }, loop.Now() + kPatience));
  EXPECT_FALSE(ran);
  loop.Run();
  EXPECT_TRUE(ran);
}

TEST(UvLoop, RunUntilReturnsWhenNothingIsLeftToWaitFor) {
  UvLoop loop;
  EXPECT_FALSE(loop.RunUntil([] { return false; }, absl::InfiniteFuture()));
}

TEST(UvLoop, StopEndsRunDespiteActiveTimers) {
  UvLoop loop;
  auto far = loop.CreateTimer([] {});
  far->Start(loop.Now() + absl::Seconds(60));
  auto stopper = loop.CreateTimer([&] { loop.Stop(); });
  stopper->Start(loop.Now() + absl::Milliseconds(5));
  loop.Run();
  EXPECT_TRUE(far->active());
  // Stop applied to that run only: the next one runs normally.
  bool ran = false;
  loop.Post([&] { ran = true; });
  EXPECT_TRUE(loop.RunUntil([&] { return ran; }, loop.Now() + kPatience));
}

TEST(UvLoop, PostFromAnyThreadRunsEverythingOnTheLoopThread) {
  UvLoop loop;
  constexpr int kPosts = 1000;
  int ran = 0;
  int wrong_thread = 0;
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::thread poster([&] {
    for (int i = 0; i < kPosts; ++i) {
      loop.PostFromAnyThread([&] {
        ++ran;
        if (std::this_thread::get_id() != loop_thread) ++wrong_thread;
      });
    }
  });
  EXPECT_TRUE(
      loop.RunUntil([&] { return ran == kPosts; }, loop.Now() + kPatience));
  poster.join();
  EXPECT_EQ(wrong_thread, 0);
}

TEST(UvLoop, PostFromAnyThreadWakesABlockedLoop) {
  UvLoop loop;
  auto far = loop.CreateTimer([] {});
  far->Start(loop.Now() + absl::Seconds(60));
  std::atomic<bool> ran = false;
  std::thread poster([&] {
    absl::SleepFor(absl::Milliseconds(20));
    loop.PostFromAnyThread([&] { ran = true; });
  });
  const absl::Time t0 = absl::Now();
  EXPECT_TRUE(
      loop.RunUntil([&] { return ran.load(); }, loop.Now() + kPatience));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  poster.join();
}

TEST(UvLoop, PostFromAnyThreadBeforeRunIsNotLost) {
  UvLoop loop;
  bool ran = false;
  std::thread poster([&] { loop.PostFromAnyThread([&] { ran = true; }); });
  poster.join();
  loop.Run();  // nothing else to wait for: it still runs what arrived
  EXPECT_TRUE(ran);
}

TEST(UvLoop, RandomIsReproducibleFromTheSeed) {
  UvLoop a(UvLoopOptions{.seed = 42});
  UvLoop b(UvLoopOptions{.seed = 42});
  UvLoop c(UvLoopOptions{.seed = 43});
  std::vector<uint64_t> from_a, from_b, from_c;
  for (int i = 0; i < 8; ++i) {
    from_a.push_back(a.Random());
    from_b.push_back(b.Random());
    from_c.push_back(c.Random());
  }
  EXPECT_EQ(from_a, from_b);
  EXPECT_NE(from_a, from_c);
}

TEST(UvLoop, UnseededLoopsDrawDifferentSeeds) {
  UvLoop a;
  UvLoop b;
  EXPECT_NE(a.Random(), b.Random());
}

TEST(UvLoop, DestructorDropsPendingPostsUnrunAndFreesThem) {
  auto witness = std::make_shared<int>(0);
  bool ran = false;
  {
    UvLoop loop;
    loop.Post([witness, &ran] { ran = true; });
    loop.PostFromAnyThread([witness, &ran] { ran = true; });
    EXPECT_EQ(witness.use_count(), 3);
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(witness.use_count(), 1);
}

TEST(UvLoop, DestructorClosesTimersOwnedByPendingPosts) {
  // A posted callback that owns a Timer: dropping it at destruction
  // destroys the Timer while the loop can still close its handle.
  auto loop = std::make_unique<UvLoop>();
  auto timer = loop->CreateTimer([] {});
  timer->Start(loop->Now() + absl::Seconds(60));
  loop->Post([t = std::move(timer)] {});
  loop.reset();  // ASan and the close assertion check the rest
}

TEST(UvLoop, DestructorAfterTimersClosedInTheLastTurnIsClean) {
  auto loop = std::make_unique<UvLoop>();
  auto timer = loop->CreateTimer([] {});
  timer->Start(loop->Now() + absl::Milliseconds(1));
  loop->Run();
  timer.reset();  // its close callback has not run yet
  loop.reset();
}

}  // namespace
}  // namespace moonpool::driver

namespace moonpool::driver {
namespace {

class RecordingTurnEnd final : public TurnEndHandler {
 public:
  explicit RecordingTurnEnd(std::vector<std::string>& log, std::string name)
      : log_(log), name_(std::move(name)) {}
  void OnTurnEnd() override { log_.push_back(name_); }

 private:
  std::vector<std::string>& log_;
  std::string name_;
};

TEST(UvLoopTurnEnd, RunsAfterTheTurnsPostedWorkAndBeforeTheNextTurn) {
  UvLoop loop;
  std::vector<std::string> log;
  RecordingTurnEnd a(log, "turn end a"), b(log, "turn end b");
  loop.Post([&] {
    log.push_back("post 1");
    loop.ScheduleTurnEnd(&a);
    loop.Post([&] { log.push_back("post 3 (next turn)"); });
  });
  loop.Post([&] {
    log.push_back("post 2");
    loop.ScheduleTurnEnd(&b);
  });
  loop.Run();
  EXPECT_EQ(log,
            (std::vector<std::string>{"post 1", "post 2", "turn end a",
                                      "turn end b", "post 3 (next turn)"}));
}

TEST(UvLoopTurnEnd, CancelledHandlerDoesNotRun) {
  UvLoop loop;
  std::vector<std::string> log;
  RecordingTurnEnd a(log, "a"), b(log, "b");
  loop.Post([&] {
    loop.ScheduleTurnEnd(&a);
    loop.ScheduleTurnEnd(&b);
    loop.CancelTurnEnd(&a);
  });
  loop.Run();
  EXPECT_EQ(log, (std::vector<std::string>{"b"}));
}

TEST(UvLoopTurnEnd, ScheduledFromInsideATurnEndRunsNextTurnWithoutBlocking) {
  UvLoop loop;
  int runs = 0;
  struct Again final : TurnEndHandler {
    UvLoop* loop;
    int* runs;
    void OnTurnEnd() override {
      if (++*runs < 3) loop->ScheduleTurnEnd(this);
    }
  } again;
  again.loop = &loop;
  again.runs = &runs;
  loop.Post([&] { loop.ScheduleTurnEnd(&again); });
  // A listener keeps the loop alive: without the idle kick the poll would
  // block forever and this would time out.
  auto listener = loop.Listen(Address::Loopback(0), {}, [](auto) {});
  ASSERT_TRUE(listener.ok());
  EXPECT_TRUE(
      loop.RunUntil([&] { return runs == 3; }, loop.Now() + absl::Seconds(5)));
}

}  // namespace
}  // namespace moonpool::driver
