// moonpool-chaos-pingpong: the transport's outcome promises (DESIGN.md
// section 6) checked on real sockets under injected faults. A client of a
// real echo server (moonpool-echo-server) whose loop is a FaultyLoop around
// a UvLoop: delays, partial writes, short reads, resets, refused and hung
// connects, from one seed.
//
//   moonpool-chaos-pingpong --connect HOST:PORT [--seed N]
//       [--config random|none|storm|FILE] [--requests N] [--quiet-requests N]
//       [--connections N] [--in-flight K] [--payload BYTES]
//       [--idempotent all|none|mixed] [--timeout SECONDS] [--json FILE]
//
// Phase one sends --requests requests with the faults on; phase two turns
// them off (after a short grace for faults already decided) and sends
// --quiet-requests more. Every request carries its id in its payload, so a
// reply is checked against its own request.
//
// Violations (each makes the exit status 1):
//   - a reply whose payload is not its request's;
//   - a request with no outcome after its deadline (silence);
//   - in phase one, an error other than DeadlineExceeded, Unavailable and
//     Aborted ("maybe delivered"), or Aborted for an idempotent request
//     (those are sent again instead);
//   - in phase two, anything but the right reply.
// Outcome counts and injected fault counts go to stdout (and, with --json,
// to FILE).
//
// SIGINT or SIGTERM ends the run early (transport::GracefulShutdown): no
// new request starts, those in flight finish, the quiet phase is skipped
// and the summary covers what ran; a second signal closes the
// ClientTransports at once (what was in flight fails with Cancelled, which
// then is no violation).
//
// Exit status: 0 when every promise held; 1 for a violation; 128 + the
// signal's number (130 for SIGINT) for a run a signal ended early without a
// violation; 2 for a flag value out of range (absl's own flag errors, and
// --help, exit 1).
//
// `--config random` draws ChaosConfig::Random from the seed (swarm: some
// families off); `storm` turns every kind the shim applies on at rates that
// make each happen within a few seconds; FILE is a key=value plan in the
// format moonpool-sim reads (ReadChaosConfigFile, seed_runner.h).
#include <signal.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/faulty_loop.h"
#include "moonpool/chaos/seed_runner.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/graceful_shutdown.h"
#include "moonpool/transport/program_flags.h"
#include "moonpool/transport/request_options.h"

ABSL_FLAG(std::string, connect, "",
          "HOST:PORT of the echo server, HOST a name or an IP literal "
          "(required)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the fault decisions");
ABSL_FLAG(std::string, config, "storm",
          "random (drawn from the seed), none, storm (every fault kind, "
          "often), or FILE (key=value, as moonpool-sim reads it)");
ABSL_FLAG(uint64_t, requests, 2000, "requests with faults on");
ABSL_FLAG(uint64_t, quiet_requests, 200, "requests after the faults are off");
ABSL_FLAG(size_t, connections, 4, "ClientTransports, one connection each");
ABSL_FLAG(size_t, in_flight, 4, "requests in flight per connection");
ABSL_FLAG(size_t, payload, 256, "payload size in bytes, 8 to 8 MiB");
ABSL_FLAG(std::string, idempotent, "mixed",
          "which requests are idempotent: all, none or mixed (odd ids)");
ABSL_FLAG(double, timeout, 2, "each request's deadline, in seconds");
ABSL_FLAG(std::string, json, "", "also write the summary to this file as JSON");

