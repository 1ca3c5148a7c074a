// runtime_benchmark: the cost of moonpool-driver's coroutine runtime on the
// real UvLoop.
//
//   BM_AwaitReadyTask
//       `co_await` of a Task<int> that finishes without suspending: frame
//       allocation, the hand-off to the child and back through the
//       trampoline, the value moved out, the frame freed. ns per await.
//       Target: under 20 ns.
//   BM_PromiseHandOff/<waiters>
//       <waiters> coroutines each wait on their own Future. One posted
//       callback fulfils all their Promises; each Set posts that waiter's
//       resumption; the loop runs them; each waiter wakes, makes its next
//       Promise/Future pair (one allocation) and waits again. One iteration is
//       one such round, driven by RunUntil over the loop's posted queue;
//       `ns_per_handoff` divides by <waiters>. /1 includes a whole loop turn
//       (libuv's poll included) per hand-off; /256 amortises the turn and
//       shows the runtime's own cost. Target: under 100 ns per hand-off.
//   BM_UvTimerRoundTrip
//       One reused Timer armed for now, then the loop run until it fires: a
//       libuv timer through the Loop interface, a turn included.
//
// Every benchmark reports allocs_per_op: heap allocations (operator new, and
// the malloc family on glibc) by the benchmark thread in the timed part,
// divided by the operations (awaits, hand-offs, timer firings).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "alloc_counter.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"

namespace moonpool::driver {
namespace {

void FailOnError(absl::Status status) {
  std::fprintf(stderr, "runtime_benchmark: task failed: %s\n",
               status.ToString().c_str());
  std::abort();
}

// ---------------------------------------------------------------------------
// BM_AwaitReadyTask

[[gnu::noinline]] Task<int> Ready(int value) { co_return value; }

Task<void> AwaitReadyLoop(benchmark::State& state, uint64_t* allocations) {
  for (int i = 0; i < 64; ++i) benchmark::DoNotOptimize(co_await Ready(i));
  bench::AllocationScope allocs;
  int i = 0;
  for (auto _ : state) {
    int value = co_await Ready(++i);
    benchmark::DoNotOptimize(value);
  }
  *allocations = allocs.allocations();
}

void BM_AwaitReadyTask(benchmark::State& state) {
  UvLoop loop;
  TaskScope scope(loop, FailOnError);
  uint64_t allocations = 0;
  scope.Spawn(AwaitReadyLoop(state, &allocations));
  loop.RunUntil([&] { return scope.empty(); }, absl::InfiniteFuture());
  state.counters["allocs_per_op"] = benchmark::Counter(
      static_cast<double>(allocations), benchmark::Counter::kAvgIterations);
}

// ---------------------------------------------------------------------------
// BM_PromiseHandOff

struct HandOffBench {
  explicit HandOffBench(Loop& l, int waiters) : loop(l), promises(waiters) {}
  Loop& loop;
  std::vector<Promise<int>> promises;  // parked by the waiters
  int64_t resumed = 0;
  bool stop = false;
};

Task<void> Waiter(HandOffBench& bench, int index) {
  while (!bench.stop) {
    auto [promise, future] = MakePromise<int>(bench.loop);
    bench.promises[index] = std::move(promise);
    absl::StatusOr<int> value = co_await std::move(future);
    benchmark::DoNotOptimize(value);
    ++bench.resumed;
  }
}

void FulfilAll(HandOffBench& bench) {
  int i = 0;
  for (Promise<int>& p : bench.promises) p.Set(i++);
}

void BM_PromiseHandOff(benchmark::State& state) {
  const int waiters = static_cast<int>(state.range(0));
  UvLoop loop;
  HandOffBench bench(loop, waiters);
  TaskScope scope(loop, FailOnError);
  for (int i = 0; i < waiters; ++i) scope.Spawn(Waiter(bench, i));
  // Start them all: each parks its first promise.
  loop.RunUntil([&] { return bench.promises.back().valid(); },
                absl::InfiniteFuture());
  auto round = [&] {
    const int64_t target = bench.resumed + waiters;
    loop.Post([&bench] { FulfilAll(bench); });
    loop.RunUntil([&] { return bench.resumed == target; },
                  absl::InfiniteFuture());
  };
  for (int i = 0; i < 16; ++i) round();  // warm up the loop's queue

  bench::AllocationScope allocs;
  for (auto _ : state) round();
  const double handoffs = static_cast<double>(state.iterations()) * waiters;
  state.counters["allocs_per_op"] =
      benchmark::Counter(static_cast<double>(allocs.allocations()) / handoffs);
  state.counters["ns_per_handoff"] = benchmark::Counter(
      handoffs, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<int64_t>(handoffs));
  bench.stop = true;
}

// ---------------------------------------------------------------------------
// BM_UvTimerRoundTrip

void BM_UvTimerRoundTrip(benchmark::State& state) {
  UvLoop loop;
  bool fired = false;
  std::unique_ptr<Timer> timer = loop.CreateTimer([&] { fired = true; });
  auto round_trip = [&] {
    fired = false;
    timer->Start(loop.Now());
    loop.RunUntil([&] { return fired; }, absl::InfiniteFuture());
  };
  for (int i = 0; i < 16; ++i) round_trip();

  bench::AllocationScope allocs;
  for (auto _ : state) round_trip();
  state.counters["allocs_per_op"] =
      benchmark::Counter(static_cast<double>(allocs.allocations()),
                         benchmark::Counter::kAvgIterations);
}

BENCHMARK(BM_AwaitReadyTask);
BENCHMARK(BM_PromiseHandOff)->Arg(1)->Arg(16)->Arg(256);
BENCHMARK(BM_UvTimerRoundTrip);

}  // namespace
}  // namespace moonpool::driver

BENCHMARK_MAIN();
