// moonpool-kv-server: the key-value service (kv_service.h) on a real
// ServerTransport.
//
//   moonpool-kv-server --listen 127.0.0.1:4500 [--get-delay SECONDS]
//                      [--max-concurrent N] [--drain-timeout SECONDS]
//                      [--tls-cert FILE --tls-key FILE [--tls-ca FILE]
//                       [--tls-require-client-cert]
//                       [--tls-handshake-timeout DURATION]]
//                      [--authorize-subject NAME]
//
// The --tls* flags (transport/program_tls.h) serve TLS 1.3; with
// --tls-require-client-cert, mutual TLS. --authorize-subject NAME admits
// only calls from a client whose verified certificate has the common name
// NAME or the URI SAN NAME (ServerOptions::authorize): a call without a
// client certificate ends UNAUTHENTICATED, one from another identity
// PERMISSION_DENIED, and its handler never runs.
//
// Its first line on stdout is the bound address ("listening on
// 127.0.0.1:40123"), so a caller may ask for port 0. SIGINT or SIGTERM
// starts a graceful close (transport::GracefulShutdown: Goodbye on every
// connection, what was received is answered) and the process exits 0 when it
// ends; a second signal closes at once. On exit it writes one line per
// method to stderr, its counters (transport::MethodStats) as key=value pairs,
// one line each, latencies in absl's duration format:
//
//   moonpool-kv-server: method kv.KeyValue/Get requests=3 replies=2 items=0
//       errors=1 cancelled=1 rejected=0 expired=0 orphaned=0 running=0
//       queued=0 p50=1.2ms p90=... p99=... max=...
//
// (items: a stream method's items sent; replies counts its streams ended
// OK).
//
// Exit status: 0 after a close; 1 when it cannot listen or cannot register
// the service; 2 for a flag value out of range (absl's own flag errors, and
// --help, exit 1).
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kv_service.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/peer_identity.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/graceful_shutdown.h"
#include "moonpool/transport/method_stats.h"
#include "moonpool/transport/program_flags.h"
#include "moonpool/transport/program_tls.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_transport.h"

ABSL_FLAG(std::string, listen, "",
          "HOST:PORT to bind (required; port 0: any free port, the first "
          "line of stdout says which)");
ABSL_FLAG(double, get_delay, 0,
          "seconds every Get waits before it answers (ends early, Cancelled, "
          "when the client cancels the call or its deadline passes)");
ABSL_FLAG(size_t, max_concurrent, 256,
          "handlers of one method running at once (HandlerOptions)");
ABSL_FLAG(double, drain_timeout, 10,
          "seconds a graceful close (first SIGINT/SIGTERM) may take before "
          "what is left is closed");
ABSL_FLAG(std::string, authorize_subject, "",
          "serve only clients whose verified TLS certificate has this common "
          "name or URI SAN (needs --tls-ca; empty: every client)");

namespace {

using moonpool::driver::Address;
using moonpool::driver::UvLoop;
using moonpool::transport::GracefulShutdown;
using moonpool::transport::GracefulShutdownOptions;
using moonpool::transport::HandlerOptions;
using moonpool::transport::MethodStats;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;
using moonpool::transport::ShutdownStep;
using moonpool::transport::UsageError;

constexpr char kProgram[] = "moonpool-kv-server";
constexpr char kUsage[] =
    "the key-value example server: Get, Put, Delete and Scan on an "
    "in-memory map.\n\n"
    "  moonpool-kv-server --listen HOST:PORT [--get-delay SECONDS]\n"
    "      [--max-concurrent N] [--drain-timeout SECONDS]\n"
    "      [--tls-cert FILE --tls-key FILE [--tls-ca FILE]\n"
    "       [--tls-require-client-cert] [--tls-handshake-timeout D]]\n"
    "      [--authorize-subject NAME]\n\n"
    "Flag names take dashes or underscores. SIGINT/SIGTERM: graceful close\n"
    "(drain), exit 0; a second one: close now.";

struct Flags {
  Address listen;
  absl::Duration get_delay;
  size_t max_concurrent;
  absl::Duration drain_timeout;
  std::shared_ptr<const moonpool::driver::TlsContext> tls;  // null: plaintext
  std::string authorize_subject;
};

Flags ReadFlags(int argc, char** argv) {
  moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
  Flags f;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (listen.empty()) UsageError(kProgram, "--listen is required");
  absl::StatusOr<Address> address = Address::Parse(listen);
  if (!address.ok()) UsageError(kProgram, address.status().ToString());
  f.listen = *address;
  const double get_delay = absl::GetFlag(FLAGS_get_delay);
  if (!(get_delay >= 0)) UsageError(kProgram, "--get-delay is negative");
  f.get_delay = absl::Seconds(get_delay);
  f.max_concurrent = absl::GetFlag(FLAGS_max_concurrent);
  if (f.max_concurrent == 0) UsageError(kProgram, "--max-concurrent is 0");
  const double drain = absl::GetFlag(FLAGS_drain_timeout);
  if (!(drain >= 0)) UsageError(kProgram, "--drain-timeout is negative");
  f.drain_timeout = absl::Seconds(drain);
  const moonpool::transport::ProgramTlsFlags tls_flags =
      moonpool::transport::ProgramTlsFlagValues();
  absl::StatusOr<std::shared_ptr<const moonpool::driver::TlsContext>> tls =
      moonpool::transport::MakeProgramTls(moonpool::driver::TlsRole::kServer,
                                          tls_flags);
  if (!tls.ok()) UsageError(kProgram, tls.status().message());
  f.tls = *std::move(tls);
  f.authorize_subject = absl::GetFlag(FLAGS_authorize_subject);
  if (!f.authorize_subject.empty() && tls_flags.ca.empty()) {
    UsageError(kProgram,
               "--authorize-subject needs --tls-ca (client certificates are "
               "verified against it)");
  }
  return f;
}

// The value of the CN attribute of an RFC 2253 subject
// ("CN=client-a,O=moonpool-test"), or "" without one. An example's parser:
// a CN with an escaped comma is cut at it (and then matches nothing).
std::string CommonName(absl::string_view subject) {
  for (absl::string_view part : absl::StrSplit(subject, ',')) {
    if (absl::ConsumePrefix(&part, "CN=")) return std::string(part);
  }
  return "";
}

// --authorize-subject: a call runs only for the one client identity.
moonpool::transport::Authorizer AuthorizeSubject(std::string subject) {
  return [subject = std::move(subject)](
             const moonpool::transport::RequestContext& context) {
    const moonpool::driver::PeerIdentity* peer = context.peer_identity();
    if (peer == nullptr) {
      return absl::UnauthenticatedError(
          "this server serves only clients with a verified TLS certificate");
    }
    if (CommonName(peer->subject) == subject ||
        absl::c_linear_search(peer->uris, subject)) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "client \"", peer->subject, "\" is not \"", subject, "\""));
  };
}

