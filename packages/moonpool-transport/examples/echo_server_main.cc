// moonpool-echo-server: a ServerTransport that answers every request with
// the request's own payload, for load tests (moonpool-pingpong) and the
// integration tests.
//
//   moonpool-echo-server --listen 127.0.0.1:0 [--threads N]
//                        [--max-connections N]
//                        [--handlers N] [--drain-timeout SECONDS]
//                        [--read-timeout SECONDS] [--idle-timeout SECONDS]
//                        [--reply-delay-ms MS] [--count-runs]
//                        [--exactly-once-max-records-per-client N] ...
//                        [--tls-cert FILE --tls-key FILE [--tls-ca FILE]
//                         [--tls-require-client-cert]
//                         [--tls-handshake-timeout DURATION]]
//
// With --tls-cert and --tls-key every connection is TLS 1.3
// (transport/program_tls.h has the flags; ServerOptions::tls): --tls-ca
// verifies client certificates, --tls-require-client-cert makes them
// required (mutual TLS). Each failed handshake is told on stderr,
// "moonpool-echo-server: TLS handshake from ADDRESS failed: STATUS", and
// counted in the stats line (tls_handshakes, tls_handshake_failures).
//
// --threads N serves on N loops, one thread each, all on the one port
// (transport::ServerThreads, SO_REUSEPORT: the kernel spreads the
// connections); every other flag applies to each loop (--max-connections
// and --handlers are per loop), and the counters printed at the end are
// the loops' sums, with one "loops:" line giving each loop's share when N
// is above 1. The main thread only watches the signals. An exactly-once
// request sent again on a connection that lands on another loop is answered
// Aborted (another incarnation), as after a restart: the tests that cut
// connections run with one loop.
//
// For the exactly-once tests (integration_tests/exactly_once_test.py):
// --reply-delay-ms holds each answer that long (so a connection cut lands
// while handlers run), --count-runs counts how many times each exactly-once
// request (client incarnation, correlation id) was handed to a handler and
// prints the totals on stderr at the end ("runs: ..."), and the
// --exactly-once-* flags set ServerOptions::exactly_once's bounds.
// Its first line on stdout is the bound address ("listening on
// 127.0.0.1:40123"), so a caller may ask for port 0. SIGINT or SIGTERM
// starts a graceful close (ServerThreads::Close(drain=true) on every loop:
// Goodbye on every connection, what was received is answered) and the
// process exits 0 when it ends; a second signal closes at once. The signals
// are watched before the address is printed, so a caller may signal as soon
// as it has read it. Its last line on stderr is the server's counters
// (ServerStats), as key=value pairs. Exit status: 0 after a close; 1 when it
// cannot listen or a task failed; 2 for a flag value out of range (absl's
// own flag errors, and --help, exit 1).
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "echo_service.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/signal_watch.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/protocol/outcome_table.h"
#include "moonpool/transport/program_flags.h"
#include "moonpool/transport/program_tls.h"
#include "moonpool/transport/server_threads.h"
#include "moonpool/transport/server_transport.h"

ABSL_FLAG(std::string, listen, "",
          "HOST:PORT to bind (required; port 0: any free port, the first "
          "line of stdout says which)");
ABSL_FLAG(size_t, threads, 1,
          "loops serving the port, one thread each (SO_REUSEPORT)");
ABSL_FLAG(size_t, max_connections, 1024, "connections open at once, per loop");
ABSL_FLAG(size_t, handlers, 16, "handler tasks answering requests, per loop");
ABSL_FLAG(double, drain_timeout, 10,
          "seconds a graceful close (first SIGINT/SIGTERM) may take before "
          "what is left is closed");
ABSL_FLAG(double, read_timeout, 30,
          "seconds within which a frame begun must arrive whole");
ABSL_FLAG(double, idle_timeout, 300,
          "seconds after which a connection without requests is closed");
ABSL_FLAG(double, reply_delay_ms, 0,
          "milliseconds each answer is held before it is sent (0: none)");
ABSL_FLAG(bool, count_runs, false,
          "count the runs of each exactly-once request and print them at the "
          "end");
ABSL_FLAG(size_t, exactly_once_max_records_per_client,
          moonpool::protocol::OutcomeTableOptions().max_records_per_client,
          "exactly-once outcome records kept per client");
ABSL_FLAG(size_t, exactly_once_max_bytes_per_client,
          moonpool::protocol::OutcomeTableOptions().max_bytes_per_client,
          "exactly-once outcome bytes kept per client");
ABSL_FLAG(size_t, exactly_once_max_records,
          moonpool::protocol::OutcomeTableOptions().max_records,
          "exactly-once outcome records kept in all");
