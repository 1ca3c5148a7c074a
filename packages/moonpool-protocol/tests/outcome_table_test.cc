#include "moonpool/protocol/outcome_table.h"

#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moonpool::protocol {
namespace {

using Verdict = OutcomeTable::Verdict;
using ::testing::ElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1000);
constexpr size_t kOverhead = OutcomeTable::kRecordOverheadBytes;

CorrelationId Id(uint64_t v) { return CorrelationId(v); }

// Arrives with a deadline 10 s after kT0 from waiter 1.
Verdict ArriveAt(OutcomeTable& t, uint64_t client, uint64_t id,
                 absl::Time now = kT0) {
  return t.Arrive(client, Id(id), kT0 + absl::Seconds(10), 1, now).verdict;
}

// Arrives and completes with reply payload `bytes`.
void Ran(OutcomeTable& t, uint64_t client, uint64_t id,
         const std::string& bytes = "reply", absl::Time now = kT0) {
  ASSERT_EQ(ArriveAt(t, client, id, now), Verdict::kNew);
  EXPECT_TRUE(
      t.Complete(client, Id(id), absl::StatusCode::kOk, bytes, now).empty());
}

// Calls AdvanceTime every second from `from` to `to` inclusive.
void AdvanceEverySecond(OutcomeTable& t, absl::Time from, absl::Time to) {
  for (absl::Time now = from; now <= to; now += absl::Seconds(1)) {
    t.AdvanceTime(now);
  }
}

TEST(OutcomeTable, NewRequestIsNewAndRunning) {
  OutcomeTable t;
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kNew);
  EXPECT_EQ(t.stats().records, 1u);
  EXPECT_EQ(t.stats().running, 1u);
  EXPECT_EQ(t.stats().clients, 1u);
  EXPECT_EQ(t.stats().bytes, kOverhead);
  // The first arrival's waiter is not stored: no duplicates to answer.
  EXPECT_TRUE(t.Complete(7, Id(1), absl::StatusCode::kOk, "abc", kT0).empty());
  EXPECT_EQ(t.stats().running, 0u);
  EXPECT_EQ(t.stats().records, 1u);
  EXPECT_EQ(t.stats().bytes, kOverhead + 3);
}

TEST(OutcomeTable, DuplicateOfRunningWaitsAndIsReturnedAtComplete) {
  OutcomeTable t;
  const absl::Time d = kT0 + absl::Seconds(10);
  ASSERT_EQ(t.Arrive(7, Id(5), d, 100, kT0).verdict, Verdict::kNew);
  EXPECT_EQ(t.Arrive(7, Id(5), d, 200, kT0).verdict, Verdict::kRunning);
  EXPECT_EQ(t.Arrive(7, Id(5), d, 300, kT0).verdict, Verdict::kRunning);
  EXPECT_THAT(t.Complete(7, Id(5), absl::StatusCode::kOk, "r", kT0),
              ElementsAre(200, 300));
  // Its waiters were answered once: a second Complete returns nothing.
  EXPECT_TRUE(t.Complete(7, Id(5), absl::StatusCode::kOk, "r", kT0).empty());
  EXPECT_EQ(t.stats().duplicates_running, 2u);
  EXPECT_EQ(t.stats().recorded, 1u);
}

TEST(OutcomeTable, DuplicateOfCompletedGetsRecordedReply) {
  OutcomeTable t;
  Ran(t, 7, 1, "the reply");
  const auto a = t.Arrive(7, Id(1), kT0 + absl::Seconds(10), 2, kT0);
  EXPECT_EQ(a.verdict, Verdict::kCompleted);
  EXPECT_EQ(a.code, absl::StatusCode::kOk);
  EXPECT_EQ(a.bytes, "the reply");
  EXPECT_EQ(t.stats().duplicates_completed, 1u);
}

