// moonpool-sim: runs a workload over many seeds of the simulation, checks
// every run's invariants (and, if asked, its determinism), and prints the
// command that reproduces each failure. See the chaos README.
//
//   moonpool-sim --workload pingpong --seeds 1..1000 --config random
//   moonpool-sim --seed 42                      # one seed, to reproduce
//   moonpool-sim --seeds 1..100000 --shard 3/16 --json shard3.json
//   moonpool-sim merge shard*.json
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/trace.h"
#include "sim_report.h"

namespace moonpool::chaos::tools {
namespace {

constexpr char kUsage[] =
    "usage: moonpool-sim [--workload NAME] (--seed N | --seeds A..B)\n"
    "                    [--config random|none|FILE] [--check-determinism "
    "[N]]\n"
    "                    [--shard K/N] [--json FILE] [--require-coverage "
    "P,..]\n"
    "                    [--no-buggify] [--failures-only]\n"
    "                    [--test-only-plant-stall-is-close]\n"
    "       moonpool-sim merge A.json B.json ... [--json OUT]\n"
    "                    [--require-coverage P,..]\n";

struct Args {
  RunSpec spec;
  std::string config_arg = "random";
  uint64_t first = 1, last = 1;
  bool seeds_given = false;
  int64_t determinism = 0;  // seeds to check twice; -1: all
  uint64_t shard = 0, shards = 1;
  std::string json;
  std::vector<std::string> require;
  bool failures_only = false;
  std::vector<std::string> merge_inputs;
  bool merge = false;
};

absl::Status ParseArgs(int argc, char** argv, Args& a) {
  std::vector<std::string> v(argv + 1, argv + argc);
  if (!v.empty() && v[0] == "merge") {
    a.merge = true;
    v.erase(v.begin());
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string& f = v[i];
    auto next = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= v.size())
        return absl::InvalidArgumentError(f + " needs a value");
      return v[++i];
    };
    if (f == "--workload") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      a.spec.workload = *s;
    } else if (f == "--seed") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      if (!absl::SimpleAtoi(*s, &a.first))
        return absl::InvalidArgumentError("bad --seed");
      a.last = a.first;
      a.seeds_given = true;
    } else if (f == "--seeds") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      std::vector<std::string> p = absl::StrSplit(*s, "..");
      if (p.size() != 2 || !absl::SimpleAtoi(p[0], &a.first) ||
          !absl::SimpleAtoi(p[1], &a.last) || a.last < a.first) {
        return absl::InvalidArgumentError("--seeds wants A..B with A <= B");
      }
      a.seeds_given = true;
    } else if (f == "--config") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      a.config_arg = *s;
    } else if (f == "--check-determinism") {
      a.determinism = -1;
      int64_t n = 0;
      if (i + 1 < v.size() && absl::SimpleAtoi(v[i + 1], &n)) {
        a.determinism = n;
        ++i;
      }
    } else if (f == "--shard") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      std::vector<std::string> p = absl::StrSplit(*s, '/');
      if (p.size() != 2 || !absl::SimpleAtoi(p[0], &a.shard) ||
          !absl::SimpleAtoi(p[1], &a.shards) || a.shards == 0 ||
          a.shard >= a.shards) {
        return absl::InvalidArgumentError("--shard wants K/N with 0 <= K < N");
      }
    } else if (f == "--json") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      a.json = *s;
    } else if (f == "--require-coverage") {
      absl::StatusOr<std::string> s = next();
      if (!s.ok()) return s.status();
      for (absl::string_view p : absl::StrSplit(*s, ',', absl::SkipEmpty())) {
        a.require.emplace_back(p);
      }
    } else if (f == "--no-buggify") {
      a.spec.buggify = false;
    } else if (f == "--failures-only") {
      a.failures_only = true;
    } else if (f == "--test-only-plant-stall-is-close") {
      a.spec.plant_stall_is_close = true;
    } else if (f == "--test-only-plant-workload-bug") {
      a.spec.plant_workload_bug = true;
    } else if (f == "--help" || f == "-h") {
      return absl::CancelledError("help");
    } else if (a.merge && !f.empty() && f[0] != '-') {
      a.merge_inputs.push_back(f);
    } else {
      return absl::InvalidArgumentError("unknown argument " + f);
    }
  }
  if (a.merge) {
    if (a.merge_inputs.empty())
      return absl::InvalidArgumentError("merge: no inputs");
    return absl::OkStatus();
  }
  if (!a.seeds_given)
    return absl::InvalidArgumentError("--seed or --seeds is required");
  if (a.config_arg == "random") {
    a.spec.config = ConfigMode::kRandom;
  } else if (a.config_arg == "none") {
    a.spec.config = ConfigMode::kNone;
  } else {
    a.spec.config = ConfigMode::kFile;
    absl::StatusOr<ChaosConfig> c = ReadChaosConfigFile(a.config_arg);
    if (!c.ok()) return c.status();
    a.spec.file_config = *c;
  }
  return absl::OkStatus();
}