// "method kv.KeyValue/Get requests=3 replies=2 ..." (see the file comment).
std::string FormatMethodStats(const MethodStats& m) {
  return absl::StrCat(
      "method ", m.name, " requests=", m.requests, " replies=", m.replies,
      " items=", m.items, " errors=", m.errors, " cancelled=", m.cancelled,
      " rejected=", m.rejected, " expired=", m.expired,
      " orphaned=", m.orphaned, " running=", m.running, " queued=", m.queued,
      " p50=", absl::FormatDuration(m.latency_p50),
      " p90=", absl::FormatDuration(m.latency_p90),
      " p99=", absl::FormatDuration(m.latency_p99),
      " max=", absl::FormatDuration(m.latency_max));
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ReadFlags(argc, argv);

  UvLoop loop;
  // Before the server: the server's handlers call into the service, so it
  // must outlive them.
  kv::KeyValueService service(loop, {.get_delay = flags.get_delay});
  ServerOptions options;
  options.drain_timeout = flags.drain_timeout;
  options.tls = flags.tls;
  options.on_tls_handshake_failure = [](const Address& from,
                                        const absl::Status& why) {
    std::fprintf(stderr, "%s: TLS handshake from %s failed: %s\n", kProgram,
                 from.ToString().c_str(), why.ToString().c_str());
  };
  if (!flags.authorize_subject.empty()) {
    options.authorize = AuthorizeSubject(flags.authorize_subject);
  }
  absl::StatusOr<std::unique_ptr<ServerTransport>> server =
      ServerTransport::Bind(loop, flags.listen, options);
  if (!server.ok()) {
    std::fprintf(stderr, "%s: cannot listen on %s: %s\n", kProgram,
                 flags.listen.ToString().c_str(),
                 server.status().ToString().c_str());
    return 1;
  }
  HandlerOptions handler_options;
  handler_options.max_concurrent = flags.max_concurrent;
  if (absl::Status s = service.Register(**server, handler_options); !s.ok()) {
    std::fprintf(stderr, "%s: cannot register the service: %s\n", kProgram,
                 s.ToString().c_str());
    return 1;
  }

  // Watched before the address is printed: a caller that signals as soon as
  // it has read it must reach the drain, not the default action.
  GracefulShutdownOptions shutdown_options;
  shutdown_options.on_signal = [](int signum, ShutdownStep step) {
    std::fprintf(stderr, "%s: %s (%s)\n", kProgram,
                 step == ShutdownStep::kDrain ? "draining" : "closing now",
                 strsignal(signum));
  };
  absl::StatusOr<std::unique_ptr<GracefulShutdown>> shutdown =
      GracefulShutdown::Watch(loop, std::move(shutdown_options));
  if (!shutdown.ok()) {
    std::fprintf(stderr, "%s: cannot watch signals: %s\n", kProgram,
                 shutdown.status().ToString().c_str());
    return 1;
  }
  (*shutdown)->AddServer(**server);

  std::printf("listening on %s\n", (*server)->address().ToString().c_str());
  std::fflush(stdout);

  loop.Run();  // until the shutdown has closed the server and stopped it

  for (const MethodStats& m : (*server)->all_method_stats()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, FormatMethodStats(m).c_str());
  }
  shutdown->reset();
  server->reset();
  return 0;
}