namespace {

using moonpool::chaos::ChaosConfig;
using moonpool::chaos::FaultCounts;
using moonpool::chaos::FaultyLoop;
using moonpool::chaos::SimRandom;
using moonpool::driver::Address;
using moonpool::driver::HostPort;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::ClientOptions;
using moonpool::transport::ClientTransport;
using moonpool::transport::RequestOptions;

using moonpool::transport::GracefulShutdown;
using moonpool::transport::GracefulShutdownOptions;
using moonpool::transport::ShutdownStep;
using moonpool::transport::UsageError;

constexpr char kProgram[] = "moonpool-chaos-pingpong";
constexpr char kUsage[] =
    "the transport's outcome promises checked on real sockets under\n"
    "injected faults, against a real echo server.\n\n"
    "  moonpool-chaos-pingpong --connect HOST:PORT [--seed N]\n"
    "      [--config random|none|storm|FILE] [--requests N]\n"
    "      [--quiet-requests N] [--connections N] [--in-flight K]\n"
    "      [--payload BYTES] [--idempotent all|none|mixed]\n"
    "      [--timeout SECONDS] [--json FILE]\n\n"
    "Flag names take dashes or underscores. SIGINT/SIGTERM: stop starting\n"
    "requests and report; a second one: cancel what is in flight.";

struct Flags {
  std::string connect;
  uint64_t seed;
  std::string config;
  uint64_t requests;
  uint64_t quiet_requests;
  size_t connections;
  size_t in_flight;
  size_t payload;
  std::string idempotent;
  double timeout_s;
  std::string json;
};

Flags ReadFlags(int argc, char** argv) {
  moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
  Flags f;
  f.connect = absl::GetFlag(FLAGS_connect);
  f.seed = absl::GetFlag(FLAGS_seed);
  f.config = absl::GetFlag(FLAGS_config);
  f.requests = absl::GetFlag(FLAGS_requests);
  f.quiet_requests = absl::GetFlag(FLAGS_quiet_requests);
  f.connections = absl::GetFlag(FLAGS_connections);
  f.in_flight = absl::GetFlag(FLAGS_in_flight);
  f.payload = absl::GetFlag(FLAGS_payload);
  f.idempotent = absl::GetFlag(FLAGS_idempotent);
  f.timeout_s = absl::GetFlag(FLAGS_timeout);
  f.json = absl::GetFlag(FLAGS_json);
  if (f.connect.empty()) UsageError(kProgram, "--connect is required");
  if (f.config.empty()) UsageError(kProgram, "--config is empty");
  if (f.connections == 0) UsageError(kProgram, "--connections is 0");
  if (f.in_flight == 0) UsageError(kProgram, "--in-flight is 0");
  if (f.payload < 8 || f.payload > (size_t{8} << 20)) {
    UsageError(kProgram, "--payload is not within 8 bytes to 8 MiB");
  }
  if (f.idempotent != "all" && f.idempotent != "none" &&
      f.idempotent != "mixed") {
    UsageError(kProgram, "--idempotent is not all, none or mixed");
  }
  if (!(f.timeout_s > 0)) UsageError(kProgram, "--timeout is not > 0");
  return f;
}

// Every kind FaultyLoop applies, often enough that each happens within a
// few seconds of load; delays short enough that deadlines mostly hold.
ChaosConfig Storm() {
  ChaosConfig c;
  c.clog_probability = 0.02;
  c.stall_min = absl::Milliseconds(1);
  c.stall_max = absl::Milliseconds(100);
  c.latency.tail_probability = 0.05;
  c.latency.tail_mean = absl::Milliseconds(10);
  c.latency.max = absl::Milliseconds(100);
  c.reset_probability = 0.02;
  c.connect_refused_probability = 0.3;
  c.connect_hang_probability = 0.25;
  c.partial_write_probability = 0.3;
  c.short_read_probability = 0.3;
  return c;
}

// The payload of request `id`: the id, then bytes derived from it.
std::string PayloadFor(uint64_t id, size_t size) {
  std::string p(size, '\0');
  std::memcpy(p.data(), &id, sizeof(id));
  uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = sizeof(id); i < size; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<char>(x >> 56);
  }
  return p;
}

struct Phase {
  const char* name = "quiet";
  bool faults = false;
  uint64_t total = 0;  // requests to send
  uint64_t next = 0;   // requests started
  uint64_t completed = 0;
  uint64_t ok = 0;
  std::map<absl::StatusCode, uint64_t> errors;
  uint64_t violations = 0;
  size_t live_workers = 0;
};

struct Run {
  FaultyLoop* loop = nullptr;
  Flags flags;
  HostPort server;
  uint64_t next_id = 0;
  Phase* current = nullptr;  // the phase running
  // The signal that ended the run early (0: none), and whether a second
  // one closed the clients (so Cancelled is expected).
  int stop_signal = 0;
  bool closed_now = false;
};

void Violation(Phase& phase, const std::string& what) {
  if (++phase.violations <= 20) {
    std::fprintf(stderr, "moonpool-chaos-pingpong: VIOLATION (%s): %s\n",
                 phase.name, what.c_str());
  }
}

bool Idempotent(const Flags& flags, uint64_t id) {
  if (flags.idempotent == "all") return true;
  if (flags.idempotent == "none") return false;
  return id % 2 == 1;
}

Task<void> Worker(Run& run, Phase& phase, ClientTransport& client) {
  while (phase.next < phase.total) {
    ++phase.next;
    const uint64_t id = ++run.next_id;
    const std::string payload = PayloadFor(id, run.flags.payload);
    RequestOptions options;
    options.timeout = absl::Seconds(run.flags.timeout_s);
    options.idempotent = Idempotent(run.flags, id);
    absl::StatusOr<std::string> reply =
        co_await client.Request<std::string>(run.server, payload, options);
    ++phase.completed;
    if (reply.ok()) {
      if (*reply == payload) {
        ++phase.ok;
      } else {
        Violation(phase,
                  absl::StrCat("request ", id, ": reply of ", reply->size(),
                               " bytes is not its payload"));
      }
      continue;
    }
    const absl::StatusCode code = reply.status().code();
    ++phase.errors[code];
    const bool allowed =
        (phase.faults &&
         (code == absl::StatusCode::kDeadlineExceeded ||
          code == absl::StatusCode::kUnavailable ||
          (code == absl::StatusCode::kAborted && !options.idempotent))) ||
        (run.closed_now && code == absl::StatusCode::kCancelled);
    if (!allowed) {
      Violation(phase, absl::StrCat("request ", id,
                                    options.idempotent ? " (idempotent)" : "",
                                    ": ", reply.status().ToString()));
    }
    // Errors may come at once (a refused connect): do not spin.
    co_await moonpool::driver::Sleep(*run.loop, absl::Milliseconds(1));
  }
  --phase.live_workers;
}