TEST(OutcomeTable, DuplicateOfCompletedGetsRecordedError) {
  OutcomeTable t;
  ASSERT_EQ(ArriveAt(t, 7, 1), Verdict::kNew);
  t.Complete(7, Id(1), absl::StatusCode::kNotFound, "no such key", kT0);
  const auto a = t.Arrive(7, Id(1), kT0 + absl::Seconds(10), 2, kT0);
  EXPECT_EQ(a.verdict, Verdict::kCompleted);
  EXPECT_EQ(a.code, absl::StatusCode::kNotFound);
  EXPECT_EQ(a.bytes, "no such key");
}

TEST(OutcomeTable, SettleDropsRecordsBelowMarkAndLaterDuplicateIsForgotten) {
  OutcomeTable t;
  Ran(t, 7, 1);
  Ran(t, 7, 2);
  Ran(t, 7, 3);
  t.Settle(7, Id(3), kT0);
  EXPECT_EQ(t.stats().settled, 2u);
  EXPECT_EQ(t.stats().records, 1u);
  EXPECT_EQ(ArriveAt(t, 7, 2), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 7, 3), Verdict::kCompleted);
  EXPECT_EQ(t.stats().forgotten_answers, 1u);
}

TEST(OutcomeTable, SettleMarkOnlyMovesUpAndInvalidMarkDoesNothing) {
  OutcomeTable t;
  Ran(t, 7, 1);
  Ran(t, 7, 2);
  t.Settle(7, Id(2), kT0);
  t.Settle(7, Id(1), kT0);  // lower: ignored
  t.Settle(7, CorrelationId(), kT0);
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 7, 2), Verdict::kCompleted);
}

TEST(OutcomeTable, SettleOfUnknownClientMakesNoEntry) {
  OutcomeTable t;
  t.Settle(9, Id(100), kT0);
  EXPECT_EQ(t.stats().clients, 0u);
  EXPECT_EQ(t.NextWakeup(), absl::InfiniteFuture());
}

TEST(OutcomeTable, SettleKeepsRunningRecordSoItsDuplicatesAreAnswered) {
  OutcomeTable t;
  const absl::Time d = kT0 + absl::Seconds(10);
  ASSERT_EQ(t.Arrive(7, Id(1), d, 100, kT0).verdict, Verdict::kNew);
  ASSERT_EQ(t.Arrive(7, Id(1), d, 200, kT0).verdict, Verdict::kRunning);
  t.Settle(7, Id(2), kT0);  // a client settling what it has no answer for
  EXPECT_EQ(t.stats().records, 1u);
  EXPECT_THAT(t.Complete(7, Id(1), absl::StatusCode::kOk, "r", kT0),
              ElementsAre(200));
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.stats().settled, 1u);
  EXPECT_EQ(t.stats().recorded, 0u);
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kForgotten);
}

TEST(OutcomeTable, CountBoundPerClientForgetsOldestCompletedFirst) {
  OutcomeTable t({.max_records_per_client = 3});
  Ran(t, 7, 1);
  Ran(t, 7, 2);
  Ran(t, 7, 3);
  Ran(t, 7, 4);  // its arrival makes 4 records: id 1 goes
  EXPECT_EQ(t.stats().records, 3u);
  EXPECT_EQ(t.stats().forgotten_by_bound, 1u);
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 7, 2), Verdict::kCompleted);
  EXPECT_EQ(ArriveAt(t, 7, 4), Verdict::kCompleted);
}

TEST(OutcomeTable, ByteBoundPerClientForgetsOldestCompletedFirst) {
  OutcomeTable t({.max_bytes_per_client = 3 * kOverhead + 250});
  Ran(t, 7, 1, std::string(100, 'a'));
  Ran(t, 7, 2, std::string(100, 'b'));
  EXPECT_EQ(t.stats().forgotten_by_bound, 0u);
  Ran(t, 7, 3, std::string(100, 'c'));  // 300 bytes > 250 at completion
  EXPECT_EQ(t.stats().forgotten_by_bound, 1u);
  EXPECT_EQ(t.stats().bytes, 2 * kOverhead + 200);
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kForgotten);
  const auto a = t.Arrive(7, Id(2), kT0 + absl::Seconds(10), 1, kT0);
  EXPECT_EQ(a.verdict, Verdict::kCompleted);
  EXPECT_EQ(a.bytes, std::string(100, 'b'));
}

