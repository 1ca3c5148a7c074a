// The transport benchmark contract (peer_harness.h): option parsing, the
// payload and its check, latency percentiles and the JSON report.
#include "peer_harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace moonpool::bench::peers {
namespace {

std::string& ProgramName() {
  static std::string* name = new std::string("peer");
  return *name;
}

WorkloadKinds& AcceptedKinds() {
  static WorkloadKinds kinds = WorkloadKinds::kUnary;
  return kinds;
}

bool& AcceptsTls() {
  static bool accepts = false;
  return accepts;
}

bool Accepted(const Workload& w) {
  switch (AcceptedKinds()) {
    case WorkloadKinds::kUnary:
      return !w.is_stream();
    case WorkloadKinds::kStream:
      return w.is_stream();
    case WorkloadKinds::kBoth:
      return true;
  }
  return false;
}

void PrintUsage(std::FILE* out) {
  std::fprintf(out,
               "usage: %s --workload NAME [--duration_ms N] [--warmup_ms N]\n"
               "  NAME: ",
               ProgramName().c_str());
  for (const Workload& w : kWorkloads) {
    if (!Accepted(w)) continue;
    std::fprintf(out, "%.*s ", static_cast<int>(w.name.size()), w.name.data());
  }
  std::fprintf(out,
               "\n  --duration_ms  measured time after the warm-up "
               "(default 2000)\n"
               "  --warmup_ms    time run and discarded first (default 300)\n");
  if (AcceptsTls()) {
    std::fprintf(out,
                 "  NAME_tls       NAME over mutual TLS 1.3, with --certs DIR "
                 "(from moonpool-make-test-certs DIR)\n");
  }
  std::fprintf(out,
               "Prints one JSON object on stdout (benchmarks/peers/README.md)."
               "\n");
}

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", ProgramName().c_str(), message.c_str());
  PrintUsage(stderr);
  std::exit(2);
}

int64_t ParseMillis(std::string_view flag, std::string_view value) {
  if (value.empty() || value.size() > 9 ||
      !std::all_of(value.begin(), value.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    UsageError(std::string(flag) + " wants a number of milliseconds, got '" +
               std::string(value) + "'");
  }
  return std::stoll(std::string(value));
}

// Writes `value` as JSON: finite numbers with up to `digits` decimals.
std::string Number(double value, int digits) {
  if (!std::isfinite(value)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

}  // namespace

// Splits "NAME_tN" (N a number from 1 to kMaxThreads) into NAME and N.
static std::optional<std::pair<std::string_view, int>> SplitThreads(
    std::string_view name) {
  const size_t at = name.rfind("_t");
  if (at == std::string_view::npos || at + 2 == name.size()) {
    return std::nullopt;
  }
  int n = 0;
  for (char c : name.substr(at + 2)) {
    if (c < '0' || c > '9' || n > kMaxThreads) return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n < 1 || n > kMaxThreads) return std::nullopt;
  return std::make_pair(name.substr(0, at), n);
}

// Splits "NAME_tls" into NAME.
static std::optional<std::string_view> SplitTls(std::string_view name) {
  constexpr std::string_view kSuffix = "_tls";
  if (name.size() <= kSuffix.size() ||
      name.substr(name.size() - kSuffix.size()) != kSuffix) {
    return std::nullopt;
  }
  return name.substr(0, name.size() - kSuffix.size());
}

Options ParseOptionsOrDie(int argc, char** argv, WorkloadKinds kinds,
                          bool accepts_threads, bool accepts_tls) {
  AcceptedKinds() = kinds;
  AcceptsTls() = accepts_tls;
  if (argc > 0) {
    std::string_view name = argv[0];
    if (size_t slash = name.rfind('/'); slash != std::string_view::npos) {
      name.remove_prefix(slash + 1);
    }
    ProgramName() = std::string(name);
  }
  Options options;
  std::optional<Workload> workload;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintUsage(stdout);
      std::exit(0);
    }
    std::string_view flag = arg;
    std::optional<std::string_view> value;
    if (size_t eq = arg.find('='); eq != std::string_view::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (flag != "--workload" && flag != "--duration_ms" &&
        flag != "--warmup_ms" && !(accepts_tls && flag == "--certs")) {
      UsageError("unknown argument '" + std::string(arg) + "'");
    }
    if (!value) {
      if (i + 1 >= argc) UsageError(std::string(flag) + " wants a value");
      value = argv[++i];
    }
    if (flag == "--workload") {
      workload.reset();
      options.threads = 1;
      options.tls = false;
      std::string_view base = *value;
      if (auto tls = SplitTls(base); tls && accepts_tls) {
        base = *tls;
        options.tls = true;
      }
      if (auto split = SplitThreads(base); split && accepts_threads) {
        base = split->first;
        options.threads = split->second;
      }
      for (const Workload& w : kWorkloads) {
        if (w.name == base && Accepted(w) && !w.is_stream()) workload = w;
        if (w.name == *value && Accepted(w) && !options.tls) workload = w;
      }
      // The report names what was asked for: NAME_tN (a view of argv).
      if (workload) workload->name = *value;
      if (!workload) {
        UsageError("unknown workload '" + std::string(*value) + "'");
      }
    } else if (flag == "--certs") {
      options.certs_dir = std::string(*value);
    } else if (flag == "--duration_ms") {
      options.duration = std::chrono::milliseconds(ParseMillis(flag, *value));
      if (options.duration.count() == 0) UsageError("--duration_ms is 0");
    } else {
      options.warmup = std::chrono::milliseconds(ParseMillis(flag, *value));
    }
  }
  if (!workload) UsageError("--workload is required");
  if (options.tls && options.certs_dir.empty()) {
    UsageError(
        "a _tls workload needs --certs DIR (made by "
        "packages/moonpool-driver/tools/moonpool-make-test-certs DIR)");
  }
  options.workload = *workload;
  return options;
}

std::string TlsFile(const Options& options, std::string_view name) {
  return options.certs_dir + "/" + std::string(name);
}

std::string ReadFileOrDie(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) Die("cannot open " + path);
  std::string bytes;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) {
    bytes.append(buf, n);
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) Die("cannot read " + path);
  return bytes;
}

