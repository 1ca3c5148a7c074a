#!/usr/bin/env bash
# Fuzz smoke test: builds the `fuzz` preset (clang 14, libFuzzer, ASan+UBSan)
# and, for each libFuzzer target in fuzz/ (frame_decoder, protocol_connection,
# capnp_codec, envelope_fast_path, tls_record):
#   1. checks that the committed seed corpus fuzz/corpus/<target>/ is what its
#      generator writes;
#   2. replays every input in fuzz/regressions/<target>/;
#   3. fuzzes for a bounded time, starting from a scratch copy of the seed
#      corpus (the repository is not modified).
# Exits non-zero on any crash, sanitizer report or failed check.
#
# A crashing input is kept under build/fuzz/artifacts/<target>/. To keep it as
# a regression: fix the bug, minimise the input
#   build/fuzz/fuzz/<target>_fuzzer -minimize_crash=1 -max_total_time=60 <crash>
# and copy it to fuzz/regressions/<target>/<name saying what it broke>; step 2
# then replays it on every run (fuzz/README.md, "Regressions").
#
# Installs nothing: run ci/install-deps.sh first.
# Usage: ci/fuzz-smoke.sh [seconds per target]  (default 10, or $FUZZ_SECONDS)
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
# target name, then the generator that writes its seed corpus.
targets=(
  "frame_decoder make_seed_corpus"
  "protocol_connection make_protocol_connection_seeds"
  "capnp_codec make_capnp_codec_seeds"
  "envelope_fast_path make_envelope_fast_path_seeds"
  "tls_record make_tls_record_seeds"
)

build_targets=()
for entry in "${targets[@]}"; do
  read -r name generator <<<"$entry"
  build_targets+=("${name}_fuzzer" "$generator")
done
echo "fuzz-smoke: building the fuzz preset"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs" --target "${build_targets[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
shopt -s nullglob

for entry in "${targets[@]}"; do
  read -r name generator <<<"$entry"
  fuzzer="$build/fuzz/${name}_fuzzer"
  corpus="fuzz/corpus/$name"
  artifacts="$build/artifacts/$name"
  mkdir -p "$artifacts" "$work/$name"
  flags=(-rss_limit_mb=1024 -timeout=10 -artifact_prefix="$artifacts/")

  # The seeds are generated, never edited by hand: a difference means the
  # code or the generator changed and the corpus must be written again.
  "$build/fuzz/$generator" "$work/$name/seeds" >/dev/null
  if ! diff -r -q "$work/$name/seeds" "$corpus" >/dev/null; then
    diff -r -q "$work/$name/seeds" "$corpus" >&2 || true
    echo "fuzz-smoke: $corpus is stale; regenerate it with:" >&2
    echo "  rm -rf $corpus && $build/fuzz/$generator $corpus" >&2
    exit 1
  fi

  regressions=(fuzz/regressions/"$name"/*)
  if ((${#regressions[@]} > 0)); then
    echo "fuzz-smoke: $name: replaying ${#regressions[@]} regression inputs"
    if ! "$fuzzer" "${flags[@]}" "${regressions[@]}" \
         >"$work/$name/regressions.log" 2>&1; then
      tail -n 40 "$work/$name/regressions.log" >&2
      echo "fuzz-smoke: $name: a regression input fails (log above)" >&2
      exit 1
    fi
  fi

  echo "fuzz-smoke: $name: fuzzing for ${seconds}s from $corpus"
  mkdir -p "$work/$name/corpus"
  cp "$corpus"/* "$work/$name/corpus/"
  if ! "$fuzzer" "${flags[@]}" -max_total_time="$seconds" \
       -print_final_stats=1 "$work/$name/corpus" >"$work/$name/fuzz.log" 2>&1
  then
    tail -n 60 "$work/$name/fuzz.log" >&2
    echo "fuzz-smoke: $name: the fuzzer found a failure; the input is in" \
         "$artifacts/ (replay: $fuzzer <file>; once fixed, keep it in" \
         "fuzz/regressions/$name/)" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
    "$work/$name/fuzz.log" || true
done
echo "fuzz-smoke: passed"