TEST(OutcomeTable, RecordTooLargeForByteBoundIsForgottenButAnswersWaiters) {
  OutcomeTable t({.max_bytes_per_client = 2 * kOverhead});
  const absl::Time d = kT0 + absl::Seconds(10);
  ASSERT_EQ(t.Arrive(7, Id(1), d, 100, kT0).verdict, Verdict::kNew);
  ASSERT_EQ(t.Arrive(7, Id(1), d, 200, kT0).verdict, Verdict::kRunning);
  EXPECT_THAT(
      t.Complete(7, Id(1), absl::StatusCode::kOk, std::string(1000, 'x'), kT0),
      ElementsAre(200));
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.stats().bytes, 0u);
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kForgotten);
}

TEST(OutcomeTable, TotalBoundTakesFromLargestClient) {
  OutcomeTable t({.max_records = 5});
  Ran(t, 1, 1);
  Ran(t, 2, 1);
  Ran(t, 2, 2);
  Ran(t, 2, 3);
  Ran(t, 1, 2);
  Ran(t, 1, 3);  // its arrival makes 6 records
  // Both hold 3: the tie goes to the lowest incarnation, client 1.
  EXPECT_EQ(t.stats().forgotten_by_bound, 1u);
  EXPECT_EQ(ArriveAt(t, 1, 1), Verdict::kForgotten);
  Ran(t, 3, 1);  // client 2 now holds the most (3 against 2)
  EXPECT_EQ(t.stats().forgotten_by_bound, 2u);
  EXPECT_EQ(ArriveAt(t, 2, 1), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 2, 2), Verdict::kCompleted);
  EXPECT_EQ(ArriveAt(t, 1, 2), Verdict::kCompleted);
  EXPECT_EQ(ArriveAt(t, 3, 1), Verdict::kCompleted);
}

TEST(OutcomeTable, TotalByteBoundTakesFromClientWithMostBytes) {
  OutcomeTable t({.max_bytes = 4 * kOverhead + 1030});
  Ran(t, 1, 1, std::string(10, 'a'));
  Ran(t, 1, 2, std::string(10, 'a'));
  Ran(t, 1, 3, std::string(10, 'a'));  // client 1: most records, few bytes
  Ran(t, 2, 1, std::string(990, 'b'));
  EXPECT_EQ(t.stats().forgotten_by_bound, 0u);
  Ran(t, 2, 2, std::string(10, 'b'));  // over the byte bound
  EXPECT_EQ(t.stats().forgotten_by_bound, 1u);
  EXPECT_EQ(ArriveAt(t, 2, 1), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 1, 1), Verdict::kCompleted);
}

TEST(OutcomeTable, RunningRecordsAreNeverDroppedByBound) {
  OutcomeTable t({.max_records_per_client = 2, .max_records = 3});
  for (uint64_t id = 1; id <= 5; ++id) {
    ASSERT_EQ(ArriveAt(t, 7, id), Verdict::kNew);
  }
  EXPECT_EQ(t.stats().records, 5u);
  EXPECT_EQ(t.stats().forgotten_by_bound, 0u);
  // Completing one makes it the only candidate, and it goes at once.
  t.Complete(7, Id(3), absl::StatusCode::kOk, "r", kT0);
  EXPECT_EQ(t.stats().forgotten_by_bound, 1u);
  EXPECT_EQ(t.stats().records, 4u);
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kRunning);
  EXPECT_EQ(ArriveAt(t, 7, 3), Verdict::kForgotten);
}

TEST(OutcomeTable, IdAtOrBelowForgottenMarkIsForgotten) {
  OutcomeTable t({.max_records_per_client = 1});
  ASSERT_EQ(ArriveAt(t, 7, 2), Verdict::kNew);  // 1 not seen yet
  t.Complete(7, Id(2), absl::StatusCode::kOk, "r", kT0);
  Ran(t, 7, 4);  // id 2 forgotten: the mark is 2
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kForgotten);  // maybe ran: never run
  EXPECT_EQ(ArriveAt(t, 7, 2), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 7, 3), Verdict::kNew);  // above the mark
}

