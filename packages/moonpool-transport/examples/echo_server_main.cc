// moonpool-echo-server: a ServerTransport that answers every request with
// the request's own payload, for load tests (moonpool-pingpong) and the
// integration tests.
//
//   moonpool-echo-server --listen 127.0.0.1:0 [--max-connections N]
//                        [--handlers N] [--drain-timeout SECONDS]
//                        [--read-timeout SECONDS] [--idle-timeout SECONDS]
//
// Its first line on stdout is the bound address ("listening on
// 127.0.0.1:40123"), so a caller may ask for port 0. SIGINT or SIGTERM
// starts a graceful close (transport::GracefulShutdown: Close(drain=true),
// Goodbye on every connection, what was received is answered) and the
// process exits 0 when it ends; a second signal closes at once. The signals
// are watched before the address is printed, so a caller may signal as soon
// as it has read it. Its last line on stderr is the server's counters
// (ServerStats), as key=value pairs. Exit status: 0 after a close; 1 when it
// cannot listen or a task failed; 2 for a flag value out of range (absl's
// own flag errors, and --help, exit 1).
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "echo_service.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/graceful_shutdown.h"
#include "moonpool/transport/program_flags.h"
#include "moonpool/transport/server_transport.h"

ABSL_FLAG(std::string, listen, "",
          "HOST:PORT to bind (required; port 0: any free port, the first "
          "line of stdout says which)");
ABSL_FLAG(size_t, max_connections, 1024, "connections open at once");
ABSL_FLAG(size_t, handlers, 16, "handler tasks answering requests");
ABSL_FLAG(double, drain_timeout, 10,
          "seconds a graceful close (first SIGINT/SIGTERM) may take before "
          "what is left is closed");
ABSL_FLAG(double, read_timeout, 30,
          "seconds within which a frame begun must arrive whole");
ABSL_FLAG(double, idle_timeout, 300,
          "seconds after which a connection without requests is closed");

namespace {

using moonpool::driver::Address;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::GracefulShutdown;
using moonpool::transport::GracefulShutdownOptions;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;
using moonpool::transport::ShutdownStep;
using moonpool::transport::UsageError;

constexpr char kProgram[] = "moonpool-echo-server";
constexpr char kUsage[] =
    "an echo server: answers every request with its payload.\n\n"
    "  moonpool-echo-server --listen HOST:PORT [--max-connections N]\n"
    "      [--handlers N] [--drain-timeout SECONDS] [--read-timeout SECONDS]\n"
    "      [--idle-timeout SECONDS]\n\n"
    "Flag names take dashes or underscores. SIGINT/SIGTERM: graceful close\n"
    "(drain), exit 0; a second one: close now.";

struct Flags {
  Address listen;
  size_t max_connections;
  size_t handlers;
  double drain_timeout_s;
  double read_timeout_s;
  double idle_timeout_s;
};

Flags ReadFlags(int argc, char** argv) {
  moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
  Flags f;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (listen.empty()) UsageError(kProgram, "--listen is required");
  absl::StatusOr<Address> address = Address::Parse(listen);
  if (!address.ok()) UsageError(kProgram, address.status().ToString());
  f.listen = *address;
  f.max_connections = absl::GetFlag(FLAGS_max_connections);
  f.handlers = absl::GetFlag(FLAGS_handlers);
  f.drain_timeout_s = absl::GetFlag(FLAGS_drain_timeout);
  f.read_timeout_s = absl::GetFlag(FLAGS_read_timeout);
  f.idle_timeout_s = absl::GetFlag(FLAGS_idle_timeout);
  if (f.max_connections == 0) UsageError(kProgram, "--max-connections is 0");
  if (f.handlers == 0) UsageError(kProgram, "--handlers is 0");
  if (!(f.drain_timeout_s >= 0)) {
    UsageError(kProgram, "--drain-timeout is negative");
  }
  if (!(f.read_timeout_s > 0))
    UsageError(kProgram, "--read-timeout is not > 0");
  if (!(f.idle_timeout_s > 0))
    UsageError(kProgram, "--idle-timeout is not > 0");
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ReadFlags(argc, argv);

  UvLoop loop;
  ServerOptions options;
  options.max_connections = flags.max_connections;
  options.drain_timeout = absl::Seconds(flags.drain_timeout_s);
  options.read_timeout = absl::Seconds(flags.read_timeout_s);
  options.idle_timeout = absl::Seconds(flags.idle_timeout_s);
  absl::StatusOr<std::unique_ptr<ServerTransport>> server =
      ServerTransport::Bind(loop, flags.listen, options);
  if (!server.ok()) {
    std::fprintf(stderr, "moonpool-echo-server: cannot listen on %s: %s\n",
                 flags.listen.ToString().c_str(),
                 server.status().ToString().c_str());
    return 1;
  }
  ServerTransport& srv = **server;

  // Watched before the address is printed: a caller that signals as soon
  // as it has read it must reach the drain, not the default action.
  GracefulShutdownOptions shutdown_options;
  shutdown_options.on_signal = [](int signum, ShutdownStep step) {
    std::fprintf(stderr, "moonpool-echo-server: %s (%s)\n",
                 step == ShutdownStep::kDrain ? "draining" : "closing now",
                 strsignal(signum));
  };
  absl::StatusOr<std::unique_ptr<GracefulShutdown>> shutdown =
      GracefulShutdown::Watch(loop, std::move(shutdown_options));
  if (!shutdown.ok()) {
    std::fprintf(stderr, "moonpool-echo-server: cannot watch signals: %s\n",
                 shutdown.status().ToString().c_str());
    return 1;
  }
  (*shutdown)->AddServer(srv);

  std::printf("listening on %s\n", srv.address().ToString().c_str());
  std::fflush(stdout);

  bool failed = false;
  TaskScope scope(loop, [&failed](absl::Status s) {
    std::fprintf(stderr, "moonpool-echo-server: task failed: %s\n",
                 s.ToString().c_str());
    failed = true;
  });
  moonpool::examples::SpawnEchoHandlers(loop, srv, scope, flags.handlers);

  loop.Run();  // until the shutdown has closed the server and stopped it

  moonpool::transport::ServerStats st = srv.stats();
  std::fprintf(stderr,
               "moonpool-echo-server: closed: %llu connections accepted, "
               "%llu refused, %llu requests, %llu replies\n",
               static_cast<unsigned long long>(st.connections_accepted),
               static_cast<unsigned long long>(st.connections_refused),
               static_cast<unsigned long long>(st.requests_received),
               static_cast<unsigned long long>(st.replies_sent));
  std::fprintf(
      stderr,
      "moonpool-echo-server: stats: connections_accepted=%llu "
      "connections_refused=%llu requests_received=%llu replies_sent=%llu "
      "protocol_errors=%llu keepalive_timeouts=%llu read_timeouts=%llu "
      "idle_timeouts=%llu backpressure_pauses=%llu orphaned_dropped=%llu\n",
      static_cast<unsigned long long>(st.connections_accepted),
      static_cast<unsigned long long>(st.connections_refused),
      static_cast<unsigned long long>(st.requests_received),
      static_cast<unsigned long long>(st.replies_sent),
      static_cast<unsigned long long>(st.protocol_errors),
      static_cast<unsigned long long>(st.keepalive_timeouts),
      static_cast<unsigned long long>(st.read_timeouts),
      static_cast<unsigned long long>(st.idle_timeouts),
      static_cast<unsigned long long>(st.backpressure_pauses),
      static_cast<unsigned long long>(st.orphaned_dropped));
  scope.Clear();
  shutdown->reset();
  server->reset();
  return failed ? 1 : 0;
}