ABSL_FLAG(size_t, exactly_once_max_bytes,
          moonpool::protocol::OutcomeTableOptions().max_bytes,
          "exactly-once outcome bytes kept in all");

namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::IncomingMessage;
using moonpool::transport::ServerLoop;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerThreads;
using moonpool::transport::ServerThreadsOptions;
using moonpool::transport::ServerTransport;
using moonpool::transport::UsageError;

constexpr char kProgram[] = "moonpool-echo-server";
constexpr char kUsage[] =
    "an echo server: answers every request with its payload.\n\n"
    "  moonpool-echo-server --listen HOST:PORT [--threads N]\n"
    "      [--max-connections N] [--handlers N] [--drain-timeout SECONDS]\n"
    "      [--read-timeout SECONDS] [--idle-timeout SECONDS]\n"
    "      [--reply-delay-ms MS] [--count-runs]\n"
    "      [--exactly-once-max-records-per-client N]\n"
    "      [--exactly-once-max-bytes-per-client BYTES]\n"
    "      [--exactly-once-max-records N] [--exactly-once-max-bytes BYTES]\n"
    "      [--tls-cert FILE --tls-key FILE [--tls-ca FILE]\n"
    "       [--tls-require-client-cert] [--tls-handshake-timeout DURATION]]\n\n"
    "Flag names take dashes or underscores. SIGINT/SIGTERM: graceful close\n"
    "(drain), exit 0; a second one: close now.";

struct Flags {
  Address listen;
  size_t threads;
  size_t max_connections;
  size_t handlers;
  double drain_timeout_s;
  double read_timeout_s;
  double idle_timeout_s;
  double reply_delay_ms;
  bool count_runs;
  moonpool::protocol::OutcomeTableOptions exactly_once;
  std::shared_ptr<const moonpool::driver::TlsContext> tls;  // null: plaintext
};

Flags ReadFlags(int argc, char** argv) {
  moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
  Flags f;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (listen.empty()) UsageError(kProgram, "--listen is required");
  absl::StatusOr<Address> address = Address::Parse(listen);
  if (!address.ok()) UsageError(kProgram, address.status().ToString());
  f.listen = *address;
  f.threads = absl::GetFlag(FLAGS_threads);
  f.max_connections = absl::GetFlag(FLAGS_max_connections);
  f.handlers = absl::GetFlag(FLAGS_handlers);
  f.drain_timeout_s = absl::GetFlag(FLAGS_drain_timeout);
  f.read_timeout_s = absl::GetFlag(FLAGS_read_timeout);
  f.idle_timeout_s = absl::GetFlag(FLAGS_idle_timeout);
  f.reply_delay_ms = absl::GetFlag(FLAGS_reply_delay_ms);
  f.count_runs = absl::GetFlag(FLAGS_count_runs);
  f.exactly_once.max_records_per_client =
      absl::GetFlag(FLAGS_exactly_once_max_records_per_client);
  f.exactly_once.max_bytes_per_client =
      absl::GetFlag(FLAGS_exactly_once_max_bytes_per_client);
  f.exactly_once.max_records = absl::GetFlag(FLAGS_exactly_once_max_records);
  f.exactly_once.max_bytes = absl::GetFlag(FLAGS_exactly_once_max_bytes);
  if (!(f.reply_delay_ms >= 0)) {
    UsageError(kProgram, "--reply-delay-ms is negative");
  }
  if (f.threads == 0) UsageError(kProgram, "--threads is 0");
  if (f.max_connections == 0) UsageError(kProgram, "--max-connections is 0");
  if (f.handlers == 0) UsageError(kProgram, "--handlers is 0");
  if (!(f.drain_timeout_s >= 0)) {
    UsageError(kProgram, "--drain-timeout is negative");
  }
  if (!(f.read_timeout_s > 0))
    UsageError(kProgram, "--read-timeout is not > 0");
  if (!(f.idle_timeout_s > 0))
    UsageError(kProgram, "--idle-timeout is not > 0");
  absl::StatusOr<std::shared_ptr<const moonpool::driver::TlsContext>> tls =
      moonpool::transport::MakeProgramTls(
          moonpool::driver::TlsRole::kServer,
          moonpool::transport::ProgramTlsFlagValues());
  if (!tls.ok()) UsageError(kProgram, tls.status().message());
  f.tls = *std::move(tls);
  return f;
}

// How many times each exactly-once request was handed to a handler, by
// (client incarnation, correlation id): a resend answered from the record
// never reaches a handler, so every count should be 1.
struct RunCounts {
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, uint32_t> runs;
  uint64_t total = 0;
};