TEST(OutcomeTable, RecordLivesUntilDeadlineAndMinLifetime) {
  OutcomeTable t;  // min_lifetime 60 s, a sweep every 15 s
  // Deadline later than completion + min_lifetime: lives to the deadline.
  ASSERT_EQ(t.Arrive(1, Id(1), kT0 + absl::Seconds(100), 1, kT0).verdict,
            Verdict::kNew);
  t.Complete(1, Id(1), absl::StatusCode::kOk, "r", kT0 + absl::Seconds(1));
  // Deadline earlier: lives min_lifetime after completion.
  ASSERT_EQ(t.Arrive(2, Id(1), kT0 + absl::Seconds(5), 1, kT0).verdict,
            Verdict::kNew);
  t.Complete(2, Id(1), absl::StatusCode::kOk, "r", kT0 + absl::Seconds(1));
  AdvanceEverySecond(t, kT0, kT0 + absl::Seconds(60));
  EXPECT_EQ(t.stats().records, 2u);
  AdvanceEverySecond(t, kT0 + absl::Seconds(61), kT0 + absl::Seconds(99));
  EXPECT_EQ(t.stats().records, 1u);
  EXPECT_EQ(t.stats().forgotten_by_time, 1u);
  AdvanceEverySecond(t, kT0 + absl::Seconds(100), kT0 + absl::Seconds(120));
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.stats().forgotten_by_time, 2u);
  // Past their deadlines and min_lifetime, the empty entries go too.
  EXPECT_EQ(t.stats().clients, 0u);
}

TEST(OutcomeTable, SweepRunsAtMostEveryQuarterOfMinLifetime) {
  OutcomeTable t({.min_lifetime = absl::Seconds(40)});
  EXPECT_EQ(t.NextWakeup(), absl::InfiniteFuture());
  ASSERT_EQ(ArriveAt(t, 1, 1), Verdict::kNew);
  EXPECT_EQ(t.NextWakeup(), kT0 + absl::Seconds(10));
  t.AdvanceTime(kT0 + absl::Seconds(12));
  EXPECT_EQ(t.NextWakeup(), kT0 + absl::Seconds(22));
}

TEST(OutcomeTable, RunningRecordNeverAnsweredExpires) {
  OutcomeTable t;
  // With a deadline: min_lifetime after it. Without: after its arrival.
  ASSERT_EQ(t.Arrive(1, Id(1), kT0 + absl::Seconds(30), 1, kT0).verdict,
            Verdict::kNew);
  ASSERT_EQ(t.Arrive(2, Id(1), absl::InfiniteFuture(), 1, kT0).verdict,
            Verdict::kNew);
  AdvanceEverySecond(t, kT0, kT0 + absl::Seconds(59));
  EXPECT_EQ(t.stats().running, 2u);
  AdvanceEverySecond(t, kT0 + absl::Seconds(60), kT0 + absl::Seconds(89));
  EXPECT_EQ(t.stats().running, 1u);
  AdvanceEverySecond(t, kT0 + absl::Seconds(90), kT0 + absl::Seconds(120));
  EXPECT_EQ(t.stats().running, 0u);
  EXPECT_EQ(t.stats().forgotten_by_time, 2u);
  // A late completion records nothing.
  EXPECT_TRUE(
      t.Complete(1, Id(1), absl::StatusCode::kOk, "r", kT0 + absl::Seconds(120))
          .empty());
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.stats().recorded, 0u);
}

TEST(OutcomeTable, AbandonLetsResendRunAgain) {
  OutcomeTable t;
  const absl::Time d = kT0 + absl::Seconds(10);
  ASSERT_EQ(t.Arrive(7, Id(1), d, 100, kT0).verdict, Verdict::kNew);
  ASSERT_EQ(t.Arrive(7, Id(1), d, 200, kT0).verdict, Verdict::kRunning);
  EXPECT_EQ(t.Abandon(7, Id(1)), std::vector<uint64_t>{200});
  EXPECT_EQ(t.stats().abandoned, 1u);
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.Arrive(7, Id(1), d, 300, kT0).verdict, Verdict::kNew);
  // The dropped waiter (200) is not returned.
  EXPECT_TRUE(t.Complete(7, Id(1), absl::StatusCode::kOk, "r", kT0).empty());
  EXPECT_TRUE(t.Abandon(7, Id(1)).empty());  // completed: left alone
  EXPECT_EQ(ArriveAt(t, 7, 1), Verdict::kCompleted);
}

