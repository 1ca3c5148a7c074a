#include "moonpool/protocol/internal/pending_requests.h"

#include <algorithm>
#include <map>
#include <random>

#include "gtest/gtest.h"

namespace moonpool::protocol::internal {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(PendingRequests, ExpiresEarliestDeadlineFirst) {
  PendingRequests p;
  p.Add({CorrelationId(1), kT0 + absl::Seconds(3), 0, false});
  p.Add({CorrelationId(2), kT0 + absl::Seconds(1), 0, false});
  p.Add({CorrelationId(3), kT0 + absl::Seconds(2), 0, true});
  EXPECT_EQ(p.EarliestDeadline(), kT0 + absl::Seconds(1));
  EXPECT_FALSE(p.PopExpired(kT0).has_value());
  auto a = p.PopExpired(kT0 + absl::Seconds(2));
  auto b = p.PopExpired(kT0 + absl::Seconds(2));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->id, CorrelationId(2));
  EXPECT_EQ(b->id, CorrelationId(3));
  EXPECT_TRUE(b->idempotent);
  EXPECT_FALSE(p.PopExpired(kT0 + absl::Seconds(2)).has_value());
  EXPECT_EQ(p.size(), 1u);
}

TEST(PendingRequests, RemoveFromTheMiddleKeepsTheOrder) {
  // Against a std::multimap model, with random adds, removes and expiries.
  std::mt19937_64 rng(12345);
  PendingRequests p;
  std::map<uint64_t, absl::Time> model;
  uint64_t next_id = 1;
  absl::Time now = kT0;
  for (int step = 0; step < 20000; ++step) {
    const int action = rng() % 3;
    if (action == 0 || model.empty()) {
      const absl::Time deadline = now + absl::Milliseconds(rng() % 1000);
      p.Add({CorrelationId(next_id), deadline, 0, false});
      model[next_id++] = deadline;
    } else if (action == 1) {
      auto it = model.begin();
      std::advance(it, rng() % model.size());
      auto removed = p.Remove(CorrelationId(it->first));
      ASSERT_TRUE(removed.has_value());
      EXPECT_EQ(removed->deadline, it->second);
      model.erase(it);
      EXPECT_FALSE(p.Remove(CorrelationId(removed->id)).has_value());
    } else {
      now += absl::Milliseconds(rng() % 50);
      while (auto r = p.PopExpired(now)) {
        ASSERT_EQ(model.count(r->id.value()), 1u);
        EXPECT_LE(model[r->id.value()], now);
        model.erase(r->id.value());
      }
      for (const auto& [id, deadline] : model) ASSERT_GT(deadline, now);
    }
    ASSERT_EQ(p.size(), model.size());
    absl::Time earliest = absl::InfiniteFuture();
    for (const auto& [id, deadline] : model)
      earliest = std::min(earliest, deadline);
    ASSERT_EQ(p.EarliestDeadline(), earliest);
  }
  auto all = p.TakeAll();
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end(),
                             [](auto& a, auto& b) { return a.id < b.id; }));
  EXPECT_EQ(all.size(), model.size());
  EXPECT_TRUE(p.empty());
}

}  // namespace
}  // namespace moonpool::protocol::internal