std::string Reproduce(const Args& a, uint64_t seed, bool determinism) {
  std::string cmd = absl::StrCat("moonpool-sim --workload ", a.spec.workload,
                                 " --seed ", seed, " --config ", a.config_arg);
  if (!a.spec.buggify) cmd += " --no-buggify";
  if (a.spec.plant_stall_is_close) cmd += " --test-only-plant-stall-is-close";
  if (a.spec.plant_workload_bug) cmd += " --test-only-plant-workload-bug";
  if (determinism) cmd += " --check-determinism";
  return cmd;
}

// Runs `seed` twice with full traces and names the first divergent event.
std::string Divergence(const RunSpec& spec, uint64_t seed) {
  RunSpec full = spec;
  full.keep_full_trace = true;
  SeedResult x = RunSeed(full, seed);
  SeedResult y = RunSeed(full, seed);
  const int64_t at = FirstDivergence(x.full_trace, y.full_trace);
  if (at < 0) return "the full traces agree on rerun (flaky nondeterminism)";
  auto show = [&](const std::vector<TraceEvent>& t) {
    return static_cast<size_t>(at) < t.size() ? t[at].ToString()
                                              : std::string("(end of trace)");
  };
  return absl::StrCat("first divergent event #", at,
                      ":\n    run 1: ", show(x.full_trace),
                      "\n    run 2: ", show(y.full_trace));
}

int Finish(const Args& a, const SimReport& report, double wall_seconds) {
  std::cout << "\n== coverage (" << report.seeds_run << " seeds) ==\n"
            << report.CoverageText();
  const std::vector<std::string> holes = report.Holes(a.require);
  int rc = report.failures.empty() ? 0 : 1;
  if (!a.require.empty() && !holes.empty()) {
    std::cout << "coverage holes (required):";
    for (const std::string& h : holes) std::cout << " " << h;
    std::cout << "\n";
    rc = 1;
  }
  std::cout << absl::StrFormat(
      "== summary: %d seeds, %d failed, %d requests, %d round trips",
      report.seeds_run, report.failures.size(), report.requests,
      report.round_trips);
  if (wall_seconds > 0) {
    std::cout << absl::StrFormat(", %.2f s, %.0f seeds/s", wall_seconds,
                                 report.seeds_run / wall_seconds);
  }
  std::cout << " ==\n";
  for (const FailureEntry& f : report.failures) {
    std::cout << "  FAILED seed " << f.seed << ": " << f.error
              << "\n    reproduce: " << f.reproduce << "\n";
  }
  if (!a.json.empty()) {
    std::ofstream out(a.json);
    out << report.ToJson();
    if (!out) {
      std::cerr << "cannot write " << a.json << "\n";
      return 2;
    }
  }
  return rc;
}