TEST(OutcomeTable, ClientEntryGoesAfterDeadlineWhenEmpty) {
  OutcomeTable t({.min_lifetime = absl::Seconds(4)});
  ASSERT_EQ(t.Arrive(7, Id(1), kT0 + absl::Seconds(20), 1, kT0).verdict,
            Verdict::kNew);
  t.Complete(7, Id(1), absl::StatusCode::kOk, "r", kT0);
  t.Settle(7, Id(2), kT0 + absl::Seconds(1));
  EXPECT_EQ(t.stats().records, 0u);
  AdvanceEverySecond(t, kT0, kT0 + absl::Seconds(19));
  EXPECT_EQ(t.stats().clients, 1u);  // its marks may still be needed
  EXPECT_EQ(ArriveAt(t, 7, 1, kT0 + absl::Seconds(19)), Verdict::kForgotten);
  AdvanceEverySecond(t, kT0 + absl::Seconds(20), kT0 + absl::Seconds(25));
  EXPECT_EQ(t.stats().clients, 0u);
  EXPECT_EQ(t.NextWakeup(), absl::InfiniteFuture());
}

TEST(OutcomeTable, MaxClientsRefusesNewClient) {
  OutcomeTable t({.max_clients = 2});
  ASSERT_EQ(ArriveAt(t, 1, 1), Verdict::kNew);
  ASSERT_EQ(ArriveAt(t, 2, 1), Verdict::kNew);
  EXPECT_EQ(ArriveAt(t, 3, 1), Verdict::kRefused);
  EXPECT_EQ(t.stats().clients_refused, 1u);
  EXPECT_EQ(t.stats().clients, 2u);
  EXPECT_EQ(t.stats().records, 2u);
  EXPECT_EQ(ArriveAt(t, 1, 2), Verdict::kNew);  // known clients still served
}

TEST(OutcomeTable, ClientsAreIndependent) {
  OutcomeTable t({.max_records_per_client = 2});
  Ran(t, 1, 1, "one");
  Ran(t, 2, 1, "two");
  t.Settle(1, Id(2), kT0);
  Ran(t, 2, 2);
  Ran(t, 2, 3);  // client 2's bound forgets its id 1
  EXPECT_EQ(ArriveAt(t, 1, 1), Verdict::kForgotten);
  EXPECT_EQ(ArriveAt(t, 2, 1), Verdict::kForgotten);
  Ran(t, 3, 1, "three");
  const auto a = t.Arrive(3, Id(1), kT0 + absl::Seconds(1), 1, kT0);
  EXPECT_EQ(a.verdict, Verdict::kCompleted);
  EXPECT_EQ(a.bytes, "three");
  EXPECT_EQ(ArriveAt(t, 1, 2), Verdict::kNew);
}

TEST(OutcomeTable, CompleteOfGoneRecordRecordsNothing) {
  OutcomeTable t;
  EXPECT_TRUE(t.Complete(7, Id(1), absl::StatusCode::kOk, "r", kT0).empty());
  ASSERT_EQ(ArriveAt(t, 7, 1), Verdict::kNew);
  t.Abandon(7, Id(1));
  EXPECT_TRUE(t.Complete(7, Id(1), absl::StatusCode::kOk, "r", kT0).empty());
  EXPECT_EQ(t.stats().recorded, 0u);
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.stats().bytes, 0u);
}

