// RunSimMain is the seed runner's whole command line, as a library call: a
// program that registers its own workloads (workload.h) and calls it from
// main() gets everything moonpool-sim has (moonpool-sim is exactly such a
// main() over the built-in workloads): one seed or ranges of seeds, shards,
// a JSON report and `merge` of several, the determinism check, coverage
// requirements, progress, and for each failure the exact command that
// reproduces it, naming this program (argv[0]).
//
//   int main(int argc, char** argv) {
//     moonpool::chaos::WorkloadRegistry::Global().Register(
//         "mine", [] { return std::make_unique<Mine>(); });
//     return moonpool::chaos::RunSimMain(argc, argv);
//   }
//
//   ./my-sim --workload mine --seeds 1..1000 --check-determinism 50
//   ./my-sim --workload mine --seed 17          # what a failure prints
//
// Flags: the runner's own (the README lists them; `--help` prints them) are
// parsed here with absl's flag marshalling, without defining global
// ABSL_FLAGs, so they cannot clash with the program's. Every other
// `--flag` is handed to absl::ParseCommandLine, so the program's own
// ABSL_FLAGs work on the same command line (and go into the reproducing
// command). The program must not call absl::ParseCommandLine itself.
//
// What it is not: a test framework (gtest_sweep.h runs seeds inside a
// GoogleTest test), nor thread-safe: it runs the seeds one after the other
// on the calling thread. It owns nothing after it returns.
#ifndef MOONPOOL_CHAOS_SIM_MAIN_H_
#define MOONPOOL_CHAOS_SIM_MAIN_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "moonpool/chaos/seed_runner.h"

namespace moonpool::chaos {

// Runs the command line over WorkloadRegistry::Global(); returns the exit
// status: 0 every seed passed (and required coverage was reached), 1 a seed
// failed or coverage was missing, 2 bad usage (or a file that cannot be
// read or written). Results go to std::cout, usage and errors to std::cerr,
// and a progress line to std::cerr when it is a terminal.
int RunSimMain(int argc, char** argv);

// The same, writing results to `out` and usage and errors to `err` (no
// progress line unless `err` is std::cerr on a terminal). For tests.
int RunSimMain(int argc, char** argv, std::ostream& out, std::ostream& err);

// The shell command that reruns `seed` of `spec` with `program`:
// "<program> --workload W --seed N --config C [--no-buggify]
// [extra_args...] [--check-determinism]", each word quoted for a
// POSIX shell where it needs to be. `extra_args` are the program's own
// flags, as given.
std::string ReproduceCommand(absl::string_view program, const RunSpec& spec,
                             uint64_t seed,
                             absl::Span<const std::string> extra_args = {},
                             bool check_determinism = false);

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SIM_MAIN_H_
