// tls_handshake_benchmark: how many new TLS connections per second moonpool
// makes on loopback (issue 17), as a Google Benchmark suite with a
// "handshakes_per_second" counter (wall-clock rate) in its JSON. Each
// iteration is one whole new connection:
//
//   BM_TlsStreamHandshake/mtls:M   a bare pair over UvLoop streams: TCP
//       connect and accept on 127.0.0.1, then TlsStream::Connect and
//       TlsStream::Accept over them until both on_handshake calls said OK,
//       then both closed. Client and server on the benchmark's one thread
//       and loop, so the figure is what one core does with both ends of a
//       handshake (ECDSA P-256 certificates from moonpool-make-test-certs;
//       M=1: mutual TLS, the server requiring and verifying client.pem).
//   BM_TcpConnect                  the same pair without TLS: what TCP
//       connect, accept and close cost on their own, for scale.
//   BM_TransportFirstRequest/tls:T a fresh ClientTransport (its own Peer,
//       so its own connection) whose first request, 64 B echoed, goes to a
//       ServerTransport on a thread of its own (transport::ServerThreads,
//       one loop): TCP connect, the TLS 1.3 handshake when T=1 (mutual,
//       ServerOptions::tls and PeerOptions::tls), moonpool's Hello, one
//       round trip, Close. T=0 is the same in plaintext. With T=1 the run
//       fails unless the server counted a TLS handshake per connection
//       (ServerStats::tls_handshakes, also reported as a counter).
//
// Certificates: `--certs=DIR` (made by
// packages/moonpool-driver/tools/moonpool-make-test-certs DIR, as ci/bench
// does), else $MOONPOOL_TEST_CERTS, else a fresh set made with that script
// into a temporary directory, removed at exit.
//
// Usage:
//   tls_handshake_benchmark [--certs=DIR] [Google Benchmark flags]
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/driver/tls_stream.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_options.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_stats.h"
#include "moonpool/transport/server_threads.h"
#include "moonpool/transport/server_transport.h"

#ifndef MOONPOOL_MAKE_TEST_CERTS
#error "MOONPOOL_MAKE_TEST_CERTS (the script's path) is set by CMake"
#endif