TEST(OutcomeTable, StatsCountEachCase) {
  OutcomeTable t({.max_records_per_client = 2,
                  .max_clients = 1,
                  .min_lifetime = absl::Seconds(4)});
  const absl::Time d = kT0 + absl::Seconds(1);
  EXPECT_EQ(t.Arrive(1, Id(1), d, 1, kT0).verdict, Verdict::kNew);
  EXPECT_EQ(t.Arrive(1, Id(1), d, 2, kT0).verdict, Verdict::kRunning);
  t.Complete(1, Id(1), absl::StatusCode::kOk, "r", kT0);
  EXPECT_EQ(t.Arrive(1, Id(1), d, 3, kT0).verdict, Verdict::kCompleted);
  Ran(t, 1, 2);
  Ran(t, 1, 3);  // forgets 1 by bound
  EXPECT_EQ(t.Arrive(1, Id(1), d, 4, kT0).verdict, Verdict::kForgotten);
  t.Settle(1, Id(3), kT0);  // settles 2
  EXPECT_EQ(t.Arrive(1, Id(4), d, 5, kT0).verdict, Verdict::kNew);
  t.Abandon(1, Id(4));
  EXPECT_EQ(t.Arrive(2, Id(1), d, 6, kT0).verdict, Verdict::kRefused);
  EXPECT_EQ(t.Arrive(1, Id(5), d, 7, kT0).verdict, Verdict::kNew);
  const OutcomeTableStats s0 = t.stats();
  EXPECT_EQ(s0.recorded, 3u);
  EXPECT_EQ(s0.duplicates_running, 1u);
  EXPECT_EQ(s0.duplicates_completed, 1u);
  EXPECT_EQ(s0.forgotten_answers, 1u);
  EXPECT_EQ(s0.forgotten_by_bound, 1u);
  EXPECT_EQ(s0.settled, 1u);
  EXPECT_EQ(s0.abandoned, 1u);
  EXPECT_EQ(s0.clients_refused, 1u);
  EXPECT_EQ(s0.forgotten_by_time, 0u);
  EXPECT_EQ(s0.records, 2u);  // 3 completed, 5 running
  EXPECT_EQ(s0.running, 1u);
  EXPECT_EQ(s0.bytes, 2 * kOverhead + 5);
  EXPECT_EQ(s0.clients, 1u);
  AdvanceEverySecond(t, kT0, kT0 + absl::Seconds(10));
  EXPECT_EQ(t.stats().forgotten_by_time, 2u);
  EXPECT_EQ(t.stats().records, 0u);
  EXPECT_EQ(t.stats().running, 0u);
  EXPECT_EQ(t.stats().bytes, 0u);
  EXPECT_EQ(t.stats().clients, 0u);
}

