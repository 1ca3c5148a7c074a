// SimLoop as a Loop: virtual time, timers, posted work, turn ends, running,
// and the determinism of the trace.
#include "moonpool/chaos/sim_loop.h"

#include <chrono>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/loop.h"
#include "sim_test_util.h"

namespace moonpool::chaos {
namespace {

TEST(SimLoop, TimeJumpsToTheNextEventWithoutWaiting) {
  SimLoop sim;
  const absl::Time start = sim.Now();
  absl::Time fired_at;
  auto timer = sim.CreateTimer([&] { fired_at = sim.Now(); });
  timer->Start(start + absl::Hours(3));
  const auto wall = std::chrono::steady_clock::now();
  sim.Run();
  EXPECT_LT(std::chrono::steady_clock::now() - wall, std::chrono::seconds(2));
  EXPECT_EQ(fired_at, start + absl::Hours(3));
  EXPECT_EQ(sim.Now(), start + absl::Hours(3));
  EXPECT_FALSE(timer->active());
}

TEST(SimLoop, TimersFireInTimeOrderAndTiesInStartOrder) {
  SimLoop sim;
  std::vector<int> order;
  const absl::Time t0 = sim.Now();
  auto a = sim.CreateTimer([&] { order.push_back(1); });
  auto b = sim.CreateTimer([&] { order.push_back(2); });
  auto c = sim.CreateTimer([&] { order.push_back(3); });
  auto d = sim.CreateTimer([&] { order.push_back(4); });
  c->Start(t0 + absl::Milliseconds(5));
  a->Start(t0 + absl::Milliseconds(9));
  b->Start(t0 + absl::Milliseconds(5));
  d->Start(t0 + absl::Milliseconds(1));
  d->Stop();
  a->Start(t0 + absl::Milliseconds(2));  // re-arming moves it
  sim.Run();
  EXPECT_EQ(order, (std::vector<int>{1, 3, 2}));
}

TEST(SimLoop, TimerForNowFiresOnTheNextTurnNotInsideItsOwnCallback) {
  SimLoop sim;
  int fires = 0;
  std::unique_ptr<driver::Timer> t;
  t = sim.CreateTimer([&] {
    if (++fires < 3) t->Start(sim.Now());
  });
  t->Start(sim.Now() - absl::Seconds(1));  // in the past: next turn
  EXPECT_EQ(fires, 0);
  sim.Run();
  EXPECT_EQ(fires, 3);
}

TEST(SimLoop, TimerMayDestroyItselfInItsCallback) {
  SimLoop sim;
  std::unique_ptr<driver::Timer> t;
  bool fired = false;
  t = sim.CreateTimer([&] {
    fired = true;
    t.reset();
  });
  t->Start(sim.Now() + absl::Seconds(1));
  sim.Run();
  EXPECT_TRUE(fired);
  EXPECT_EQ(t, nullptr);
}

TEST(SimLoop, PostRunsLaterInOrderAndPostsFromPostsWaitForEvents) {
  SimLoop sim;
  std::vector<std::string> order;
  auto timer = sim.CreateTimer([&] { order.push_back("timer"); });
  sim.Post([&] {
    order.push_back("a");
    // Due now, but the event phase of this turn is over: next turn.
    timer->Start(sim.Now());
    sim.Post([&] { order.push_back("c"); });
  });
  sim.Post([&] { order.push_back("b"); });
  EXPECT_TRUE(order.empty());  // never inside the call that posted
  sim.Run();
  // "c", posted by posted work, runs only after the events of a later turn.
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "timer", "c"}));
}

struct CountingHandler : driver::TurnEndHandler {
  virtual ~CountingHandler() = default;
  void OnTurnEnd() override {
    ++runs;
    if (reschedule && runs < 2) loop->ScheduleTurnEnd(this);
  }
  driver::Loop* loop = nullptr;
  bool reschedule = false;
  int runs = 0;
};

TEST(SimLoop, TurnEndRunsAfterPostedWorkAndOncePerSchedule) {
  SimLoop sim;
  CountingHandler h;
  h.loop = &sim;
  h.reschedule = true;
  CountingHandler cancelled;
  int posted_runs_before_turn_end = -1;
  sim.Post([&] {
    sim.ScheduleTurnEnd(&h);
    sim.ScheduleTurnEnd(&cancelled);
    sim.CancelTurnEnd(&cancelled);
  });
  sim.Post([&] { posted_runs_before_turn_end = h.runs; });
  sim.Run();
  EXPECT_EQ(posted_runs_before_turn_end, 0);
  EXPECT_EQ(h.runs, 2);  // once, then again from inside OnTurnEnd
  EXPECT_EQ(cancelled.runs, 0);
}