namespace moonpool::bench::tls_handshake {
namespace {

using driver::Address;
using driver::Listener;
using driver::Stream;
using driver::Task;
using driver::TaskScope;
using driver::TlsConfig;
using driver::TlsContext;
using driver::TlsStream;
using driver::UvLoop;

// Where the certificates are (see the file comment); set by main.
std::string& CertsDir() {
  static std::string* dir = new std::string;
  return *dir;
}

std::string CertPath(std::string_view name) {
  return CertsDir() + "/" + std::string(name);
}

// The server's context (server.pem; with `mutual`, requiring client
// certificates verified against ca.pem) and the client's (trusting ca.pem;
// with `mutual`, presenting client.pem). nullopt after SkipWithError.
struct Contexts {
  std::shared_ptr<const TlsContext> server;
  std::shared_ptr<const TlsContext> client;
};

std::optional<Contexts> MakeContexts(benchmark::State& state, bool mutual) {
  TlsConfig server;
  server.certificate_chain_file = CertPath("server.pem");
  server.private_key_file = CertPath("server.key");
  if (mutual) {
    server.trusted_ca_file = CertPath("ca.pem");
    server.require_client_certificate = true;
  }
  TlsConfig client;
  client.trusted_ca_file = CertPath("ca.pem");
  if (mutual) {
    client.certificate_chain_file = CertPath("client.pem");
    client.private_key_file = CertPath("client.key");
  }
  absl::StatusOr<std::shared_ptr<const TlsContext>> s =
      TlsContext::CreateServer(server);
  absl::StatusOr<std::shared_ptr<const TlsContext>> c =
      TlsContext::CreateClient(client);
  if (!s.ok() || !c.ok()) {
    const std::string why = (!s.ok() ? s.status() : c.status()).ToString();
    state.SkipWithError(("TLS context: " + why).c_str());
    return std::nullopt;
  }
  return Contexts{*std::move(s), *std::move(c)};
}

void SetRate(benchmark::State& state, const char* name) {
  state.counters[name] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// A loop turn budget for one connection: far beyond a healthy handshake.
constexpr absl::Duration kStepTimeout = absl::Seconds(10);

// One TCP pair on `loop`: the client's connected stream and the server's
// accepted one, or the error.
struct Pair {
  std::unique_ptr<Stream> client;
  std::unique_ptr<Stream> server;
};

absl::StatusOr<Pair> ConnectPair(
    UvLoop& loop, const Address& address,
    std::optional<absl::StatusOr<std::unique_ptr<Stream>>>& accepted) {
  accepted.reset();
  std::optional<absl::Status> connected;
  absl::StatusOr<std::unique_ptr<Stream>> client = loop.Connect(
      address, [&connected](absl::Status s) { connected = std::move(s); });
  if (!client.ok()) return client.status();
  if (!loop.RunUntil([&] { return connected && accepted; },
                     loop.Now() + kStepTimeout)) {
    return absl::DeadlineExceededError("TCP connect or accept timed out");
  }
  if (!connected->ok()) return *connected;
  if (!accepted->ok()) return accepted->status();
  return Pair{*std::move(client), *std::move(*accepted)};
}

// BM_TcpConnect and BM_TlsStreamHandshake: `tls` null for bare TCP.
void RunPairs(benchmark::State& state, const std::optional<Contexts>& tls) {
  UvLoop loop;
  std::optional<absl::StatusOr<std::unique_ptr<Stream>>> accepted;
  absl::StatusOr<std::unique_ptr<Listener>> listener =
      loop.Listen(Address::Loopback(0), driver::ListenOptions{},
                  [&accepted](absl::StatusOr<std::unique_ptr<Stream>> s) {
                    accepted = std::move(s);
                  });
  if (!listener.ok()) {
    state.SkipWithError(("Listen: " + listener.status().ToString()).c_str());
    return;
  }
  const Address address = (*listener)->address();
  std::string cipher;
  for (auto _ : state) {
    absl::StatusOr<Pair> pair = ConnectPair(loop, address, accepted);
    if (!pair.ok()) {
      state.SkipWithError(pair.status().ToString().c_str());
      break;
    }
    if (!tls) {
      pair->client->Close();
      pair->server->Close();
      continue;
    }
    std::optional<absl::Status> client_done;
    std::optional<absl::Status> server_done;
    absl::StatusOr<std::unique_ptr<TlsStream>> client = TlsStream::Connect(
        loop, std::move(pair->client), tls->client, "localhost",
        [&client_done](absl::Status s) { client_done = std::move(s); });
    absl::StatusOr<std::unique_ptr<TlsStream>> server = TlsStream::Accept(
        loop, std::move(pair->server), tls->server,
        [&server_done](absl::Status s) { server_done = std::move(s); });
    if (!client.ok() || !server.ok()) {
      state.SkipWithError((!client.ok() ? client.status() : server.status())
                              .ToString()
                              .c_str());
      break;
    }
    if (!loop.RunUntil([&] { return client_done && server_done; },
                       loop.Now() + kStepTimeout)) {
      state.SkipWithError("the TLS handshake did not end");
      break;
    }
    if (!client_done->ok() || !server_done->ok()) {
      state.SkipWithError(("handshake: client " + client_done->ToString() +
                           ", server " + server_done->ToString())
                              .c_str());
      break;
    }
    if (cipher.empty()) cipher = (*client)->cipher();
    (*client)->Close();
    (*server)->Close();
  }
  // Let libuv finish closing the handles before the loop goes.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  if (tls) {
    SetRate(state, "handshakes_per_second");
    state.SetLabel(cipher);
  } else {
    SetRate(state, "connections_per_second");
  }
}

void BM_TlsStreamHandshake(benchmark::State& state) {
  std::optional<Contexts> tls = MakeContexts(state, state.range(0) != 0);
  if (!tls) return;
  RunPairs(state, tls);
}
BENCHMARK(BM_TlsStreamHandshake)
    ->ArgName("mtls")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_TcpConnect(benchmark::State& state) { RunPairs(state, std::nullopt); }
BENCHMARK(BM_TcpConnect)->UseRealTime()->Unit(benchmark::kMicrosecond);

// An echo of the default queue, as transport_benchmark's server.
Task<void> Echo(transport::ServerTransport& server) {
  while (std::optional<transport::IncomingMessage> msg =
             co_await server.NextMessage()) {
    if (!msg->is_request()) continue;
    (void)server.Reply(std::move(*msg),
                       absl::string_view(msg->envelope.payload));
  }
}

// One request of `bytes` on `client` to `to`; sets `failure` unless it was
// echoed, then `done`.
Task<void> FirstRequest(transport::ClientTransport& client,
                        const driver::HostPort& to, const std::string& bytes,
                        bool& done, std::string& failure) {
  absl::StatusOr<std::string> reply = co_await client.Request<std::string>(
      to, bytes, transport::RequestOptions::Timeout(kStepTimeout));
  if (!reply.ok()) {
    failure = "first request: " + reply.status().ToString();
  } else if (*reply != bytes) {
    failure = "the echo differs from the request";
  }
  done = true;
}

void BM_TransportFirstRequest(benchmark::State& state) {
  const bool use_tls = state.range(0) != 0;
  std::optional<Contexts> tls;
  if (use_tls) {
    tls = MakeContexts(state, /*mutual=*/true);
    if (!tls) return;
  }
  transport::ServerThreadsOptions options;
  options.threads = 1;
  if (tls) options.server.tls = tls->server;
  absl::StatusOr<std::unique_ptr<transport::ServerThreads>> server =
      transport::ServerThreads::Start(
          Address::Loopback(0), std::move(options),
          [](transport::ServerLoop& s) -> absl::Status {
            for (int i = 0; i < 2; ++i) s.scope.Spawn(Echo(s.server));
            return absl::OkStatus();
          });
  if (!server.ok()) {
    state.SkipWithError(("server: " + server.status().ToString()).c_str());
    return;
  }
  const driver::HostPort address((*server)->address());
  const std::string payload(64, 'x');
  UvLoop loop;
  std::string failure;
  {
    TaskScope scope(loop, [&failure](absl::Status s) {
      if (failure.empty()) failure = "client task: " + s.ToString();
    });
    for (auto _ : state) {
      transport::ClientOptions client_options;
      client_options.expected_peers = 1;
      if (tls) client_options.peer.tls = tls->client;
      auto client =
          std::make_unique<transport::ClientTransport>(loop, client_options);
      bool done = false;
      scope.Spawn(FirstRequest(*client, address, payload, done, failure));
      if (!loop.RunUntil([&] { return done; },
                         loop.Now() + kStepTimeout + absl::Seconds(1))) {
        failure = "the first request had no outcome";
      }
      client->Close();
      client.reset();
      if (!failure.empty()) {
        state.SkipWithError(failure.c_str());
        break;
      }
    }
    loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(1));
  }
  (*server)->Stop(/*drain=*/false);
  const transport::ServerStats stats = (*server)->total_stats();
  if (tls && failure.empty()) {
    state.counters["server_tls_handshakes"] =
        static_cast<double>(stats.tls_handshakes);
    state.counters["server_tls_failures"] =
        static_cast<double>(stats.tls_handshake_failures);
    // Every connection must have been TLS: a rate of plaintext connections
    // under this name would be a lie.
    if (stats.tls_handshakes < static_cast<uint64_t>(state.iterations())) {
      state.SkipWithError(("the server counted " +
                           std::to_string(stats.tls_handshakes) +
                           " TLS handshakes for " +
                           std::to_string(state.iterations()) + " connections")
                              .c_str());
    }
  }
  SetRate(state, tls ? "handshakes_per_second" : "connections_per_second");
}
BENCHMARK(BM_TransportFirstRequest)
    ->ArgName("tls")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace moonpool::bench::tls_handshake

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  using moonpool::bench::tls_handshake::CertsDir;
  benchmark::Initialize(&argc, argv);
  // --certs=DIR / --certs DIR: this program's own flag, left by Initialize.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, 8) == "--certs=") {
      CertsDir() = std::string(arg.substr(8));
    } else if (arg == "--certs" && i + 1 < argc) {
      CertsDir() = argv[++i];
    } else {
      std::fprintf(stderr, "tls_handshake_benchmark: unknown argument %s\n",
                   argv[i]);
      return 2;
    }
  }
  if (CertsDir().empty()) {
    if (const char* env = std::getenv("MOONPOOL_TEST_CERTS");
        env != nullptr && *env != '\0') {
      CertsDir() = env;
    }
  }
  std::optional<fs::path> made;
  if (CertsDir().empty()) {
    std::string dir =
        (fs::temp_directory_path() / "moonpool-tls-bench-XXXXXX").string();
    if (mkdtemp(dir.data()) == nullptr) {
      std::perror("tls_handshake_benchmark: mkdtemp");
      return 1;
    }
    made = dir;
    const std::string command = std::string("bash '") +
                                MOONPOOL_MAKE_TEST_CERTS + "' '" + dir +
                                "' >/dev/null";
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "tls_handshake_benchmark: %s failed\n",
                   command.c_str());
      fs::remove_all(*made);
      return 1;
    }
    CertsDir() = dir;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (made) fs::remove_all(*made);
  return 0;
}
