// Simulation speed: request/reply round trips of the real ClientTransport
// and ServerTransport on a SimLoop (no faults) per wall-clock second, and
// seeds per second of the standard pingpong workload under random plans
// (what a moonpool-sim sweep costs). Targets (issue 7): >= 500,000 round
// trips/s, and 1,000 seeds in under 60 s (>= ~17 seeds/s).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::chaos {
namespace {

using driver::Task;
using driver::TaskScope;
using transport::ClientTransport;
using transport::IncomingMessage;
using transport::ServerTransport;

Task<void> Echo(ServerTransport& server) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    if (m->is_request()) (void)server.Reply(*m, m->envelope.payload);
  }
}

Task<void> Caller(ClientTransport& client, driver::Address to, int64_t n,
                  int64_t* ok) {
  const std::string payload(64, 'x');
  for (int64_t i = 0; i < n; ++i) {
    absl::StatusOr<std::string> r =
        co_await client.Request<std::string>(to, payload);
    if (r.ok()) ++*ok;
  }
}

// One SimLoop, one client host, one server host, `in_flight` callers.
void BM_SimRoundTrips(benchmark::State& state) {
  const int in_flight = static_cast<int>(state.range(0));
  constexpr int64_t kPerCaller = 2000;
  int64_t total = 0;
  for (auto _ : state) {
    SimLoop sim({.seed = 1});
    SimHost& ch = **sim.AddHost("10.0.0.2");
    SimHost& sh = **sim.AddHost("10.0.0.3");
    auto server = ServerTransport::Bind(sh, sh.Addr(4500));
    ClientTransport client(ch);
    int64_t ok = 0;
    {
      TaskScope st(sh, [](absl::Status) {});
      TaskScope ct(ch, [](absl::Status) {});
      st.Spawn(Echo(**server));
      for (int i = 0; i < in_flight; ++i) {
        ct.Spawn(Caller(client, sh.Addr(4500), kPerCaller, &ok));
      }
      const int64_t want = kPerCaller * in_flight;
      sim.RunUntil([&] { return ok == want; }, sim.Now() + absl::Hours(1));
      if (ok != want) state.SkipWithError("round trips failed");
      ct.Clear();
      st.Clear();
      client.Close();
    }
    total += ok;
  }
  state.counters["round_trips_per_s"] = benchmark::Counter(
      static_cast<double>(total), benchmark::Counter::kIsRate);
  state.SetItemsProcessed(total);
}
BENCHMARK(BM_SimRoundTrips)
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);

// The standard pingpong workload, random plan, one seed per iteration.
void BM_PingPongSeeds(benchmark::State& state) {
  RunSpec spec;
  uint64_t seed = 1;
  int64_t failures = 0, round_trips = 0;
  for (auto _ : state) {
    SeedResult r = RunSeed(spec, seed++);
    if (!r.status.ok()) ++failures;
    round_trips += static_cast<int64_t>(r.stats.round_trips);
  }
  if (failures > 0) state.SkipWithError("a seed failed");
  state.counters["seeds_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["workload_round_trips_per_s"] = benchmark::Counter(
      static_cast<double>(round_trips), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PingPongSeeds)->Unit(benchmark::kMillisecond)->MinTime(3.0);

}  // namespace
}  // namespace moonpool::chaos

BENCHMARK_MAIN();
