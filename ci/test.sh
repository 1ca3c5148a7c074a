#!/usr/bin/env bash
# The test command: installs what is missing, builds the `ci` preset (Debug,
# ASan+UBSan), runs every CTest test (unit tests of each layer and the
# integration tests), then what uses threads under ThreadSanitizer
# (ci/tsan.sh), then a bounded libFuzzer smoke run.
# Usage: ci/test.sh        (from anywhere; works on a fresh Debian 12 machine)
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh

jobs=$(nproc)
cmake --preset ci
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs"

bash ci/tsan.sh
bash ci/fuzz-smoke.sh
echo "ci/test.sh: all tests passed"
