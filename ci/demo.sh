#!/usr/bin/env bash
# The main job: installs what is missing, builds the `release` preset and runs
# what exists of the transport so far, each beside its baseline: the wire
# codec against bare Cap'n Proto, and protocol round trips in memory; then
# the real thing, moonpool-pingpong over TCP on loopback (echo server and
# client in one process, each on its own thread and loop) for 5 s; then a
# chaos sweep of the simulated pingpong workload (moonpool-sim), one of the
# reply-stream workload, and one of the key-value example service
# (moonpool-kv-sim, examples/kv).
# Usage: ci/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh
bash ci/bench-wire.sh
echo
bash ci/bench-protocol.sh
echo

# Real TCP ping-pong: throughput, latency percentiles and every outcome.
echo "== moonpool-pingpong: loopback TCP, 4 connections x 64 in flight, 64 B, 5 s =="
cmake --preset release >/dev/null
cmake --build --preset release --target moonpool-pingpong >/dev/null
build/release/packages/moonpool-transport/moonpool-pingpong \
  --connections 4 --in-flight 64 --payload 64 --duration 5 \
  --json build/release/pingpong.json

# Deterministic simulation: a chaos sweep of the pingpong workload over 200
# seeds (random fault plans, server restarts, a quiet phase), 20 of them run
# twice to check replay; prints failures, if any, and the coverage summary.
echo
echo "== moonpool-sim: pingpong workload, 200 seeds, random fault plans =="
cmake --build --preset release --target moonpool-sim >/dev/null
build/release/packages/moonpool-chaos/moonpool-sim --workload pingpong \
  --seeds 1..200 --config random --check-determinism 20 --failures-only \
  --json build/release/sim-sweep.json

# Reply streams with small windows under the same kind of sweep (the
# stream workload: items in order, none lost or duplicated, one end per
# stream, both sides within the window; every way a stream ends covered).
echo
echo "== moonpool-sim: stream workload, 200 seeds, random fault plans, server restarts =="
build/release/packages/moonpool-chaos/moonpool-sim --workload stream \
  --seeds 1..200 --config random --check-determinism 20 --failures-only \
  --require-coverage stream.,restart. --json build/release/stream-sim-sweep.json

# The key-value example service (examples/kv) under the same kind of sweep:
# three clients calling Get/Put/Delete and Scan (a reply stream) by name
# while the server is killed or restarted, then a quiet phase that reads
# back what it writes.
echo
echo "== moonpool-kv-sim: kv workload, 200 seeds, random fault plans, server restarts =="
cmake --build --preset release --target moonpool-kv-sim >/dev/null
build/release/examples/kv/moonpool-kv-sim --workload kv \
  --seeds 1..200 --config random --check-determinism 20 --failures-only \
  --require-coverage kv.,fault.resolve --json build/release/kv-sim-sweep.json