// Runs `phase` to the end; false if a request went silent.
bool RunPhase(Run& run, Phase& phase,
              std::vector<std::unique_ptr<ClientTransport>>& clients,
              TaskScope& scope) {
  run.current = &phase;
  for (auto& client : clients) {
    for (size_t k = 0; k < run.flags.in_flight; ++k) {
      ++phase.live_workers;
      scope.Spawn(Worker(run, phase, *client));
    }
  }
  // Each request ends by its deadline; a generous bound on the phase.
  const double per_request =
      run.flags.timeout_s + 1.0;  // deadline plus a sleep, worst case
  const double slots =
      static_cast<double>(run.flags.connections * run.flags.in_flight);
  const absl::Time give_up =
      run.loop->Now() +
      absl::Seconds(
          per_request * (static_cast<double>(phase.total) / slots + 1) + 5);
  run.loop->RunUntil([&] { return phase.live_workers == 0; }, give_up);
  const uint64_t silent = phase.next - phase.completed;
  if (silent != 0) {
    Violation(phase, absl::StrCat(silent, " request(s) had no outcome"));
  }
  return silent == 0;
}

// The program's drain: the signal has stopped the phase from starting
// requests; this ends when its last one has its outcome.
Task<void> WorkersDone(Run& run) {
  while (run.current != nullptr && run.current->live_workers > 0) {
    co_await moonpool::driver::Sleep(*run.loop, absl::Milliseconds(5));
  }
}

std::string Outcomes(const Phase& p, bool json) {
  std::string out =
      json ? absl::StrCat("\"OK\": ", p.ok) : absl::StrCat("OK=", p.ok);
  for (const auto& [code, n] : p.errors) {
    if (json) {
      absl::StrAppend(&out, ", \"", absl::StatusCodeToString(code), "\": ", n);
    } else {
      absl::StrAppend(&out, " ", absl::StatusCodeToString(code), "=", n);
    }
  }
  return out;
}