// Answers `msg` with its payload after `delay`, waiting for output room.
Task<void> DelayedEcho(UvLoop& loop, ServerTransport& server,
                       IncomingMessage msg, absl::Duration delay) {
  co_await moonpool::driver::Sleep(loop, delay);
  std::string payload = std::move(msg.envelope.payload);
  (void)co_await server.ReplyWhenWritable(std::move(msg), std::move(payload));
}

// moonpool::examples::EchoHandler with the test flags: counts the runs of
// exactly-once requests (when `counts`) and holds each answer `delay`.
Task<void> TestEchoHandler(UvLoop& loop, ServerTransport& server,
                           TaskScope& scope, absl::Duration delay,
                           RunCounts* counts) {
  while (std::optional<IncomingMessage> msg = co_await server.NextMessage()) {
    if (!msg->is_request()) continue;
    if (counts != nullptr && msg->envelope.exactly_once) {
      ++counts->runs[{msg->client_incarnation,
                      msg->envelope.correlation_id.value()}];
      ++counts->total;
    }
    if (delay > absl::ZeroDuration()) {
      scope.Spawn(DelayedEcho(loop, server, *std::move(msg), delay));
      continue;
    }
    absl::Status s =
        server.Reply(*msg, absl::string_view(msg->envelope.payload));
    if (s.code() == absl::StatusCode::kResourceExhausted) {
      scope.Spawn(
          moonpool::examples::ReplyWhenWritable(server, *std::move(msg)));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ReadFlags(argc, argv);

  ServerThreadsOptions options;
  options.threads = flags.threads;
  options.server.max_connections = flags.max_connections;
  options.server.drain_timeout = absl::Seconds(flags.drain_timeout_s);
  options.server.read_timeout = absl::Seconds(flags.read_timeout_s);
  options.server.idle_timeout = absl::Seconds(flags.idle_timeout_s);
  options.server.exactly_once = flags.exactly_once;
  options.server.tls = flags.tls;
  // Called on the loop's thread that accepted the connection; one fprintf
  // is one write of a line, so the loops' lines do not mix.
  options.server.on_tls_handshake_failure = [](const Address& from,
                                               const absl::Status& why) {
    std::fprintf(stderr,
                 "moonpool-echo-server: TLS handshake from %s failed: %s\n",
                 from.ToString().c_str(), why.ToString().c_str());
  };
  std::atomic<bool> failed{false};
  options.on_task_error = [&failed](size_t, const absl::Status& s) {
    std::fprintf(stderr, "moonpool-echo-server: task failed: %s\n",
                 s.ToString().c_str());
    failed = true;
  };
  // The main thread's loop watches the signals and waits for the server
  // loops to end; the last one to end wakes it.
  UvLoop control;
  options.on_ended = [&control] { control.PostFromAnyThread([] {}); };

  // Watched before the address is printed: a caller that signals as soon
  // as it has read it must reach the drain, not the default action.
  std::unique_ptr<ServerThreads> servers;
  int signals = 0;
  absl::StatusOr<std::unique_ptr<moonpool::driver::SignalWatch>> watch =
      control.WatchSignals({SIGINT, SIGTERM}, [&](int signum) {
        if (servers == nullptr || signals == 2) return;
        const bool drain = ++signals == 1;
        std::fprintf(stderr, "moonpool-echo-server: %s (%s)\n",
                     drain ? "draining" : "closing now", strsignal(signum));
        servers->Close(drain);
      });
  if (!watch.ok()) {
    std::fprintf(stderr, "moonpool-echo-server: cannot watch signals: %s\n",
                 watch.status().ToString().c_str());
    return 1;
  }

  // Each loop's own counts (--count-runs), merged at the end.
  std::vector<RunCounts> counts(flags.threads);
  const absl::Duration delay = absl::Milliseconds(flags.reply_delay_ms);
  absl::StatusOr<std::unique_ptr<ServerThreads>> started = ServerThreads::Start(
      flags.listen, std::move(options),
      [&flags, &counts, delay](ServerLoop& s) -> absl::Status {
        if (flags.count_runs || delay > absl::ZeroDuration()) {
          for (size_t i = 0; i < flags.handlers; ++i) {
            s.scope.Spawn(
                TestEchoHandler(s.loop, s.server, s.scope, delay,
                                flags.count_runs ? &counts[s.index] : nullptr));
          }
        } else {
          moonpool::examples::SpawnEchoHandlers(s.loop, s.server, s.scope,
                                                flags.handlers);
        }
        return absl::OkStatus();
      });
  if (!started.ok()) {
    std::fprintf(stderr, "moonpool-echo-server: cannot listen on %s: %s\n",
                 flags.listen.ToString().c_str(),
                 started.status().ToString().c_str());
    watch->reset();
    return 1;
  }
  servers = std::move(*started);

  std::printf("listening on %s\n", servers->address().ToString().c_str());
  std::fflush(stdout);

  // Until a signal's Close has ended every loop. The deadline only keeps
  // the control loop waiting: the signal watch alone would not.
  control.RunUntil([&servers] { return servers->ended(); },
                   control.Now() + absl::Hours(24 * 365));
  watch->reset();  // a signal has its default action again
  servers->Wait();

  const std::vector<moonpool::transport::ServerStats> per_loop =
      servers->final_stats();
  const moonpool::transport::ServerStats st = servers->total_stats();
  if (per_loop.size() > 1) {
    std::string loops;
    for (size_t i = 0; i < per_loop.size(); ++i) {
      absl::StrAppend(&loops, i == 0 ? "" : "; ", i,
                      ": connections=", per_loop[i].connections_accepted,
                      " requests=", per_loop[i].requests_received);
    }
    std::fprintf(stderr, "moonpool-echo-server: loops: %s\n", loops.c_str());
  }
  std::fprintf(stderr,
               "moonpool-echo-server: closed: %llu connections accepted, "
               "%llu refused, %llu requests, %llu replies\n",
               static_cast<unsigned long long>(st.connections_accepted),
               static_cast<unsigned long long>(st.connections_refused),
               static_cast<unsigned long long>(st.requests_received),
               static_cast<unsigned long long>(st.replies_sent));
  // The exactly-once lines come before the stats line, which stays last.
  const moonpool::protocol::OutcomeTableStats& eo = st.exactly_once;
  std::fprintf(stderr,
               "moonpool-echo-server: exactly_once: recorded=%llu "
               "duplicates_running=%llu duplicates_completed=%llu "
               "forgotten_answers=%llu settled=%llu forgotten_by_bound=%llu "
               "forgotten_by_time=%llu abandoned=%llu clients_refused=%llu "
               "records=%llu bytes=%llu\n",
               static_cast<unsigned long long>(eo.recorded),
               static_cast<unsigned long long>(eo.duplicates_running),
               static_cast<unsigned long long>(eo.duplicates_completed),
               static_cast<unsigned long long>(eo.forgotten_answers),
               static_cast<unsigned long long>(eo.settled),
               static_cast<unsigned long long>(eo.forgotten_by_bound),
               static_cast<unsigned long long>(eo.forgotten_by_time),
               static_cast<unsigned long long>(eo.abandoned),
               static_cast<unsigned long long>(eo.clients_refused),
               static_cast<unsigned long long>(eo.records),
               static_cast<unsigned long long>(eo.bytes));
  if (flags.count_runs) {
    RunCounts all;
    for (const RunCounts& c : counts) {
      for (const auto& [key, n] : c.runs) all.runs[key] += n;
      all.total += c.total;
    }
    uint64_t more_than_once = 0;
    for (const auto& [key, n] : all.runs) more_than_once += n > 1;
    std::fprintf(stderr,
                 "moonpool-echo-server: runs: exactly_once_runs=%llu "
                 "exactly_once_ids=%llu ran_more_than_once=%llu\n",
                 static_cast<unsigned long long>(all.total),
                 static_cast<unsigned long long>(all.runs.size()),
                 static_cast<unsigned long long>(more_than_once));
  }
  // Summed here from each loop's own counters.
  uint64_t tls_handshakes = 0;
  uint64_t tls_handshake_failures = 0;
  for (const moonpool::transport::ServerStats& s : per_loop) {
    tls_handshakes += s.tls_handshakes;
    tls_handshake_failures += s.tls_handshake_failures;
  }
  std::fprintf(
      stderr,
      "moonpool-echo-server: stats: connections_accepted=%llu "
      "connections_refused=%llu requests_received=%llu replies_sent=%llu "
      "protocol_errors=%llu keepalive_timeouts=%llu read_timeouts=%llu "
      "idle_timeouts=%llu backpressure_pauses=%llu orphaned_dropped=%llu "
      "tls_handshakes=%llu tls_handshake_failures=%llu\n",
      static_cast<unsigned long long>(st.connections_accepted),
      static_cast<unsigned long long>(st.connections_refused),
      static_cast<unsigned long long>(st.requests_received),
      static_cast<unsigned long long>(st.replies_sent),
      static_cast<unsigned long long>(st.protocol_errors),
      static_cast<unsigned long long>(st.keepalive_timeouts),
      static_cast<unsigned long long>(st.read_timeouts),
      static_cast<unsigned long long>(st.idle_timeouts),
      static_cast<unsigned long long>(st.backpressure_pauses),
      static_cast<unsigned long long>(st.orphaned_dropped),
      static_cast<unsigned long long>(tls_handshakes),
      static_cast<unsigned long long>(tls_handshake_failures));
  servers.reset();
  return failed ? 1 : 0;
}
