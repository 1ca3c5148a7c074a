#!/usr/bin/env bash
# The protocol benchmark: builds protocol_benchmark with the `release`
# preset, runs it (two protocol Connections in memory) with JSON output to
# build/release/protocol_benchmark.json, and prints round trips per second
# and allocations per round trip against the targets.
# Usage: ci/bench-protocol.sh [extra Google Benchmark flags]
set -euo pipefail
cd "$(dirname "$0")/.."

cmake --preset release >/dev/null
cmake --build --preset release --target protocol_benchmark >/dev/null
json=build/release/protocol_benchmark.json
build/release/benchmarks/protocol_benchmark \
  --benchmark_min_time="${BENCH_PROTOCOL_MIN_TIME:-0.3}" \
  --benchmark_out="$json" --benchmark_out_format=json "$@" >/dev/null

python3 - "$json" <<'PY'
import json, sys
all_rows = json.load(open(sys.argv[1]))["benchmarks"]
# With --benchmark_repetitions, use the medians; otherwise the single runs.
medians = [b for b in all_rows if b.get("aggregate_name") == "median"]
rows = medians or [b for b in all_rows if b.get("run_type") == "iteration"]
print(f"{'benchmark':<48} {'round trips/s':>14} {'allocs/rt':>10}")
for b in rows:
    print(f"{b['name']:<48} {b['items_per_second']:>14,.0f} {b['allocs_per_round_trip']:>10.2f}")
target = [b for b in rows if "payload:64/in_flight:256" in b["name"]]
if target:
    rps = target[0]["items_per_second"]
    allocs = max(b["allocs_per_round_trip"] for b in rows)
    print(f"target 64 B x 256 in flight >= 1,000,000 rt/s: {rps:,.0f} "
          f"({'met' if rps >= 1e6 else 'NOT met'})")
    print(f"target <= 2 heap allocations per round trip: {allocs:.2f} "
          f"({'met' if allocs <= 2 else 'NOT met'})")
PY
