#!/usr/bin/env bash
# ci/reliability-long.sh: the long versions of the reliability tests
# (docs/RELIABILITY.md), on the release build: each load and fault test of
# integration_tests/process_test.py for 30 s instead of a few, printing its
# figures (throughput, latency percentiles, outcome counts, server peak RSS).
# The bounded versions of the same tests run in the test command
# (ci/test.sh, ctest label integration).
#
# Usage: ci/reliability-long.sh [TEST...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target moonpool-echo-server moonpool-pingpong

bin=build/release/packages/moonpool-transport
tests=("$@")
if [[ ${#tests[@]} -eq 0 ]]; then
  tests=(load_1000 kill_restart graceful_restart stall_short stall_long
         partition)
fi
failed=()
for t in "${tests[@]}"; do
  echo "== $t (30 s)"
  python3 integration_tests/process_test.py "$t" --long \
    --server "$bin/moonpool-echo-server" --pingpong "$bin/moonpool-pingpong" ||
    { rc=$?; [[ $rc -eq 77 ]] || failed+=("$t"); }
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "ci/reliability-long.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "ci/reliability-long.sh: all passed"
