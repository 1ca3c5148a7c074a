#include "moonpool/chaos/sim_main.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/marshalling.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "moonpool/chaos/trace.h"
#include "moonpool/chaos/workload.h"
#include "sim_report.h"

#ifdef MOONPOOL_PLANTED_BUGS
#include "moonpool_planted.h"
#endif

namespace moonpool::chaos {
namespace internal {

// --seeds A..B (and --seed N, a range of one). A flag value type, so absl's
// ParseFlag reads it like any other.
struct SeedRange {
  uint64_t first = 1;
  uint64_t last = 1;
};

bool AbslParseFlag(absl::string_view text, SeedRange* range,
                   std::string* error) {
  std::vector<absl::string_view> p = absl::StrSplit(text, "..");
  if (p.size() != 2 || !absl::SimpleAtoi(p[0], &range->first) ||
      !absl::SimpleAtoi(p[1], &range->last) || range->last < range->first) {
    *error = "wants A..B with A <= B";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(const SeedRange& range) {
  return absl::StrCat(range.first, "..", range.last);
}

// --shard K/N.
struct Shard {
  uint64_t index = 0;
  uint64_t count = 1;
};

bool AbslParseFlag(absl::string_view text, Shard* shard, std::string* error) {
  std::vector<absl::string_view> p = absl::StrSplit(text, '/');
  if (p.size() != 2 || !absl::SimpleAtoi(p[0], &shard->index) ||
      !absl::SimpleAtoi(p[1], &shard->count) || shard->count == 0 ||
      shard->index >= shard->count) {
    *error = "wants K/N with 0 <= K < N";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(const Shard& shard) {
  return absl::StrCat(shard.index, "/", shard.count);
}

}  // namespace internal

namespace {

using internal::FailureEntry;
using internal::SeedRange;
using internal::Shard;
using internal::SimReport;

struct Args {
  std::string program = "moonpool-sim";  // argv[0]
  RunSpec spec;
  std::string config_arg = "random";
  SeedRange seeds;
  bool seeds_given = false;
  int64_t determinism = 0;  // seeds to check twice; -1: all
  Shard shard;
  std::string json;
  std::vector<std::string> require;
  bool failures_only = false;
  bool help = false;
  bool merge = false;
  std::vector<std::string> merge_inputs;
  // The program's own flags (absl::ParseCommandLine's), as given.
  std::vector<std::string> passthrough;
};

// One of the runner's flags. `set` parses a value with absl::ParseFlag.
struct FlagDef {
  enum class Kind {
    kValue,        // --name VALUE or --name=VALUE
    kBool,         // --name, --name=true|false, --no-name
    kOptionalInt,  // --name, --name N, --name=N
  };
  std::string name;  // with dashes, as documented
  Kind kind;
  std::string value;  // placeholder in the usage
  std::string help;
  std::function<bool(absl::string_view, std::string*)> set;
};

template <typename T>
std::function<bool(absl::string_view, std::string*)> Into(T* dst) {
  return [dst](absl::string_view text, std::string* error) {
    return absl::ParseFlag(text, dst, error);
  };
}

std::vector<FlagDef> RunnerFlags(Args& a) {
  using Kind = FlagDef::Kind;
  return {
      {"workload", Kind::kValue, "NAME",
       "the workload to run (default pingpong)", Into(&a.spec.workload)},
      {"seed", Kind::kValue, "N", "run one seed",
       [&a](absl::string_view text, std::string* error) {
         uint64_t seed = 0;
         if (!absl::ParseFlag(text, &seed, error)) return false;
         a.seeds = {seed, seed};
         a.seeds_given = true;
         return true;
       }},
      {"seeds", Kind::kValue, "A..B", "run seeds A to B, both included",
       [&a](absl::string_view text, std::string* error) {
         a.seeds_given = absl::ParseFlag(text, &a.seeds, error);
         return a.seeds_given;
       }},
      {"config", Kind::kValue, "random|none|FILE",
       "each seed's fault plan: drawn from the seed (default), none, or a "
       "key=value file",
       Into(&a.config_arg)},
      {"check-determinism", Kind::kOptionalInt, "[N]",
       "run every seed (or the first N) twice and compare trace and wire "
       "hashes",
       [&a](absl::string_view text, std::string* error) {
         if (text.empty()) {
           a.determinism = -1;
           return true;
         }
         return absl::ParseFlag(text, &a.determinism, error);
       }},
      {"shard", Kind::kValue, "K/N",
       "run only seeds A+K, A+K+N, ... (0 <= K < N)", Into(&a.shard)},
      {"json", Kind::kValue, "FILE", "write the report as JSON", Into(&a.json)},
      {"require-coverage", Kind::kValue, "P1,P2,..",
       "fail if a Sometimes point with one of these prefixes never held",
       [&a](absl::string_view text, std::string* error) {
         std::vector<std::string> v;
         if (!absl::ParseFlag(text, &v, error)) return false;
         for (std::string& p : v) {
           if (!p.empty()) a.require.push_back(std::move(p));
         }
         return true;
       }},
      {"tls", Kind::kValue, "on|off",
       "every seed's transports with mutual TLS (on) or plaintext (off); "
       "default: as the plan says (a quarter of the random plans)",
       [&a](absl::string_view text, std::string* error) {
         if (text == "on" || text == "off") {
           a.spec.tls = text == "on";
           return true;
         }
         *error = "expected on or off";
         return false;
       }},
      {"buggify", Kind::kBool, "",
       "Buggify sites live (default; --no-buggify turns them off)",
       Into(&a.spec.buggify)},
      {"failures-only", Kind::kBool, "", "print only failed seeds",
       Into(&a.failures_only)},
  };
}

std::string Basename(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path
                                                      : path.substr(slash + 1));
}

std::string Usage(const Args& a) {
  const std::string p = Basename(a.program);
  const std::string pad(p.size(), ' ');
  std::string u = absl::StrCat(
      "usage: ", p, " [--workload NAME] (--seed N | --seeds A..B)\n", pad,
      "        [--config random|none|FILE] [--tls on|off]\n", pad,
      "        [--check-determinism [N]]\n", pad,
      "        [--shard K/N] [--json FILE] [--require-coverage P,..]\n", pad,
      "        [--no-buggify] [--failures-only] [the program's own flags]\n",
      "       ", p, " merge A.json B.json ... [--json OUT]\n", pad,
      "        [--require-coverage P,..]\n\nflags (--x-y and --x_y are the "
      "same; a value follows as --flag=V or --flag V):\n");
  Args scratch;
  for (const FlagDef& f : RunnerFlags(scratch)) {
    std::string left =
        absl::StrCat("--", f.kind == FlagDef::Kind::kBool && f.name == "buggify"
                               ? "[no-]buggify"
                               : f.name);
    if (!f.value.empty()) absl::StrAppend(&left, " ", f.value);
    absl::StrAppendFormat(&u, "  %-36s %s\n", left, f.help);
  }
  absl::StrAppend(&u, "\nworkloads: ",
                  absl::StrJoin(WorkloadRegistry::Global().Names(), ", "),
                  "\n");
  // The program's own ABSL_FLAGs (absl's built-in ones left out).
  std::vector<std::string> own;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
    own.push_back(absl::StrFormat("  --%-34s %s (default %s)\n", name,
                                  flag->Help(), flag->DefaultValue()));
  }
  std::sort(own.begin(), own.end());
  if (!own.empty()) {
    absl::StrAppend(&u, "\nthe program's own flags:\n", absl::StrJoin(own, ""));
  }
  return u;
}

// The program's ABSL_FLAG called `name`, taking a leading "no" of a bool
// flag into account; null if there is none.
const absl::CommandLineFlag* ProgramFlag(absl::string_view name,
                                         bool* is_bool) {
  const absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
  if (f == nullptr && absl::StartsWith(name, "no")) {
    f = absl::FindCommandLineFlag(name.substr(2));
    if (f != nullptr && !f->IsOfType<bool>()) f = nullptr;
  }
  *is_bool = f != nullptr && f->IsOfType<bool>();
  return f;
}

absl::Status ParseArgs(int argc, char** argv, Args& a) {
  if (argc > 0 && argv[0] != nullptr && argv[0][0] != '\0') {
    a.program = argv[0];
  }
  std::vector<std::string> v;
  for (int i = 1; i < argc; ++i) v.emplace_back(argv[i]);
  size_t i = 0;
  if (!v.empty() && v[0] == "merge") {
    a.merge = true;
    ++i;
  }
  const std::vector<FlagDef> flags = RunnerFlags(a);
  for (; i < v.size(); ++i) {
    const std::string& arg = v[i];
    if (arg.size() < 2 || arg[0] != '-') {
      if (!a.merge) {
        return absl::InvalidArgumentError("unexpected argument " + arg);
      }
      a.merge_inputs.push_back(arg);
      continue;
    }
    absl::string_view body = arg;
    absl::ConsumePrefix(&body, "-");
    absl::ConsumePrefix(&body, "-");
    const size_t eq = body.find('=');
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view raw_name = body.substr(0, eq);
    const absl::string_view inline_value =
        has_value ? body.substr(eq + 1) : absl::string_view();
    const std::string name = absl::StrReplaceAll(raw_name, {{"_", "-"}});
    if (name == "help" || name == "h") {
      a.help = true;
      continue;
    }
    const FlagDef* def = nullptr;
    bool negated = false;
    for (const FlagDef& f : flags) {
      if (f.name == name) def = &f;
    }
    if (def == nullptr) {
      absl::string_view rest = name;
      if (absl::ConsumePrefix(&rest, "no")) {
        absl::ConsumePrefix(&rest, "-");
        for (const FlagDef& f : flags) {
          if (f.name == rest && f.kind == FlagDef::Kind::kBool) def = &f;
        }
        negated = def != nullptr;
      }
    }
    if (def == nullptr) {
      // Not the runner's: one of the program's own ABSL_FLAGs, or a typo.
      bool is_bool = false;
      if (ProgramFlag(raw_name, &is_bool) == nullptr) {
        return absl::InvalidArgumentError("unknown flag " + arg);
      }
      a.passthrough.push_back(arg);
      if (!has_value && !is_bool) {
        if (i + 1 >= v.size()) {
          return absl::InvalidArgumentError(arg + " needs a value");
        }
        a.passthrough.push_back(v[++i]);
      }
      continue;
    }
    std::string error;
    bool ok = true;
    switch (def->kind) {
      case FlagDef::Kind::kValue:
        if (has_value) {
          ok = def->set(inline_value, &error);
        } else if (i + 1 < v.size()) {
          ok = def->set(v[++i], &error);
        } else {
          return absl::InvalidArgumentError(arg + " needs a value");
        }
        break;
      case FlagDef::Kind::kBool:
        if (negated && has_value) {
          return absl::InvalidArgumentError(arg + " takes no value");
        }
        ok = def->set(negated ? "false" : (has_value ? inline_value : "true"),
                      &error);
        break;
      case FlagDef::Kind::kOptionalInt: {
        int64_t n = 0;
        if (has_value) {
          ok = def->set(inline_value, &error);
        } else if (i + 1 < v.size() && absl::SimpleAtoi(v[i + 1], &n)) {
          ok = def->set(v[++i], &error);
        } else {
          ok = def->set("", &error);
        }
        break;
      }
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", def->name, ": ", error));
    }
  }
  if (a.help) return absl::OkStatus();
  if (a.merge) {
    if (a.merge_inputs.empty()) {
      return absl::InvalidArgumentError("merge: no inputs");
    }
    return absl::OkStatus();
  }
  if (!a.seeds_given) {
    return absl::InvalidArgumentError("--seed or --seeds is required");
  }
  return SetConfig(a.config_arg, a.spec);
}

// Hands the program's own flags to absl, which sets its ABSL_FLAGs.
void ParseProgramFlags(const Args& a) {
  if (a.passthrough.empty()) return;
  std::vector<std::string> words = {a.program};
  words.insert(words.end(), a.passthrough.begin(), a.passthrough.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  absl::ParseCommandLine(static_cast<int>(argv.size() - 1), argv.data());
}

// A program flag named like one of the runner's can only be set through
// absl's other sources (--flagfile): the runner's name wins on the command
// line. Say so rather than ignore it silently.
void WarnShadowedProgramFlags(const Args& a, std::ostream& err) {
  Args scratch;
  for (const FlagDef& f : RunnerFlags(scratch)) {
    const std::string absl_name = absl::StrReplaceAll(f.name, {{"-", "_"}});
    if (absl::FindCommandLineFlag(absl_name) != nullptr) {
      err << Basename(a.program) << ": warning: the program's flag --"
          << absl_name << " is shadowed by the runner's --" << f.name << "\n";
    }
  }
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

int Finish(const Args& a, const SimReport& report, double wall_seconds,
           std::ostream& out, std::ostream& err) {
  out << "\n== coverage (" << report.seeds_run << " seeds) ==\n"
      << report.CoverageText();
  const std::vector<std::string> holes = report.Holes(a.require);
  int rc = report.failures.empty() ? 0 : 1;
  if (!a.require.empty() && !holes.empty()) {
    out << "coverage holes (required):";
    for (const std::string& h : holes) out << " " << h;
    out << "\n";
    rc = 1;
  }
  out << absl::StrFormat(
      "== summary: %d seeds, %d failed, %d requests, %d round trips",
      report.seeds_run, report.failures.size(), report.requests,
      report.round_trips);
  if (wall_seconds > 0) {
    out << absl::StrFormat(", %.2f s, %.0f seeds/s", wall_seconds,
                           report.seeds_run / wall_seconds);
  }
  out << " ==\n";
  for (const FailureEntry& f : report.failures) {
    out << "  FAILED seed " << f.seed << ": " << f.error
        << "\n    reproduce: " << f.reproduce << "\n";
  }
  if (!a.json.empty()) {
    std::ofstream file(a.json);
    file << report.ToJson();
    if (!file) {
      err << Basename(a.program) << ": cannot write " << a.json << "\n";
      return 2;
    }
  }
  return rc;
}

int Merge(const Args& a, std::ostream& out, std::ostream& err) {
  SimReport total;
  for (const std::string& path : a.merge_inputs) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<SimReport> r = SimReport::FromJson(text.str());
    if (!in || !r.ok()) {
      err << Basename(a.program) << " merge: " << path << ": "
          << (r.ok() ? std::string("cannot read") : r.status().ToString())
          << "\n";
      return 2;
    }
    total.Merge(*r);
  }
  out << "merged " << a.merge_inputs.size() << " reports\n";
  return Finish(a, total, 0, out, err);
}

// The seeds of this shard: first+index, first+index+count, ... up to last.
uint64_t ShardSize(const SeedRange& seeds, const Shard& shard) {
  const uint64_t span = seeds.last - seeds.first;  // seeds in range - 1
  if (shard.index > span) return 0;
  return (span - shard.index) / shard.count + 1;
}

int Sweep(const Args& a, std::ostream& out, std::ostream& err) {
  const bool tty = &err == &std::cerr && isatty(STDERR_FILENO) != 0;
  SimReport report;
  report.workload = a.spec.workload;
  report.config = a.config_arg;
  const uint64_t total = ShardSize(a.seeds, a.shard);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  int64_t checked = 0;
  for (uint64_t i = 0; i < total; ++i) {
    const uint64_t seed = a.seeds.first + a.shard.index + i * a.shard.count;
    SeedResult r = RunSeed(a.spec, seed);
    const bool twice = a.determinism < 0 || checked < a.determinism;
    std::string divergence;
    if (twice) {
      ++checked;
      SeedResult again = RunSeed(a.spec, seed);
      divergence = CompareRuns(r, again);
      if (again.trace_hash != r.trace_hash) {
        absl::StrAppend(&divergence, "; ", Divergence(a.spec, seed));
      }
    }
    ++report.seeds_run;
    report.requests += r.stats.requests;
    report.round_trips += r.stats.round_trips;
    report.hashes.emplace_back(seed, r.trace_hash);
    report.AddCoverage(r.assertions);
    if (tty) err << "\r\033[K";
    const bool failed = !r.status.ok() || !divergence.empty();
    if (!failed && !a.failures_only) {
      out << absl::StrFormat(
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
      f.reproduce = ReproduceCommand(a.program, a.spec, seed, a.passthrough,
                                     !divergence.empty());
      f.trace_tail = r.trace_tail;
      out << absl::StrFormat("seed %d FAILED hash=%016x\n  broken: %s\n", seed,
                             r.trace_hash, f.error)
          << "  chaos: " << r.chaos << "\n"
          << "  trace tail:\n";
      for (absl::string_view line :
           absl::StrSplit(f.trace_tail, '\n', absl::SkipEmpty())) {
        out << "    " << line << "\n";
      }
      out << "  reproduce: " << f.reproduce << "\n";
      report.failures.push_back(std::move(f));
    }
    if (tty) {
      err << absl::StrFormat("[%d/%d] %d failed, %.0f seeds/s", i + 1, total,
                             report.failures.size(),
                             (i + 1) / std::max(elapsed(), 1e-9));
    }
    out.flush();
  }
  if (tty) err << "\r\033[K";
  return Finish(a, report, elapsed(), out, err);
}

// A word as a POSIX shell reads it back: unchanged when it has only safe
// characters, else in single quotes.
std::string ShellQuote(absl::string_view word) {
  const bool safe =
      !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
               absl::StrContains("-_./=,:+@%", c);
      });
  if (safe) return std::string(word);
  return absl::StrCat("'", absl::StrReplaceAll(word, {{"'", "'\\''"}}), "'");
}

}  // namespace

std::string ReproduceCommand(absl::string_view program, const RunSpec& spec,
                             uint64_t seed,
                             absl::Span<const std::string> extra_args,
                             bool check_determinism) {
  std::vector<std::string> words = {
      ShellQuote(program), "--workload", ShellQuote(spec.workload),  "--seed",
      absl::StrCat(seed),  "--config",   ShellQuote(ConfigArg(spec))};
  if (spec.tls.has_value()) {
    words.push_back("--tls");
    words.push_back(*spec.tls ? "on" : "off");
  }
  if (!spec.buggify) words.push_back("--no-buggify");
#ifdef MOONPOOL_PLANTED_BUGS
  // The test-only build takes its planted bug from the environment: the
  // command sets it again.
  if (*moonpool_planted::ActiveName() != '\0') {
    words.insert(words.begin(),
                 absl::StrCat("MOONPOOL_PLANTED_BUG=",
                              ShellQuote(moonpool_planted::ActiveName())));
  }
#endif
  for (const std::string& extra : extra_args) {
    words.push_back(ShellQuote(extra));
  }
  if (check_determinism) words.push_back("--check-determinism");
  return absl::StrJoin(words, " ");
}

int RunSimMain(int argc, char** argv, std::ostream& out, std::ostream& err) {
  Args a;
  const absl::Status parsed = ParseArgs(argc, argv, a);
  if (!parsed.ok() || a.help) {
    if (!parsed.ok())
      err << Basename(a.program) << ": " << parsed.message() << "\n";
    err << Usage(a);
    return parsed.ok() ? 0 : 2;
  }
  WarnShadowedProgramFlags(a, err);
  ParseProgramFlags(a);
  if (a.merge) return Merge(a, out, err);
  if (!WorkloadRegistry::Global().Contains(a.spec.workload)) {
    err << Basename(a.program) << ": no workload '" << a.spec.workload
        << "'; known: "
        << absl::StrJoin(WorkloadRegistry::Global().Names(), ", ") << "\n";
    return 2;
  }
  return Sweep(a, out, err);
}

int RunSimMain(int argc, char** argv) {
  return RunSimMain(argc, argv, std::cout, std::cerr);
}

}  // namespace moonpool::chaos