// Random operations from clients that behave like ClientRequestIds (resend
// only before the deadline, settle only what they were answered), against a
// std::map model: a request is never kNew twice unless abandoned in between,
// a recorded outcome is the one completed, and Complete returns exactly the
// duplicates that waited.
TEST(OutcomeTable, RandomOperationsNeverRunARequestTwice) {
  struct Request {
    absl::Time deadline;
    bool running = false;  // kNew given, not completed nor abandoned
    bool completed = false;
    bool given_up = false;  // refused, forgotten, abandoned: no resend
    std::string outcome;
    absl::StatusCode code = absl::StatusCode::kOk;
    std::vector<uint64_t> waiters;
  };
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    OutcomeTable t({.max_records_per_client = 6,
                    .max_bytes_per_client = 6 * kOverhead + 40,
                    .max_records = 12,
                    .max_clients = 3,
                    .min_lifetime = absl::Seconds(8)});
    std::map<std::pair<uint64_t, uint64_t>, Request> model;
    std::map<uint64_t, uint64_t> next_id;
    absl::Time now = kT0;
    uint64_t next_waiter = 1;
    uint64_t news = 0;
    uint64_t completions = 0;
    auto pick = [&](auto pred) -> Request* {
      std::vector<std::pair<const std::pair<uint64_t, uint64_t>, Request>*> v;
      for (auto& e : model) {
        if (pred(e.second)) v.push_back(&e);
      }
      if (v.empty()) return nullptr;
      auto* e = v[rng() % v.size()];
      return &e->second;
    };
    auto key_of = [&](Request* r) {
      for (auto& e : model) {
        if (&e.second == r) return e.first;
      }
      return std::pair<uint64_t, uint64_t>{};
    };
    for (int step = 0; step < 3000; ++step) {
      const uint64_t client = 1 + rng() % 4;
      const int action = rng() % 10;
      if (action <= 2) {  // a new request
        const uint64_t id = ++next_id[client];
        Request& r = model[{client, id}];
        r.deadline = now + absl::Milliseconds(500 + rng() % 15000);
        const auto a = t.Arrive(client, Id(id), r.deadline, next_waiter++, now);
        ASSERT_TRUE(a.verdict == Verdict::kNew ||
                    a.verdict == Verdict::kRefused);
        if (a.verdict == Verdict::kNew) {
          r.running = true;
          ++news;
        } else {
          r.given_up = true;
        }
      } else if (action <= 4) {  // a resend, before its deadline
        Request* r = pick(
            [&](const Request& q) { return !q.given_up && q.deadline > now; });
        if (r == nullptr) continue;
        const auto [c, id] = key_of(r);
        const uint64_t w = next_waiter++;
        const auto a = t.Arrive(c, Id(id), r->deadline, w, now);
        switch (a.verdict) {
          case Verdict::kNew:
            ASSERT_FALSE(r->running) << "ran twice: " << c << " " << id;
            ASSERT_FALSE(r->completed) << "ran twice: " << c << " " << id;
            r->running = true;
            ++news;
            break;
          case Verdict::kRunning:
            ASSERT_TRUE(r->running);
            r->waiters.push_back(w);
            break;
          case Verdict::kCompleted:
            ASSERT_TRUE(r->completed);
            EXPECT_EQ(a.code, r->code);
            EXPECT_EQ(a.bytes, r->outcome);
            break;
          case Verdict::kForgotten:
          case Verdict::kRefused:
            r->given_up = true;
            break;
        }
      } else if (action <= 6) {  // a handler finishes
        Request* r = pick([](const Request& q) { return q.running; });
        if (r == nullptr) continue;
        const auto [c, id] = key_of(r);
        r->running = false;
        r->completed = true;
        r->code = rng() % 4 == 0 ? absl::StatusCode::kInternal
                                 : absl::StatusCode::kOk;
        r->outcome = std::string(rng() % 30, static_cast<char>('a' + id % 26));
        const auto waiters = t.Complete(c, Id(id), r->code, r->outcome, now);
        if (!waiters.empty()) {
          EXPECT_EQ(waiters, r->waiters);
        }
        r->waiters.clear();
        ++completions;
      } else if (action == 7) {  // dropped before a handler took it
        Request* r = pick([](const Request& q) { return q.running; });
        if (r == nullptr) continue;
        const auto [c, id] = key_of(r);
        t.Abandon(c, Id(id));
        r->running = false;
        r->waiters.clear();
      } else if (action == 8) {  // answeredBelow: what it was answered
        uint64_t below = next_id[client] + 1;
        for (auto& [k, r] : model) {
          if (k.first == client && !r.completed && !r.given_up) {
            below = std::min(below, k.second);
          }
        }
        for (auto& [k, r] : model) {
          if (k.first == client && k.second < below) r.given_up = true;
        }
        t.Settle(client, Id(below), now);
      } else {
        now += absl::Milliseconds(rng() % 3000);
        t.AdvanceTime(now);
      }
      const OutcomeTableStats& s = t.stats();
      ASSERT_LE(s.running, s.records);
      ASSERT_LE(s.clients, 3u);
      ASSERT_GE(s.bytes, s.records * kOverhead);
    }
    EXPECT_GT(news, 100u);
    EXPECT_GT(completions, 100u);
    EXPECT_GT(t.stats().duplicates_completed, 0u);
    EXPECT_GT(t.stats().duplicates_running, 0u);
    EXPECT_GT(t.stats().forgotten_by_bound, 0u);
    EXPECT_GT(t.stats().forgotten_by_time, 0u);
  }
}

}  // namespace
}  // namespace moonpool::protocol
