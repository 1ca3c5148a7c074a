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
// starts a graceful close (ServerTransport::Close(drain=true): Goodbye on
// every connection, what was received is answered) and the process exits 0
// when it ends; a second signal closes at once. Its last line on stderr is
// the server's counters (ServerStats), as key=value pairs. Signals are taken by
// a thread that sigwait()s (they are blocked everywhere else) and handed to the
// loop with UvLoop::PostFromAnyThread: no handler runs inside libuv.
#include <pthread.h>
#include <signal.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "echo_service.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/server_transport.h"

namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;

constexpr char kUsage[] =
    "usage: moonpool-echo-server --listen HOST:PORT [--max-connections N]\n"
    "                            [--handlers N] [--drain-timeout SECONDS]\n"
    "                            [--read-timeout SECONDS] "
    "[--idle-timeout SECONDS]\n"
    "  --listen HOST:PORT      address to bind (port 0: any free port; the\n"
    "                          first line of stdout says which)\n"
    "  --max-connections N     connections open at once (default 1024)\n"
    "  --handlers N            handler tasks answering requests (default 16)\n"
    "  --drain-timeout SECONDS graceful close gives up after this (default "
    "10)\n"
    "  --read-timeout SECONDS  a frame begun must arrive whole within this "
    "(default 30)\n"
    "  --idle-timeout SECONDS  close connections without requests for this "
    "long\n"
    "                          (default 300)\n"
    "SIGINT/SIGTERM: graceful close (drain), exit 0; a second one: close "
    "now.\n";

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(stderr, "moonpool-echo-server: %s\n%s", error.c_str(), kUsage);
  std::exit(2);
}

struct Flags {
  std::string listen;
  size_t max_connections = 1024;
  size_t handlers = 16;
  double drain_timeout_s = 10;
  double read_timeout_s = 30;
  double idle_timeout_s = 300;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) Usage("missing value for " + std::string(arg));
    absl::string_view value = argv[++i];
    bool ok = true;
    if (arg == "--listen") {
      f.listen = std::string(value);
    } else if (arg == "--max-connections") {
      ok = absl::SimpleAtoi(value, &f.max_connections) && f.max_connections > 0;
    } else if (arg == "--handlers") {
      ok = absl::SimpleAtoi(value, &f.handlers) && f.handlers > 0;
    } else if (arg == "--drain-timeout") {
      ok =
          absl::SimpleAtod(value, &f.drain_timeout_s) && f.drain_timeout_s >= 0;
    } else if (arg == "--read-timeout") {
      ok = absl::SimpleAtod(value, &f.read_timeout_s) && f.read_timeout_s > 0;
    } else if (arg == "--idle-timeout") {
      ok = absl::SimpleAtod(value, &f.idle_timeout_s) && f.idle_timeout_s > 0;
    } else {
      Usage("unknown flag " + std::string(arg));
    }
    if (!ok)
      Usage("bad value for " + std::string(arg) + ": " + std::string(value));
  }
  if (f.listen.empty()) Usage("--listen is required");
  return f;
}

Task<void> Drain(ServerTransport& server) {
  std::fprintf(stderr, "moonpool-echo-server: draining\n");
  co_await server.Close(/*drain=*/true);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = ParseFlags(argc, argv);
  absl::StatusOr<Address> address = Address::Parse(flags.listen);
  if (!address.ok()) Usage(address.status().ToString());

  // Blocked before any thread starts (libuv's included), so only the
  // sigwait thread below ever takes them. SIGUSR1 is how main stops it.
  // An ignored signal is discarded even while blocked, and a shell starts
  // background commands with SIGINT ignored: take the default back first.
  for (int sig : {SIGINT, SIGTERM, SIGUSR1}) std::signal(sig, SIG_DFL);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  UvLoop loop;
  ServerOptions options;
  options.max_connections = flags.max_connections;
  options.drain_timeout = absl::Seconds(flags.drain_timeout_s);
  options.read_timeout = absl::Seconds(flags.read_timeout_s);
  options.idle_timeout = absl::Seconds(flags.idle_timeout_s);
  absl::StatusOr<std::unique_ptr<ServerTransport>> server =
      ServerTransport::Bind(loop, *address, options);
  if (!server.ok()) {
    std::fprintf(stderr, "moonpool-echo-server: cannot listen on %s: %s\n",
                 flags.listen.c_str(), server.status().ToString().c_str());
    return 1;
  }
  std::printf("listening on %s\n", (*server)->address().ToString().c_str());
  std::fflush(stdout);

  bool failed = false;
  TaskScope scope(loop, [&failed](absl::Status s) {
    std::fprintf(stderr, "moonpool-echo-server: task failed: %s\n",
                 s.ToString().c_str());
    failed = true;
  });
  moonpool::examples::SpawnEchoHandlers(loop, **server, scope, flags.handlers);

  ServerTransport& srv = **server;
  std::thread signal_thread([&loop, &scope, &srv, &signals] {
    int count = 0;
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0 || sig == SIGUSR1) return;
      ++count;
      // Only the loop's thread touches the server: hand it over.
      loop.PostFromAnyThread([&scope, &srv, count] {
        if (count == 1) {
          scope.Spawn(Drain(srv));
        } else {
          std::fprintf(stderr, "moonpool-echo-server: closing now\n");
          scope.Spawn(srv.Close(/*drain=*/false));
        }
      });
    }
  });

  loop.Run();  // until the close has ended the listener and the handlers

  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
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
  server->reset();
  return failed ? 1 : 0;
}
