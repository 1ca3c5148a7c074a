#!/usr/bin/env bash
# Runs the chaos README's example (integration_tests/sim_consumer), built by
# install_test.sh against the installed packages in <build dir>:
#   1. its runner, echo-sim, passes 20 seeds with the determinism check, and
#      its shards merge;
#   2. with its planted bug (--echo_corrupt_probability) the sweep fails,
#      names the broken invariant, and prints a reproducing command that
#      names echo-sim and carries the program's own flag;
#   3. that command, run as printed, fails the same seed with the same trace
#      hash;
#   4. its GoogleTest sweep (SweepSeeds) passes.
# Usage: sim_consumer_check.sh <build dir>
set -euo pipefail

fail() {
  echo "sim_consumer_check: FAIL: $*" >&2
  exit 1
}
# show <log>: the log, indented, on stderr.
show() { sed 's/^/  | /' "$1" >&2; }

cd "${1:?usage: sim_consumer_check.sh <build dir>}"

# 1. Clean seeds, twice each for the first five; two shards merged.
if ! ./echo-sim --workload echo --seeds 1..20 --check-determinism 5 \
  --failures-only >clean.log 2>&1; then
  show clean.log
  fail "echo-sim failed on a clean sweep"
fi
grep -q "== summary: 20 seeds, 0 failed" clean.log || {
  show clean.log
  fail "no clean summary of 20 seeds"
}
./echo-sim --workload echo --seeds 1..20 --shard 0/2 --failures-only \
  --json shard0.json >/dev/null
./echo-sim --workload echo --seeds 1..20 --shard 1/2 --failures-only \
  --json shard1.json >/dev/null
./echo-sim merge shard0.json shard1.json >merge.log
grep -q "== summary: 20 seeds, 0 failed" merge.log || {
  show merge.log
  fail "the merged shards do not add up to 20 clean seeds"
}
echo "sim_consumer_check: ok: 20 clean seeds, deterministic, shards merged"

# 2. The planted bug is caught.
rc=0
./echo-sim --workload echo --seeds 1..40 --failures-only \
  --echo_corrupt_probability=0.02 >planted.log 2>&1 || rc=$?
if [[ ${rc} -ne 1 ]]; then
  show planted.log
  fail "the sweep with the planted bug exited ${rc}, not 1"
fi
grep -q "invariant echo.reply_matches" planted.log || {
  show planted.log
  fail "the planted bug was not reported as echo.reply_matches"
}
failed=$(grep -m1 -E '^seed [0-9]+ FAILED hash=' planted.log)
seed=$(sed -E 's/^seed ([0-9]+) .*/\1/' <<<"${failed}")
command=$(grep -m1 '^  reproduce: ' planted.log | sed 's/^  reproduce: //')
expected="./echo-sim --workload echo --seed ${seed} --config random --echo_corrupt_probability=0.02"
if [[ ${command} != "${expected}" ]]; then
  fail "reproducing command '${command}', expected '${expected}'"
fi
echo "sim_consumer_check: ok: planted bug caught on seed ${seed}: ${command}"

# 3. The command reproduces the failure exactly.
rc=0
eval "${command}" >repro.log 2>&1 || rc=$?
if [[ ${rc} -ne 1 ]] || ! grep -qxF "${failed}" repro.log; then
  show repro.log
  fail "'${command}' exited ${rc} without '${failed}'"
fi
echo "sim_consumer_check: ok: the command reproduces '${failed}'"

# 4. The GoogleTest sweep.
if ! ./echo_workload_test >gtest.log 2>&1; then
  show gtest.log
  fail "echo_workload_test failed"
fi
echo "sim_consumer_check: ok: echo_workload_test (SweepSeeds over 50 seeds)"