std::string PhaseJson(const Phase& p) {
  return absl::StrCat("{\"requests\": ", p.next,
                      ", \"completed\": ", p.completed, ", \"outcomes\": {",
                      Outcomes(p, true), "}, \"violations\": ", p.violations,
                      "}");
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ReadFlags(argc, argv);
  absl::StatusOr<HostPort> server = HostPort::Parse(flags.connect);
  if (!server.ok()) UsageError(kProgram, server.status().ToString());

  ChaosConfig chaos;
  if (flags.config == "storm") {
    chaos = Storm();
  } else if (flags.config == "random") {
    SimRandom plan(flags.seed);
    chaos = ChaosConfig::Random(plan);
  } else if (flags.config != "none") {
    absl::StatusOr<ChaosConfig> file =
        moonpool::chaos::ReadChaosConfigFile(flags.config);
    if (!file.ok()) UsageError(kProgram, file.status().ToString());
    chaos = *file;
  }

  UvLoop uv(moonpool::driver::UvLoopOptions{.seed = flags.seed});
  FaultyLoop loop(uv, {.seed = flags.seed, .chaos = chaos});
  Run run;
  run.loop = &loop;
  run.flags = flags;
  run.server = *server;

  ClientOptions client_options;
  client_options.peer.backoff.max = absl::Milliseconds(100);
  // A hung connect must end well before a request's deadline.
  client_options.peer.connect_timeout = absl::Milliseconds(300);
  std::vector<std::unique_ptr<ClientTransport>> clients;
  for (size_t i = 0; i < flags.connections; ++i) {
    clients.push_back(std::make_unique<ClientTransport>(loop, client_options));
  }

  std::fprintf(stderr,
               "moonpool-chaos-pingpong: server %s, seed %" PRIu64
               ", config %s: %s\n",
               server->ToString().c_str(), flags.seed, flags.config.c_str(),
               chaos.ToString().c_str());

  Phase faulty;
  faulty.name = "faults on";
  faulty.faults = true;
  faulty.total = flags.requests;
  Phase quiet;
  quiet.total = flags.quiet_requests;

  // Signals come from the UvLoop under the FaultyLoop (the one that runs).
  GracefulShutdownOptions shutdown_options;
  shutdown_options.stop_loop = false;  // RunUntil waits for the workers
  shutdown_options.drain_timeout = absl::Seconds(flags.timeout_s + 5);
  shutdown_options.on_signal = [&run](int signum, ShutdownStep step) {
    if (step == ShutdownStep::kDrain) {
      run.stop_signal = signum;
      if (run.current != nullptr) run.current->total = run.current->next;
      std::fprintf(stderr,
                   "moonpool-chaos-pingpong: %s: no new requests; waiting "
                   "for those in flight\n",
                   strsignal(signum));
    } else {
      run.closed_now = true;
      std::fprintf(stderr,
                   "moonpool-chaos-pingpong: %s: closing now (in flight: "
                   "Cancelled)\n",
                   strsignal(signum));
    }
  };
  absl::StatusOr<std::unique_ptr<GracefulShutdown>> shutdown =
      GracefulShutdown::Watch(uv, std::move(shutdown_options));
  if (!shutdown.ok()) {
    std::fprintf(stderr, "moonpool-chaos-pingpong: cannot watch signals: %s\n",
                 shutdown.status().ToString().c_str());
    return 1;
  }
  for (const auto& c : clients) (*shutdown)->AddClient(*c);
  (*shutdown)->SetDrain([&run] { return WorkersDone(run); });

  bool task_failed = false;
  FaultCounts faults;
  {
    TaskScope scope(loop, [&task_failed](absl::Status s) {
      std::fprintf(stderr, "moonpool-chaos-pingpong: task failed: %s\n",
                   s.ToString().c_str());
      task_failed = true;
    });
    if (RunPhase(run, faulty, clients, scope) && run.stop_signal == 0) {
      faults = loop.faults();
      loop.set_chaos(ChaosConfig::None());
      // Faults already decided (held bytes, a reset, a hung connect) play
      // out; the Peers reconnect.
      loop.RunUntil([&run] { return run.stop_signal != 0; },
                    loop.Now() + chaos.stall_max + absl::Milliseconds(500));
      if (run.stop_signal == 0) RunPhase(run, quiet, clients, scope);
    } else {
      faults = loop.faults();
    }
    run.current = nullptr;
  }  // destroys what is left of the tasks
  // It borrows the clients: gone first (and from here on a signal has its
  // default action again).
  shutdown->reset();
  for (auto& c : clients) c->Close();
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(50));
  clients.clear();

  const bool clean =
      faulty.violations == 0 && quiet.violations == 0 && !task_failed;
  const bool passed = clean && run.stop_signal == 0 && quiet.ok == quiet.total;
  const bool interrupted = clean && run.stop_signal != 0;
  std::printf("config:     %s %s\n", flags.config.c_str(),
              chaos.ToString().c_str());
  std::printf("faults on:  %" PRIu64 " requests: %s  violations=%" PRIu64 "\n",
              faulty.next, Outcomes(faulty, false).c_str(), faulty.violations);
  std::printf("quiet:      %" PRIu64 " requests: %s  violations=%" PRIu64 "\n",
              quiet.next, Outcomes(quiet, false).c_str(), quiet.violations);
  std::printf("injected:   %s\n", faults.ToString().c_str());
  std::printf("result:     %s\n", passed        ? "PASS"
                                  : interrupted ? "INTERRUPTED (no violation)"
                                                : "FAIL");

  if (!flags.json.empty()) {
    const std::string json = absl::StrCat(
        "{\n  \"seed\": ", flags.seed, ",\n  \"config\": \"", flags.config,
        "\",\n  \"faulty\": ", PhaseJson(faulty),
        ",\n  \"quiet\": ", PhaseJson(quiet),
        ",\n  \"faults\": {\"connects\": ", faults.connects,
        ", \"writes\": ", faults.writes, ", \"delays\": ", faults.delays,
        ", \"partial_writes\": ", faults.partial_writes,
        ", \"short_reads\": ", faults.short_reads,
        ", \"resets\": ", faults.resets,
        ", \"connects_refused\": ", faults.connects_refused,
        ", \"connects_hung\": ", faults.connects_hung,
        "},\n  \"task_failed\": ", task_failed ? "true" : "false",
        ",\n  \"interrupted_by_signal\": ", run.stop_signal,
        ",\n  \"passed\": ", passed ? "true" : "false", "\n}\n");
    FILE* f = std::fopen(flags.json.c_str(), "w");
    if (f == nullptr || std::fputs(json.c_str(), f) < 0 ||
        std::fclose(f) != 0) {
      std::fprintf(stderr, "moonpool-chaos-pingpong: cannot write %s\n",
                   flags.json.c_str());
      return 1;
    }
  }
  if (passed) return 0;
  return interrupted ? 128 + run.stop_signal : 1;
}
