#!/usr/bin/env bash
# ci/reliability-long.sh: the long versions of the reliability tests
# (docs/RELIABILITY.md), on the release build:
#   - each load and fault test of integration_tests/process_test.py for 30 s
#     instead of a few, printing its figures (throughput, latency
#     percentiles, outcome counts, server peak RSS);
#   - the hostile-client tests (integration_tests/hostile_test.py);
#   - each libFuzzer target for FUZZ_SECONDS (default 300) instead of 10.
# The bounded versions of all of them run in the test command (ci/test.sh).
# About 25 minutes.
#
# Usage: ci/reliability-long.sh [TEST...]   (default: all of them; TEST is a
#        process_test.py or hostile_test.py test name, or "fuzz")
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target moonpool-echo-server moonpool-pingpong

bin=build/release/packages/moonpool-transport
process_tests=(load_1000 kill_restart graceful_restart stall_short stall_long
               partition)
hostile_tests=(random_bytes hello_garbage huge_header slowloris idle_flood
               no_read)
tests=("$@")
if [[ ${#tests[@]} -eq 0 ]]; then
  tests=("${process_tests[@]}" "${hostile_tests[@]}" fuzz)
fi
failed=()
for t in "${tests[@]}"; do
  if [[ "$t" == fuzz ]]; then
    echo "== fuzz: each target for ${FUZZ_SECONDS:-300} s"
    bash ci/fuzz-smoke.sh "${FUZZ_SECONDS:-300}" || failed+=(fuzz)
  elif [[ " ${hostile_tests[*]} " == *" $t "* ]]; then
    echo "== $t"
    python3 integration_tests/hostile_test.py "$t" \
      --server "$bin/moonpool-echo-server" \
      --pingpong "$bin/moonpool-pingpong" || failed+=("$t")
  else
    echo "== $t (30 s)"
    python3 integration_tests/process_test.py "$t" --long \
      --server "$bin/moonpool-echo-server" \
      --pingpong "$bin/moonpool-pingpong" ||
      { rc=$?; [[ $rc -eq 77 ]] || failed+=("$t"); }
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "ci/reliability-long.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "ci/reliability-long.sh: all passed"
