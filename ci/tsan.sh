#!/usr/bin/env bash
# ci/tsan.sh: what uses threads, under ThreadSanitizer (the `tsan` preset).
# Threads meet in one place in moonpool: UvLoop::PostFromAnyThread (the one
# call another thread may make, DESIGN.md section 2), used by
# moonpool-pingpong, which runs its echo server on a thread and loop of its
# own when no --connect is given (signals reach the programs' loops through
# UvLoop::WatchSignals, no thread). So this runs the
# driver's and the transport's unit tests (PostFromAnyThread's among them)
# and moonpool-pingpong in its two-thread mode, all with halt_on_error;
# then ServerThreads (several server loops, one thread each, reached through
# PostFromAnyThread under a mutex): its test, and moonpool-pingpong
# --threads 2 (two client loops, an in-process server of two loops).
# Called by ci/test.sh; about 5 minutes on 2 cores, most of it the build.
set -euo pipefail
cd "$(dirname "$0")/.."

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
cmake --preset tsan >/dev/null
cmake --build --preset tsan --target moonpool_driver_test \
  moonpool_transport_test moonpool_server_threads_test moonpool-pingpong

dir=build/tsan/packages
# The TLS tests read the test PKI from MOONPOOL_TEST_CERTS (CTest's fixture
# sets it; these binaries run directly).
export MOONPOOL_TEST_CERTS=build/tsan/test-certs
packages/moonpool-driver/tools/moonpool-make-test-certs "$MOONPOOL_TEST_CERTS" >/dev/null
"$dir/moonpool-driver/moonpool_driver_test" --gtest_brief=1
"$dir/moonpool-transport/moonpool_transport_test" --gtest_brief=1
"$dir/moonpool-transport/moonpool-pingpong" --connections 8 --in-flight 8 \
  --duration 3 >/dev/null
"$dir/moonpool-transport/moonpool_server_threads_test" --gtest_brief=1
"$dir/moonpool-transport/moonpool-pingpong" --threads 2 --connections 8 \
  --in-flight 8 --duration 3 >/dev/null
echo "ci/tsan.sh: no data race reported"
