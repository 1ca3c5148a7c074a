// Simulation speed: request/reply round trips of the real ClientTransport
// and ServerTransport on a SimLoop (no faults) per wall-clock second, and
// seeds per second of the standard pingpong workload under random plans
// (what a moonpool-sim sweep costs). Targets (issue 7): >= 500,000 round
// trips/s, and 1,000 seeds in under 60 s (>= ~17 seeds/s).
//
// BM_SweepSeeds/<workload> (issue 16): each standard workload (pingpong,
// stream, and kv when the example is built) run over seeds 1..N as
// `moonpool-sim --seeds 1..N --config random` runs them, reporting the
// simulator's speed as simulated seconds per wall-clock second
// (sim_seconds_per_second) and seeds_per_second, so that it can stand beside
// FoundationDB's simulation (about 10x real time) and TigerBeetle's VOPR
// (about 700x). The seed set is fixed (Iterations), so two runs time the
// same simulated work.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

#ifdef MOONPOOL_SIM_BENCHMARK_KV
#include "kv_workload.h"  // examples/kv: registers the "kv" workload
#endif

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

// One seed per iteration, seeds 1, 2, 3, ... in order, each under its random
// plan (swarm mode, buggify on): what one process of a moonpool-sim sweep
// does, without the determinism re-runs. The virtual time of a seed is the
// runner's SeedResult::stats.virtual_time (the workload's Simulate, chaos
// and quiet phases together). Wall-clock time (UseRealTime), so the rates
// are per wall second; the per-iteration CPU time is in the JSON beside
// them, and sim_seconds_per_seed lets a reader divide by it.
void BM_SweepSeeds(benchmark::State& state, const char* workload) {
  RunSpec spec;
  spec.workload = workload;
  spec.config = ConfigMode::kRandom;
  uint64_t seed = 1;
  double virtual_seconds = 0;
  int64_t round_trips = 0;
  for (auto _ : state) {
    const SeedResult r = RunSeed(spec, seed);
    if (!r.status.ok()) {
      // A failed seed is a bug for the sweep to report, not a speed.
      state.SkipWithError(
          absl::StrCat(workload, " seed ", seed, ": ", r.status.ToString())
              .c_str());
      break;
    }
    virtual_seconds += absl::ToDoubleSeconds(r.stats.virtual_time);
    round_trips += static_cast<int64_t>(r.stats.round_trips);
    ++seed;
  }
  const double seeds = static_cast<double>(seed - 1);
  state.counters["sim_seconds_per_second"] =
      benchmark::Counter(virtual_seconds, benchmark::Counter::kIsRate);
  state.counters["seeds_per_second"] =
      benchmark::Counter(seeds, benchmark::Counter::kIsRate);
  state.counters["sim_seconds_per_seed"] =
      benchmark::Counter(seeds > 0 ? virtual_seconds / seeds : 0);
  state.counters["round_trips_per_second"] = benchmark::Counter(
      static_cast<double>(round_trips), benchmark::Counter::kIsRate);
}
// Seeds per run: pingpong's 1..1000 as chaos_sweep_pingpong_1000, then
// 1..300 of the others; a few seconds of wall time each on a 2-core VM, and
// the same seeds every run.
BENCHMARK_CAPTURE(BM_SweepSeeds, pingpong, "pingpong")
    ->Iterations(1000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_SweepSeeds, stream, "stream")
    ->Iterations(300)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#ifdef MOONPOOL_SIM_BENCHMARK_KV
BENCHMARK_CAPTURE(BM_SweepSeeds, kv, "kv")
    ->Iterations(300)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace
}  // namespace moonpool::chaos

int main(int argc, char** argv) {
#ifdef MOONPOOL_SIM_BENCHMARK_KV
  kv::RegisterKvWorkload();
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
