#!/usr/bin/env bash
# The main job: installs what is missing, builds the `release` preset and runs
# what exists of the transport so far: the wire codec benchmark side by side
# with its bare Cap'n Proto baseline, printed as a table.
# Usage: ci/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh
bash ci/bench-wire.sh