int Merge(const Args& a) {
  SimReport total;
  for (const std::string& path : a.merge_inputs) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<SimReport> r = SimReport::FromJson(text.str());
    if (!in || !r.ok()) {
      std::cerr << "moonpool-sim merge: " << path << ": "
                << (r.ok() ? std::string("cannot read") : r.status().ToString())
                << "\n";
      return 2;
    }
    total.Merge(*r);
  }
  std::cout << "merged " << a.merge_inputs.size() << " reports\n";
  return Finish(a, total, 0);
}

int Main(int argc, char** argv) {
  Args a;
  if (absl::Status s = ParseArgs(argc, argv, a); !s.ok()) {
    if (!absl::IsCancelled(s))
      std::cerr << "moonpool-sim: " << s.message() << "\n";
    std::cerr << kUsage;
    return absl::IsCancelled(s) ? 0 : 2;
  }
  if (a.merge) return Merge(a);
  if (absl::StatusOr<std::unique_ptr<Workload>> w =
          WorkloadRegistry::Global().Make(a.spec.workload);
      !w.ok()) {
    std::cerr << "moonpool-sim: " << w.status().message() << "\n";
    return 2;
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  SimReport report;
  report.workload = a.spec.workload;
  report.config = a.config_arg;
  std::vector<uint64_t> seeds;
  for (uint64_t s = a.first;; ++s) {
    if ((s - a.first) % a.shards == a.shard) seeds.push_back(s);
    if (s == a.last) break;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  int64_t checked = 0;
  for (size_t i = 0; i < seeds.size(); ++i) {
    const uint64_t seed = seeds[i];
    SeedResult r = RunSeed(a.spec, seed);
    const bool twice = a.determinism < 0 || checked < a.determinism;
    std::string divergence;
    if (twice) {
      ++checked;
      SeedResult again = RunSeed(a.spec, seed);
      if (again.trace_hash != r.trace_hash) {
        divergence = absl::StrFormat(
            "nondeterminism: trace hash %016x then %016x; %s", r.trace_hash,
            again.trace_hash, Divergence(a.spec, seed));
      }
    }
    ++report.seeds_run;
    report.requests += r.stats.requests;
    report.round_trips += r.stats.round_trips;
    report.hashes.emplace_back(seed, r.trace_hash);
    report.AddCoverage(r.assertions);
    if (tty) std::cerr << "\r\033[K";
    const bool failed = !r.status.ok() || !divergence.empty();
    if (!failed && !a.failures_only) {
      std::cout << absl::StrFormat(
          "seed %d ok hash=%016x events=%d requests=%d replies=%d vt=%s%s\n",
          seed, r.trace_hash, r.trace_events, r.stats.requests,
          r.stats.round_trips, absl::FormatDuration(r.stats.virtual_time),
          twice ? " deterministic" : "");
    }
    if (failed) {
      FailureEntry f;
      f.seed = seed;
      f.error = !r.status.ok() ? r.status.ToString() : divergence;
      if (!r.status.ok() && !divergence.empty()) f.error += "; " + divergence;
      f.reproduce = Reproduce(a, seed, !divergence.empty());
      f.trace_tail = r.trace_tail;
      std::cout << absl::StrFormat("seed %d FAILED hash=%016x\n  broken: %s\n",
                                   seed, r.trace_hash, f.error)
                << "  chaos: " << r.chaos << "\n"
                << "  trace tail:\n";
      for (absl::string_view line :
           absl::StrSplit(f.trace_tail, '\n', absl::SkipEmpty())) {
        std::cout << "    " << line << "\n";
      }
      std::cout << "  reproduce: " << f.reproduce << "\n";
      report.failures.push_back(std::move(f));
    }
    if (tty) {
      std::cerr << absl::StrFormat("[%d/%d] %d failed, %.0f seeds/s", i + 1,
                                   seeds.size(), report.failures.size(),
                                   (i + 1) / std::max(elapsed(), 1e-9));
    }
    std::cout.flush();
  }
  if (tty) std::cerr << "\r\033[K";
  return Finish(a, report, elapsed());
}

}  // namespace
}  // namespace moonpool::chaos::tools

int main(int argc, char** argv) {
  return moonpool::chaos::tools::Main(argc, argv);
}
