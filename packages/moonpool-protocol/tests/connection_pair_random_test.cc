// A client and a server Connection back to back in memory, driven by a seed:
// random byte splits and partial writes, random delays, random interleavings
// of requests, replies, error replies, goodbyes and resets. Properties, for
// every seed: every request sent has exactly one outcome, no reply reaches
// the wrong request, every request the server sees is the one that was sent
// under its id, a request failed as safe to retry (not sent, not processed)
// never reached the server, and each side ends with exactly one Closed, last.
// The same properties hold with every Buggify site of the protocol firing on
// every evaluation, and with them firing at random (buggify.h): a site only
// picks among legal paths.
//
// Reproduce one seed: MOONPOOL_SEED=<seed> moonpool_protocol_test
//   --gtest_filter='ConnectionPairRandom.<test>'
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/buggify.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::protocol::testing {
namespace {

// Bytes written by one side and not yet read by the other.
struct Link {
  std::string bytes;

  void TakeFrom(Connection& c, size_t max) {
    absl::Span<const char> out = c.PendingOutput();
    const size_t n = std::min(out.size(), max);
    bytes.append(out.data(), n);
    c.ConsumeOutput(n);
  }
  // Straight into the connection's buffer, as a driver does: as many reads
  // as the spans it offers take.
  void DeliverTo(Connection& c, size_t max, absl::Time now) {
    const size_t n = std::min(bytes.size(), max);
    size_t done = 0;
    while (done < n) {
      absl::Span<char> room = c.PrepareReceive(n - done);
      ASSERT_FALSE(room.empty());
      const size_t k = std::min(room.size(), n - done);
      std::memcpy(room.data(), bytes.data() + done, k);
      c.CommitReceive(k, now);
      done += k;
    }
    bytes.erase(0, n);
  }
};

// How often each kind of outcome happened across all seeds: the sweep must
// reach every one, or it tests less than it claims.
struct Coverage {
  int replies = 0, error_replies = 0, deadline_exceeded = 0, not_sent = 0,
      maybe_delivered = 0, not_processed = 0, graceful_closes = 0, resets = 0,
      pings = 0;
  // Buggify evaluations and firings, by index in kBuggifySites; and any
  // site asked that the list lacks.
  std::vector<uint64_t> evaluated =
      std::vector<uint64_t>(std::size(kBuggifySites));
  std::vector<uint64_t> fired = std::vector<uint64_t>(std::size(kBuggifySites));
  std::set<std::string> unlisted;
};

enum class BuggifyMode { kOff, kAlways, kRandom };

// The decision function of one side: counts into `coverage`.
BuggifyFn MakeBuggify(BuggifyMode mode, uint64_t seed, Coverage& coverage) {
  if (mode == BuggifyMode::kOff) return nullptr;
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [mode, rng, &coverage](absl::string_view site) {
    const bool fire = mode == BuggifyMode::kAlways || (*rng)() % 2 == 0;
    const auto* it =
        std::find(std::begin(kBuggifySites), std::end(kBuggifySites), site);
    if (it == std::end(kBuggifySites)) {
      coverage.unlisted.insert(std::string(site));
      return fire;
    }
    const size_t i = static_cast<size_t>(it - std::begin(kBuggifySites));
    ++coverage.evaluated[i];
    coverage.fired[i] += fire;
    return fire;
  };
}

ConnectionOptions WithBuggify(ConnectionOptions o, BuggifyFn fn) {
  o.buggify = std::move(fn);
  return o;
}

class RandomRun {
 public:
  RandomRun(uint64_t seed, Coverage& coverage,
            BuggifyMode buggify = BuggifyMode::kOff)
      : coverage_(coverage),
        seed_(seed),
        rng_(seed),
        client_(
            WithBuggify(ClientOptions(), MakeBuggify(buggify, ~seed, coverage)),
            now_),
        server_(WithBuggify(ServerOptions(),
                            MakeBuggify(buggify, seed * 3, coverage)),
                now_) {}

  void Go() {
    const int steps = 100 + static_cast<int>(rng_() % 400);
    for (int i = 0; i < steps && !closed_; ++i) Step();
    Quiet();
    Check();
  }

 private:
  size_t Random(size_t n) { return rng_() % n; }
  bool Chance(double p) {
    return std::uniform_real_distribution<double>(0, 1)(rng_) < p;
  }
  size_t Piece() {
    // Mostly small, sometimes everything.
    return Chance(0.2) ? SIZE_MAX : 1 + Random(Chance(0.5) ? 16 : 400);
  }

  void Step() {
    switch (Random(12)) {
      case 0:
      case 1:
      case 2:
        SendRequest();
        break;
      case 3:
      case 4:
        Answer();
        break;
      case 5:
        c2s_.TakeFrom(client_, Piece());
        break;
      case 6:
        s2c_.TakeFrom(server_, Piece());
        break;
      case 7:
      case 8:
        c2s_.DeliverTo(server_, Piece(), now_);
        DrainServer();
        break;
      case 9:
      case 10:
        s2c_.DeliverTo(client_, Piece(), now_);
        DrainClient();
        break;
      default:
        if (Chance(0.3)) {
          // To the earliest wakeup either side asks for, as a driver would.
          const absl::Time wake =
              std::min(client_.NextWakeup(), server_.NextWakeup());
          if (wake != absl::InfiniteFuture()) now_ = std::max(now_, wake);
        } else {
          now_ += absl::Milliseconds(Random(Chance(0.1) ? 3000 : 300));
        }
        client_.AdvanceTime(now_);
        server_.AdvanceTime(now_);
        DrainClient();
        DrainServer();
        if (Chance(0.02)) {
          (void)(Chance(0.5) ? server_.SendGoodbye("random goodbye")
                             : client_.SendGoodbye("random goodbye"));
        }
        if (Chance(0.01)) Reset();
    }
  }

  void SendRequest() {
    RequestOptions options;
    options.deadline = now_ + absl::Milliseconds(1 + Random(3000));
    options.idempotent = Chance(0.5);
    const std::string payload =
        absl::StrCat("req:", seed_, ":", ++request_counter_, ":",
                     std::string(Random(64), 'p'));
    absl::StatusOr<CorrelationId> id =
        client_.SendRequest(payload, options, now_);
    if (id.ok()) {
      ASSERT_EQ(sent_.count(id->value()), 0u) << "id reused: " << *id;
      sent_[id->value()] = payload;
    }
  }

  void Answer() {
    if (awaiting_.empty()) return;
    const size_t i = Random(awaiting_.size());
    const auto [id, payload] = awaiting_[i];
    absl::Status s =
        Chance(0.2)
            ? server_.SendErrorReply(id, absl::NotFoundError("err:" + payload))
            : server_.SendReply(id, "rep:" + payload);
    if (s.code() == absl::StatusCode::kResourceExhausted) return;  // later
    awaiting_.erase(awaiting_.begin() + i);
  }

  void Reset() {
    ++coverage_.resets;
    client_.OnTransportClosed(absl::UnavailableError("reset"), now_);
    server_.OnTransportClosed(absl::UnavailableError("reset"), now_);
    DrainClient();
    DrainServer();
  }

  void DrainServer() {
    for (Recorded& r : Drain(server_)) {
      ASSERT_FALSE(server_closed_)
          << "event after Closed: " << KindName(r.kind);
      if (r.kind == Recorded::kRequestReceived) {
        ASSERT_EQ(sent_.count(r.id.value()), 1u)
            << "server received a request never sent: " << r.id;
        ASSERT_EQ(r.payload, sent_[r.id.value()])
            << "server received the wrong payload for " << r.id;
        awaiting_.push_back({r.id, r.payload});
        processed_.insert(r.id.value());
      } else if (r.kind == Recorded::kClosed) {
        server_closed_ = true;
      }
    }
  }

  void DrainClient() {
    for (Recorded& r : Drain(client_)) {
      ASSERT_FALSE(client_closed_)
          << "event after Closed: " << KindName(r.kind);
      if (r.kind == Recorded::kReplyReceived ||
          r.kind == Recorded::kRequestFailed) {
        ASSERT_EQ(sent_.count(r.id.value()), 1u)
            << "outcome for a request never sent: " << r.id;
        ++outcomes_[r.id.value()];
        ASSERT_EQ(outcomes_[r.id.value()], 1) << "second outcome for " << r.id;
      }
      if (r.kind == Recorded::kReplyReceived) {
        ++(r.status.ok() ? coverage_.replies : coverage_.error_replies);
      } else if (r.kind == Recorded::kRequestFailed) {
        if (r.status.code() == absl::StatusCode::kDeadlineExceeded) {
          ++coverage_.deadline_exceeded;
        }
        if (r.delivery != Delivery::kMaybeDelivered &&
            r.status.code() != absl::StatusCode::kDeadlineExceeded) {
          // Safe to send again: so it must never reach the handler.
          said_not_processed_.insert(r.id.value());
        }
        switch (r.delivery) {
          case Delivery::kNotSent:
            ++coverage_.not_sent;
            break;
          case Delivery::kMaybeDelivered:
            ++coverage_.maybe_delivered;
            break;
          case Delivery::kNotProcessed:
            ++coverage_.not_processed;
            break;
        }
      } else if (r.kind == Recorded::kClosed && r.status.ok()) {
        ++coverage_.graceful_closes;
      }
      if (r.kind == Recorded::kReplyReceived) {
        const std::string& request = sent_[r.id.value()];
        if (r.status.ok()) {
          ASSERT_EQ(r.payload, "rep:" + request) << "wrong reply for " << r.id;
        } else {
          ASSERT_EQ(r.status, absl::NotFoundError("err:" + request))
              << "wrong error for " << r.id;
        }
      }
      if (r.kind == Recorded::kClosed) client_closed_ = true;
    }
    closed_ = client_closed_ && server_closed_;
  }

  // All faults stop; every byte moves and every request is answered; then
  // the connection closes.
  void Quiet() {
    for (int round = 0; round < 50; ++round) {
      while (!awaiting_.empty()) {
        const auto [id, payload] = awaiting_.back();
        awaiting_.pop_back();
        (void)server_.SendReply(id, "rep:" + payload);
      }
      c2s_.TakeFrom(client_, SIZE_MAX);
      s2c_.TakeFrom(server_, SIZE_MAX);
      c2s_.DeliverTo(server_, SIZE_MAX, now_);
      DrainServer();
      s2c_.DeliverTo(client_, SIZE_MAX, now_);
      DrainClient();
    }
    client_.OnTransportClosed(absl::OkStatus(), now_);
    server_.OnTransportClosed(absl::OkStatus(), now_);
    DrainClient();
    DrainServer();
  }

  void Check() {
    ASSERT_TRUE(client_closed_);
    ASSERT_TRUE(server_closed_);
    for (const auto& [id, payload] : sent_) {
      ASSERT_EQ(outcomes_[id], 1) << "request #" << id << " had no outcome";
    }
    for (uint64_t id : said_not_processed_) {
      ASSERT_EQ(processed_.count(id), 0u)
          << "request #" << id
          << " failed as safe to retry, yet the server received it";
    }
    EXPECT_EQ(client_.stats().requests_in_flight, 0u);
    coverage_.pings += client_.stats().pings_sent + server_.stats().pings_sent;
  }

  Coverage& coverage_;
  const uint64_t seed_;
  std::mt19937_64 rng_;
  absl::Time now_ = kStart;
  Connection client_;
  Connection server_;
  Link c2s_, s2c_;
  std::map<uint64_t, std::string> sent_;
  std::map<uint64_t, int> outcomes_;
  std::set<uint64_t> processed_;           // received by the server
  std::set<uint64_t> said_not_processed_;  // failed as safe to retry
  std::vector<std::pair<CorrelationId, std::string>> awaiting_;
  uint64_t request_counter_ = 0;
  bool client_closed_ = false;
  bool server_closed_ = false;
  bool closed_ = false;
};

// Runs `runs` seeds (or the one MOONPOOL_SEED names) and checks that the
// sweep reached every kind of outcome. Returns the coverage.
Coverage Sweep(int runs, BuggifyMode buggify) {
  uint64_t first = std::random_device{}();
  if (const char* env = std::getenv("MOONPOOL_SEED")) {
    first = std::strtoull(env, nullptr, 10);
    runs = 1;
  }
  Coverage coverage;
  for (int i = 0; i < runs; ++i) {
    const uint64_t seed = first + i;
    SCOPED_TRACE(
        absl::StrCat("seed ", seed, " (reproduce: MOONPOOL_SEED=", seed, ")"));
    RandomRun run(seed, coverage, buggify);
    run.Go();
    if (::testing::Test::HasFailure()) return coverage;
  }
  if (runs == 1) return coverage;
  EXPECT_GT(coverage.replies, 0);
  EXPECT_GT(coverage.error_replies, 0);
  EXPECT_GT(coverage.deadline_exceeded, 0);
  EXPECT_GT(coverage.not_sent, 0);
  EXPECT_GT(coverage.maybe_delivered, 0);
  EXPECT_GT(coverage.not_processed, 0);
  EXPECT_GT(coverage.graceful_closes, 0);
  EXPECT_GT(coverage.resets, 0);
  EXPECT_GT(coverage.pings, 0);
  std::cout << "coverage over " << runs << " seeds from " << first
            << ": replies " << coverage.replies << ", error replies "
            << coverage.error_replies << ", deadline exceeded "
            << coverage.deadline_exceeded << ", not sent " << coverage.not_sent
            << ", maybe delivered " << coverage.maybe_delivered
            << ", not processed " << coverage.not_processed
            << ", graceful closes " << coverage.graceful_closes << ", resets "
            << coverage.resets << ", pings " << coverage.pings << "\n";
  if (buggify != BuggifyMode::kOff) {
    for (size_t i = 0; i < std::size(kBuggifySites); ++i) {
      std::cout << "  buggify " << kBuggifySites[i] << ": fired "
                << coverage.fired[i] << " of " << coverage.evaluated[i] << "\n";
    }
  }
  return coverage;
}

TEST(ConnectionPairRandom, EveryRequestHasExactlyOneOutcome) {
  Sweep(3000, BuggifyMode::kOff);
}

// Every site fires every time it is asked: each rare path at once, and the
// sweep must have reached every site of the list (a site missing from
// kBuggifySites would be a hole no simulation reports).
TEST(ConnectionPairRandom, EveryRequestHasExactlyOneOutcomeWithBuggifyAlways) {
  // Fewer seeds: every read is a byte long.
  const Coverage coverage = Sweep(400, BuggifyMode::kAlways);
  if (std::getenv("MOONPOOL_SEED") != nullptr) return;
  for (size_t i = 0; i < std::size(kBuggifySites); ++i) {
    EXPECT_GT(coverage.fired[i], 0u) << kBuggifySites[i] << " never fired";
  }
  for (const std::string& site : coverage.unlisted) {
    ADD_FAILURE() << site << " is evaluated but not listed in kBuggifySites";
  }
}

// Sites fire on a coin toss: rare paths mixed with ordinary ones.
TEST(ConnectionPairRandom, EveryRequestHasExactlyOneOutcomeWithBuggifyRandom) {
  const Coverage coverage = Sweep(600, BuggifyMode::kRandom);
  if (std::getenv("MOONPOOL_SEED") != nullptr) return;
  for (size_t i = 0; i < std::size(kBuggifySites); ++i) {
    EXPECT_GT(coverage.fired[i], 0u) << kBuggifySites[i] << " never fired";
    EXPECT_LT(coverage.fired[i], coverage.evaluated[i]) << kBuggifySites[i];
  }
  EXPECT_TRUE(coverage.unlisted.empty());
}

}  // namespace
}  // namespace moonpool::protocol::testing