void ConfigureMalloc() {
#if defined(__GLIBC__)
  const char* choice = std::getenv("MOONPOOL_BENCH_MALLOC");
  if (choice != nullptr && std::string_view(choice) == "default") return;
  if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 ||
      mallopt(M_TRIM_THRESHOLD, 256 << 20) != 1) {
    std::fprintf(stderr, "%s: mallopt failed; glibc's defaults stay\n",
                 ProgramName().c_str());
  }
#endif
}

void Die(std::string_view message) {
  std::fprintf(stderr, "%s: %.*s\n", ProgramName().c_str(),
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(1);
}

void DieMismatch(uint64_t seq, std::string_view detail) {
  Die("reply payload mismatch for request " + std::to_string(seq) + ": " +
      std::string(detail));
}

Payload::Payload(size_t size)
    : pattern_(size), stamp_size_(std::min<size_t>(size, 8)) {
  // A pattern with period 251 (prime), so that no power-of-two shift of the
  // bytes compares equal.
  for (size_t i = 0; i < size; ++i) {
    pattern_[i] = static_cast<char>((i * 7 + 13) % 251);
  }
}

void Payload::Stamp(uint64_t seq, char* dst) const {
  for (size_t i = 0; i < stamp_size_; ++i) {
    dst[i] = static_cast<char>(seq >> (8 * i));
  }
}

void Payload::Fill(uint64_t seq, char* dst) const {
  Stamp(seq, dst);
  const std::span<const char> rest = tail();
  if (!rest.empty()) std::memcpy(dst + stamp_size_, rest.data(), rest.size());
}

bool Payload::Matches(uint64_t seq, std::span<const char> data) const {
  return data.size() == size() && MatchesAt(seq, 0, data);
}

bool Payload::MatchesAt(uint64_t seq, size_t offset,
                        std::span<const char> data) const {
  size_t i = 0;
  if (offset < stamp_size_) {
    char stamp[8];
    Stamp(seq, stamp);
    for (; i < data.size() && offset + i < stamp_size_; ++i) {
      if (data[i] != stamp[offset + i]) return false;
    }
  }
  const size_t n = data.size() - i;
  return n == 0 ||
         std::memcmp(data.data() + i, pattern_.data() + offset + i, n) == 0;
}

double LatencyRecorder::PercentileMicros(double q) {
  if (samples_.empty()) return 0;
  if (!sorted_) {
    std::sort(samples_.begin(), samples_.end());
    sorted_ = true;
  }
  const double n = static_cast<double>(samples_.size());
  size_t rank = static_cast<size_t>(std::ceil(q * n));
  rank = std::clamp<size_t>(rank, 1, samples_.size());
  return static_cast<double>(samples_[rank - 1]) / 1e3;
}

size_t EstimateSamples(uint64_t warmup_requests,
                       std::chrono::steady_clock::duration warmup,
                       std::chrono::milliseconds duration) {
  const double warmup_s = std::chrono::duration<double>(warmup).count();
  if (warmup_s <= 0) return 1 << 20;
  const double rate = static_cast<double>(warmup_requests) / warmup_s;
  const double estimate =
      rate * std::chrono::duration<double>(duration).count() * 2.0 + 4096;
  return static_cast<size_t>(std::min(estimate, 1e9));
}

void PrintReport(const Report& report, LatencyRecorder& latencies) {
  const double rps = report.seconds > 0
                         ? static_cast<double>(report.requests) / report.seconds
                         : 0;
  const double bps = rps * static_cast<double>(report.workload.payload_size);
  std::string json;
  json += "{\"peer\": \"" + report.peer + "\"";
  json += ", \"workload\": \"" + std::string(report.workload.name) + "\"";
  json += ", \"requests\": " + std::to_string(report.requests);
  json += ", \"seconds\": " + Number(report.seconds, 6);
  json += ", \"requests_per_second\": " + Number(rps, 1);
  json += ", \"bytes_per_second\": " + Number(bps, 1);
  json += ", \"latency_us\": {\"p50\": " +
          Number(latencies.PercentileMicros(0.50), 3) +
          ", \"p99\": " + Number(latencies.PercentileMicros(0.99), 3) +
          ", \"p999\": " + Number(latencies.PercentileMicros(0.999), 3) + "}";
  json += ", \"allocs_per_request\": " +
          (report.allocs_per_request ? Number(*report.allocs_per_request, 3)
                                     : std::string("null"));
  json += "}\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace moonpool::bench::peers
