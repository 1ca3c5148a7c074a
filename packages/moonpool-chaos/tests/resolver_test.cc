// The simulated resolver (SimLoop::SetHostName, Loop::Resolve) and a client
// that names its server: answers after a round trip and in order, every
// address tried until one connects, a new lookup on every reconnect, a slow
// lookup bounded by the request's deadline, the two resolver faults with
// their coverage points and config keys, and replay from the seed.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::chaos {
namespace {

using driver::Address;
using driver::HostPort;
using driver::Task;
using driver::TaskScope;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using transport::ClientTransport;
using transport::IncomingMessage;
using transport::RequestOptions;
using transport::ServerTransport;

struct Lookup {
  bool done = false;
  absl::StatusOr<std::vector<Address>> result = absl::UnknownError("no answer");
};

driver::ResolveCallback Record(Lookup& l) {
  return [&l](absl::StatusOr<std::vector<Address>> r) {
    EXPECT_FALSE(l.done) << "second answer";
    l.done = true;
    l.result = std::move(r);
  };
}

TEST(SimResolver, NameAnswersItsAddressesInOrderAfterARoundTrip) {
  SimLoop sim({.seed = 1});
  ASSERT_TRUE(sim.SetHostName("DB.example", {"10.0.0.7", "::7"}).ok());
  const absl::Time t0 = sim.Now();
  Lookup l;
  auto r = sim.Resolve("db.example", 4500, Record(l));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(l.done);  // never inside the call
  ASSERT_TRUE(sim.RunUntil([&] { return l.done; }, t0 + absl::Seconds(1)));
  ASSERT_TRUE(l.result.ok()) << l.result.status();
  EXPECT_THAT(*l.result, ElementsAre(*Address::Parse("10.0.0.7:4500"),
                                     *Address::Parse("[::7]:4500")));
  EXPECT_GT(sim.Now(), t0);  // a round trip of simulated latency
}

TEST(SimResolver, UnknownNameIsNotFoundAndLocalhostIsTheAskingHost) {
  SimLoop sim({.seed = 2});
  SimHost& host = **sim.AddHost("10.0.0.5");
  Lookup unknown, local;
  auto r1 = sim.Resolve("nothing.invalid", 1, Record(unknown));
  auto r2 = host.Resolve("localhost", 80, Record(local));
  ASSERT_TRUE(r1.ok() && r2.ok());
  ASSERT_TRUE(sim.RunUntil([&] { return unknown.done && local.done; },
                           sim.Now() + absl::Seconds(1)));
  EXPECT_EQ(unknown.result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.result.status().message(),
              HasSubstr("resolving nothing.invalid"));
  ASSERT_TRUE(local.result.ok()) << local.result.status();
  EXPECT_THAT(*local.result, ElementsAre(host.Addr(80)));
}

TEST(SimResolver, BadNamesAndEmptyListsAreRefusedOrRemove) {
  SimLoop sim({.seed = 3});
  EXPECT_EQ(sim.SetHostName("a b", {"10.0.0.2"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.SetHostName("db", {"not-an-ip"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.SetHostName("10.0.0.2", {"10.0.0.3"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.Resolve("", 1, [](auto) {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(sim.SetHostName("db", {"10.0.0.2"}).ok());
  ASSERT_TRUE(sim.SetHostName("db", {}).ok());  // removed
  Lookup l;
  auto r = sim.Resolve("db", 1, Record(l));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(
      sim.RunUntil([&] { return l.done; }, sim.Now() + absl::Seconds(1)));
  EXPECT_EQ(l.result.status().code(), absl::StatusCode::kNotFound);
}

TEST(SimResolver, DestroyedHandleNeverCallsBack) {
  SimLoop sim({.seed = 4});
  ASSERT_TRUE(sim.SetHostName("db", {"10.0.0.2"}).ok());
  bool called = false;
  auto r = sim.Resolve("db", 1, [&](auto) { called = true; });
  ASSERT_TRUE(r.ok());
  r->reset();
  sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(1));
  EXPECT_FALSE(called);
  EXPECT_EQ(sim.pending_events(), 0u);
}

// ---- A client that names its server.

Task<void> Echo(ServerTransport& server, int* handled) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    if (m->is_request()) {
      EXPECT_TRUE(server.Reply(*m, m->envelope.payload).ok());
    }
    ++*handled;
  }
}

Task<void> Call(ClientTransport& client, HostPort to, RequestOptions options,
                std::optional<absl::StatusOr<std::string>>* out) {
  out->emplace(
      co_await client.Request<std::string>(to, std::string("ping"), options));
}

// Two server hosts, a client host, and tasks; destroyed in a safe order.
struct World {
  explicit World(SimLoopOptions options) : sim(std::move(options)) {
    client_host = *sim.AddHost("10.0.0.2");
    a = *sim.AddHost("10.0.0.3");
    b = *sim.AddHost("10.0.0.4");
    server_a = *ServerTransport::Bind(*a, a->Addr(4500));
    server_b = *ServerTransport::Bind(*b, b->Addr(4500));
    client = std::make_unique<ClientTransport>(*client_host);
    tasks_a.emplace(*a, [](absl::Status s) { ADD_FAILURE() << s; });
    tasks_b.emplace(*b, [](absl::Status s) { ADD_FAILURE() << s; });
    client_tasks.emplace(*client_host,
                         [](absl::Status s) { ADD_FAILURE() << s; });
    tasks_a->Spawn(Echo(*server_a, &handled_a));
    tasks_b->Spawn(Echo(*server_b, &handled_b));
  }
  ~World() {
    client_tasks.reset();
    tasks_a.reset();
    tasks_b.reset();
    client.reset();
    server_a.reset();
    server_b.reset();
  }
  // Sends one request and runs until its outcome (or `limit` passes).
  absl::StatusOr<std::string> Ping(const HostPort& to, RequestOptions options,
                                   absl::Duration limit = absl::Seconds(30)) {
    std::optional<absl::StatusOr<std::string>> out;
    client_tasks->Spawn(Call(*client, to, options, &out));
    EXPECT_TRUE(
        sim.RunUntil([&] { return out.has_value(); }, sim.Now() + limit));
    if (!out.has_value()) return absl::UnknownError("no outcome");
    return *out;
  }

  SimLoop sim;
  SimHost* client_host;
  SimHost* a;
  SimHost* b;
  std::unique_ptr<ServerTransport> server_a, server_b;
  std::unique_ptr<ClientTransport> client;
  std::optional<TaskScope> tasks_a, tasks_b, client_tasks;
  int handled_a = 0;
  int handled_b = 0;
};

TEST(ClientByName, TriesEveryAddressInOrderUntilOneConnects) {
  World w({.seed = 10});
  // 10.0.0.9 is no host: its connect is refused; then 10.0.0.4 answers.
  ASSERT_TRUE(w.sim.SetHostName("db", {"10.0.0.9", "10.0.0.4"}).ok());
  const HostPort db = *HostPort::Parse("db:4500");
  absl::StatusOr<std::string> r = w.Ping(db, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "ping");
  EXPECT_EQ(w.handled_b, 1);
  const driver::Peer* peer = w.client->peer(db);
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(peer->stats().resolutions, 1u);
  EXPECT_EQ(peer->stats().connect_attempts, 2u);  // each address a try
  EXPECT_EQ(peer->address(), w.b->Addr(4500));
  EXPECT_TRUE(w.sim.CheckInvariants().ok()) << w.sim.CheckInvariants();
}

TEST(ClientByName, EveryAddressRefusedSaysSoAndBacksOff) {
  World w({.seed = 11});
  ASSERT_TRUE(w.sim.SetHostName("db", {"10.0.0.8", "10.0.0.9"}).ok());
  const HostPort db = *HostPort::Parse("db:4500");
  RequestOptions options;
  options.timeout = absl::Milliseconds(400);
  absl::StatusOr<std::string> r = w.Ping(db, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  const driver::Peer* peer = w.client->peer(db);
  ASSERT_NE(peer, nullptr);
  EXPECT_THAT(peer->last_error().message(),
              HasSubstr("every address of db:4500 failed (2 tried)"));
  // A lookup per round, two tries each, backed off in between.
  EXPECT_GE(peer->stats().resolutions, 2u);
  EXPECT_EQ(peer->stats().connect_attempts,
            2 * peer->stats().resolutions -
                (peer->state() == driver::PeerState::kConnecting ? 1 : 0));
}

TEST(ClientByName, ResolvesAgainOnEveryReconnect) {
  World w({.seed = 12});
  ASSERT_TRUE(w.sim.SetHostName("db", {"10.0.0.3"}).ok());
  const HostPort db = *HostPort::Parse("db:4500");
  ASSERT_TRUE(w.Ping(db, {}).ok());
  EXPECT_EQ(w.handled_a, 1);
  // The service moves: the name now points at b, and a dies.
  ASSERT_TRUE(w.sim.SetHostName("db", {"10.0.0.4"}).ok());
  ASSERT_TRUE(w.sim.KillHost("10.0.0.3").ok());
  absl::StatusOr<std::string> r = w.Ping(db, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(w.handled_b, 1);
  const driver::Peer* peer = w.client->peer(db);
  EXPECT_GE(peer->stats().resolutions, 2u);
  EXPECT_EQ(peer->address(), w.b->Addr(4500));
}

TEST(ClientByName, SlowLookupIsBoundedByTheRequestDeadline) {
  ChaosConfig chaos;
  chaos.resolve_slow_probability = 1;
  chaos.resolve_slow_min = absl::Seconds(20);
  chaos.resolve_slow_max = absl::Seconds(20);
  World w({.seed = 13, .chaos = chaos});
  ASSERT_TRUE(w.sim.SetHostName("db", {"10.0.0.3"}).ok());
  const HostPort db = *HostPort::Parse("db:4500");
  const absl::Time t0 = w.sim.Now();
  RequestOptions options;
  options.timeout = absl::Milliseconds(500);
  absl::StatusOr<std::string> r = w.Ping(db, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("resolving db: no answer"));
  // At the deadline, not when the lookup would have answered.
  EXPECT_LT(w.sim.Now() - t0, absl::Seconds(1));
  const driver::Peer* peer = w.client->peer(db);
  EXPECT_GE(peer->stats().resolve_failures, 1u);
  EXPECT_EQ(peer->stats().connect_attempts, 0u);
  EXPECT_GT(w.sim.assertions().points().at("fault.resolve_slow").held, 0u);
}

TEST(ClientByName, FailedLookupIsAFailedAttemptThenRecovers) {
  ChaosConfig chaos;
  chaos.resolve_failed_probability = 1;
  World w({.seed = 14, .chaos = chaos});
  ASSERT_TRUE(w.sim.SetHostName("db", {"10.0.0.3"}).ok());
  const HostPort db = *HostPort::Parse("db:4500");
  RequestOptions options;
  options.timeout = absl::Milliseconds(300);
  absl::StatusOr<std::string> r = w.Ping(db, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("resolving db: "));
  EXPECT_GT(w.sim.assertions().points().at("fault.resolve_failed").held, 0u);
  // Faults off: the next attempt (after its backoff) resolves and connects.
  w.sim.set_chaos(ChaosConfig{});
  absl::StatusOr<std::string> again = w.Ping(db, {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(w.handled_a, 1);
}

TEST(ClientByName, ALiteralIsNeverLookedUp) {
  World w({.seed = 15});
  ASSERT_TRUE(w.Ping(w.a->Addr(4500), {}).ok());
  EXPECT_EQ(w.client->peer(w.a->Addr(4500))->stats().resolutions, 0u);
}

// Many requests by name under every resolver fault and some network ones.
uint64_t RunByName(uint64_t seed, int* ok) {
  ChaosConfig chaos;
  chaos.resolve_failed_probability = 0.3;
  chaos.resolve_slow_probability = 0.3;
  chaos.resolve_slow_min = absl::Milliseconds(10);
  chaos.resolve_slow_max = absl::Milliseconds(800);
  chaos.reset_probability = 0.05;
  chaos.latency.typical = absl::Milliseconds(1);
  World w({.seed = seed, .chaos = chaos});
  EXPECT_TRUE(w.sim.SetHostName("db", {"10.0.0.9", "10.0.0.3"}).ok());
  const HostPort db = *HostPort::Parse("db:4500");
  *ok = 0;
  for (int i = 0; i < 20; ++i) {
    RequestOptions options;
    options.timeout = absl::Milliseconds(700);
    options.idempotent = true;
    if (w.Ping(db, options).ok()) ++*ok;
  }
  EXPECT_TRUE(w.sim.CheckInvariants().ok()) << w.sim.CheckInvariants();
  return w.sim.trace().hash();
}

TEST(ClientByName, ResolverFaultsReplayFromTheSeed) {
  int ok1 = 0, ok2 = 0, ok3 = 0;
  const uint64_t h1 = RunByName(77, &ok1);
  const uint64_t h2 = RunByName(77, &ok2);
  const uint64_t h3 = RunByName(78, &ok3);
  EXPECT_EQ(h1, h2);
  EXPECT_EQ(ok1, ok2);
  EXPECT_NE(h1, h3);
  EXPECT_GT(ok1, 0);  // faults are not an outage
}

TEST(ChaosConfigResolver, KeysParseAndRandomPlansUseThem) {
  absl::StatusOr<ChaosConfig> c = ParseChaosConfig(
      "resolve_failed_probability = 0.25\n"
      "resolve_slow_probability=0.5\n"
      "resolve_slow_min=50ms\nresolve_slow_max=2s\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->resolve_failed_probability, 0.25);
  EXPECT_EQ(c->resolve_slow_probability, 0.5);
  EXPECT_EQ(c->resolve_slow_min, absl::Milliseconds(50));
  EXPECT_EQ(c->resolve_slow_max, absl::Seconds(2));
  EXPECT_TRUE(c->any_fault());
  EXPECT_THAT(c->ToString(), HasSubstr("resolve_failed=0.25"));
  EXPECT_FALSE(ParseChaosConfig("resolve_slow_probability=2").ok());

  // Across seeds, swarm plans switch each resolver family on and off.
  int failed_on = 0, slow_on = 0;
  for (uint64_t seed = 1; seed <= 64; ++seed) {
    SimRandom rng(seed);
    const ChaosConfig r = ChaosConfig::Random(rng);
    failed_on += r.resolve_failed_probability > 0;
    slow_on += r.resolve_slow_probability > 0;
    EXPECT_LE(r.resolve_slow_min, r.resolve_slow_max);
  }
  EXPECT_GT(failed_on, 0);
  EXPECT_LT(failed_on, 64);
  EXPECT_GT(slow_on, 0);
  EXPECT_LT(slow_on, 64);
}

}  // namespace
}  // namespace moonpool::chaos