TEST(SimLoop, RunUntilMovesTimeToTheDeadlineWhenNothingIsDue) {
  SimLoop sim;
  const absl::Time t0 = sim.Now();
  bool fired = false;
  auto timer = sim.CreateTimer([&] { fired = true; });
  timer->Start(t0 + absl::Seconds(30));
  EXPECT_FALSE(sim.RunUntil([] { return false; }, t0 + absl::Seconds(5)));
  EXPECT_EQ(sim.Now(), t0 + absl::Seconds(5));
  EXPECT_FALSE(fired);
  EXPECT_TRUE(sim.RunUntil([&] { return fired; }, t0 + absl::Seconds(60)));
  EXPECT_EQ(sim.Now(), t0 + absl::Seconds(30));
}

TEST(SimLoop, StopReturnsAfterTheCurrentTurn) {
  SimLoop sim;
  int fires = 0;
  std::unique_ptr<driver::Timer> t;
  t = sim.CreateTimer([&] {
    ++fires;
    t->Start(sim.Now() + absl::Seconds(1));
    if (fires == 4) sim.Stop();
  });
  t->Start(sim.Now());
  sim.Run();
  EXPECT_EQ(fires, 4);
  t.reset();
}

TEST(SimLoop, NowNeverReadsTheClockAndStartsAtTheOption) {
  const absl::Time start = absl::FromUnixSeconds(1234);
  SimLoop sim({.start = start});
  EXPECT_EQ(sim.Now(), start);
  sim.Run();
  EXPECT_EQ(sim.Now(), start);
}

TEST(SimLoop, HostsShareOneClockAndRandomSource) {
  SimLoop sim({.seed = 9});
  absl::StatusOr<SimHost*> b = sim.AddHost("10.0.0.2");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(sim.AddHost("10.0.0.2").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sim.AddHost("nonsense").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.FindHost("10.0.0.2"), *b);
  EXPECT_EQ((*b)->Addr(80).ToString(), "10.0.0.2:80");
  EXPECT_EQ(sim.default_host().address().HostString(), "10.0.0.1");
  absl::Time fired;
  auto t = (*b)->CreateTimer([&] { fired = sim.Now(); });
  t->Start((*b)->Now() + absl::Seconds(2));
  sim.Run();
  EXPECT_EQ(fired, sim.Now());
  SimRandom expected(9);
  EXPECT_EQ((*b)->Random(), expected.Next());
  EXPECT_EQ(sim.Random(), expected.Next());
}

// A small stream workload under a random fault plan; returns the trace hash.
uint64_t RunWorkload(uint64_t seed) {
  SimRandom plan_rng(seed);
  SimLoop sim({.seed = seed, .chaos = ChaosConfig::Random(plan_rng)});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto pair = testing::Connect(sim, sim.default_host(), b);
  if (pair->server != nullptr && pair->connected->ok()) {
    testing::WriteAll(*pair->client, testing::Pattern(50000), 1000);
    testing::WriteAll(*pair->server, testing::Pattern(30000, 7), 3000);
  }
  sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(30));
  EXPECT_TRUE(sim.CheckInvariants().ok()) << sim.CheckInvariants();
  const uint64_t h = sim.trace().hash();
  pair.reset();
  return h;
}

TEST(SimLoop, SameSeedGivesTheSameTraceHashAndOtherSeedsDiffer) {
  for (uint64_t seed : {1u, 2u, 3u, 77u}) {
    SCOPED_TRACE(seed);
    EXPECT_EQ(RunWorkload(seed), RunWorkload(seed));
  }
  EXPECT_NE(RunWorkload(1), RunWorkload(2));
  EXPECT_NE(RunWorkload(2), RunWorkload(3));
}

TEST(SimLoop, RandomFaultPlansKeepEveryOpenStreamIntact) {
  // RunWorkload checks CheckInvariants() itself; this sweeps the plans.
  for (uint64_t seed = 100; seed < 160; ++seed) {
    SCOPED_TRACE(seed);
    RunWorkload(seed);
  }
}

TEST(Trace, TailKeepsTheLastRecordsAndFullFindsTheDivergence) {
  Trace a({.tail_size = 3, .keep_full = true});
  Trace b({.tail_size = 3, .keep_full = true});
  for (int i = 0; i < 10; ++i) {
    a.Record(i, TraceKind::kUser, i);
    b.Record(i, TraceKind::kUser, i == 6 ? 99 : i);
  }
  EXPECT_NE(a.hash(), b.hash());
  std::vector<TraceEvent> tail = a.Tail();
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail[0].index, 7u);
  EXPECT_EQ(tail[2].index, 9u);
  EXPECT_EQ(FirstDivergence(a.full(), b.full()), 6);
  EXPECT_EQ(FirstDivergence(a.full(), a.full()), -1);
  EXPECT_NE(tail[0].ToString().find("user"), std::string::npos);
}

}  // namespace
}  // namespace moonpool::chaos
