#!/usr/bin/env bash
# The main job: installs what is missing, builds the `release` preset and runs
# what exists of the transport so far, each beside its baseline: the wire
# codec against bare Cap'n Proto, and protocol round trips in memory.
# Usage: ci/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh
bash ci/bench-wire.sh
echo
bash ci/bench-protocol.sh
