#!/usr/bin/env bash
# Fuzz smoke test: builds the `fuzz` preset (clang 14, libFuzzer, ASan+UBSan),
# checks that the committed seed corpus is what fuzz/make_seed_corpus writes,
# replays every input in fuzz/regressions/, then fuzzes FrameDecoder for a
# bounded time starting from a scratch copy of the seed corpus (the repository
# is not modified). Exits non-zero on any crash, sanitizer report or failed
# check; a crashing input is kept under build/fuzz/artifacts/.
#
# Installs nothing: run ci/install-deps.sh first.
# Usage: ci/fuzz-smoke.sh [seconds]      (default 10, or $FUZZ_SECONDS)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang++-14 >/dev/null 2>&1; then
  echo "fuzz-smoke: clang++-14 not found; run ci/install-deps.sh" \
       "(it installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi

seconds="${1:-${FUZZ_SECONDS:-10}}"
jobs="$(nproc)"
build=build/fuzz
fuzzer="$build/fuzz/frame_decoder_fuzzer"
corpus=fuzz/corpus/frame_decoder
artifacts="$build/artifacts"

echo "fuzz-smoke: building the fuzz preset"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs" \
  --target frame_decoder_fuzzer make_seed_corpus

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The seeds are generated, never edited by hand: a difference means the
# encoder or the generator changed and the corpus must be written again.
"$build/fuzz/make_seed_corpus" "$work/seeds" >/dev/null
if ! diff -r -q "$work/seeds" "$corpus" >/dev/null; then
  diff -r -q "$work/seeds" "$corpus" >&2 || true
  echo "fuzz-smoke: $corpus is stale; regenerate it with:" >&2
  echo "  rm -rf $corpus && $build/fuzz/make_seed_corpus $corpus" >&2
  exit 1
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$artifacts"
flags=(-rss_limit_mb=1024 -timeout=10 -artifact_prefix="$artifacts/")

shopt -s nullglob
regressions=(fuzz/regressions/*)
if ((${#regressions[@]} > 0)); then
  echo "fuzz-smoke: replaying ${#regressions[@]} regression inputs"
  if ! "$fuzzer" "${flags[@]}" "${regressions[@]}" >"$work/regressions.log" 2>&1; then
    tail -n 40 "$work/regressions.log" >&2
    echo "fuzz-smoke: a regression input fails (log above)" >&2
    exit 1
  fi
fi

echo "fuzz-smoke: fuzzing FrameDecoder for ${seconds}s from ${corpus}"
mkdir -p "$work/corpus"
cp "$corpus"/* "$work/corpus/"
if ! "$fuzzer" "${flags[@]}" -max_total_time="$seconds" -print_final_stats=1 \
     "$work/corpus" >"$work/fuzz.log" 2>&1; then
  tail -n 60 "$work/fuzz.log" >&2
  echo "fuzz-smoke: the fuzzer found a failure; the input is in $artifacts/" \
       "(replay: $fuzzer <file>; keep it in fuzz/regressions/ once fixed)" >&2
  exit 1
fi
grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
  "$work/fuzz.log" || true
echo "fuzz-smoke: passed"
