// transport_benchmark: moonpool's column of ci/bench. An echo over
// moonpool-transport, under the same contract as the baselines in
// benchmarks/peers (peer_harness.h, README.md there):
//
//   transport_benchmark --workload NAME [--duration_ms 2000] [--warmup_ms 300]
//
// The server runs on a thread of its own with its own UvLoop
// (transport::ServerThreads with one loop): ServerTransport::Bind(127.0.0.1:0)
// and a few handler tasks, each looping on
// NextMessage() and Reply(msg, msg.envelope.payload). The client runs on a
// second thread with its own UvLoop: one ClientTransport per connection (a
// transport keeps one Peer, so one TCP connection, per address), and K worker
// coroutines per connection, each looping on
// co_await Request<std::string>(server, payload, 10 s timeout): a closed loop
// keeping K requests in flight per connection. Every reply is byte-compared
// with the payload of its request (Payload::Matches: a sequence number stamp
// and a fixed pattern); a mismatch or any failed request ends the process
// with status 1.
//
// Measured: the replies received inside the window (after the warm-up, for
// --duration_ms), their latencies (steady_clock from just before the Request
// call to just after the co_await returns), and the heap allocations made on
// the client loop's thread and on the server loop's thread inside the window
// (alloc_counter.h, read on each loop's own thread at the start and end of
// the window). stdout is the contract's one JSON object plus
// "client_allocs_per_request" and "server_allocs_per_request".
//
// What a request allocates by design (moonpool-transport/README.md): the
// client's encoded payload string (Request copies the caller's bytes), the
// decoded reply std::string, and the server's IncomingMessage payload copy;
// payloads of 15 bytes or fewer would fit std::string's inline buffer, the
// workloads' 64 B and up do not.
//
// Exactly-once (issue 15): a workload name with the suffix `_eo` (ci/bench
// runs `64B_x256_eo`) is the same workload with every request sent with
// RequestOptions::exactly_once, the same Request call otherwise: the client's
// Peer sends answeredBelow on each request, and the server (default
// ServerOptions::exactly_once bounds) records each outcome until the client
// settles it. The report's "workload" keeps the suffix. Every report also
// carries "cpu_us_per_request" (the CPU of the two loop threads in the window
// per request), steadier than requests per second on a shared machine.
//
// More than one core (issue 16): a workload NAME_tN (peer_harness.h; ci/bench
// runs 100conn_t2) serves on N loops, transport::ServerThreads on one port
// (SO_REUSEPORT), and loads them from N client threads, each a Client of
// its own with its share of NAME's connections (connection c on thread
// c mod N): one client thread could not keep N server loops busy. requests
// is the clients' sum, seconds their windows' mean, the percentiles over
// every client's samples, allocations and CPU summed over every loop
// thread (client thread 0 asks every server loop for its snapshots).
//
// TLS (issue 17): a workload NAME_tls (peer_harness.h; ci/bench runs
// 64B_x256_tls and 1MiB_x16_tls) is NAME with every connection mutual TLS
// 1.3: ServerOptions::tls a server TlsContext (server.pem, requiring client
// certificates verified against ca.pem), ClientOptions::peer.tls a client
// one (client.pem, trusting ca.pem, checking the dialled 127.0.0.1 against
// the server certificate's IP SAN), from `--certs DIR`. The handshakes
// happen in the warm-up; the window measures the records alone.
// MOONPOOL_BENCH_TLS_CIPHERSUITES=LIST (environment; OpenSSL's TLS 1.3
// list, e.g. TLS_AES_128_GCM_SHA256) sets both contexts' cipher suites
// through TlsContext::native_handle(), for experiments; ci/bench does not
// set it (OpenSSL's default order picks TLS_AES_256_GCM_SHA384).
//
// MOONPOOL_BENCH_HANDLERS=N (environment) overrides the number of server
// handler tasks (default 4), for experiments; ci/bench does not set it.
//
// Services (issue 13): `--api NAME` (taken out of the command line before
// the contract's flags are parsed; ci/bench does not pass it) picks what a
// request is:
//   bytes         (the default, ci/bench's) the payload as a string on the
//                 default queue, echoed by NextMessage handlers;
//   capnp_raw     a Cap'n Proto Ping (ping.capnp: the payload in its Data
//                 field, the sequence number in its own) sent with
//                 Request<CapnpReader<Pong>> to the default queue; the
//                 NextMessage handlers decode it and Reply a Pong;
//   capnp_method  the same Ping and Pong through the named method
//                 "bench.Echo/Ping": ClientTransport::Call on the client,
//                 ServerTransport::Handle on the server (its dispatch, its
//                 handler task and RequestContext, its counters);
//   compare       capnp_raw and capnp_method alternately, `--rounds N`
//                 (default 3) of each, one JSON object per round (with an
//                 "api" key), then a summary object with the medians and
//                 the ratio method / raw of requests per second.
// So the cost of the services layer is the difference between the two Cap'n
// Proto columns: the same bytes on the wire (but the endpoint token), the
// same encode and decode at both ends.
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "alloc_counter.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/client_options.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_threads.h"
#include "moonpool/transport/server_transport.h"
#include "peer_harness.h"

namespace moonpool::bench::transport_benchmark {
namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::TlsConfig;
using moonpool::driver::TlsContext;
using moonpool::driver::UvLoop;
using moonpool::transport::CapnpMessage;
using moonpool::transport::CapnpReader;
using moonpool::transport::ClientOptions;
using moonpool::transport::ClientTransport;
using moonpool::transport::IncomingMessage;
using moonpool::transport::Method;
using moonpool::transport::RequestContext;
using moonpool::transport::RequestOptions;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;
using peers::Die;
using peers::LatencyRecorder;
using peers::Options;
using peers::Payload;
using peers::Report;
using Clock = std::chrono::steady_clock;
namespace schema = moonpool::transport::schema;

// What a request is (see the file comment).
enum class Api { kBytes, kCapnpRaw, kCapnpMethod };

const char* ApiName(Api api) {
  switch (api) {
    case Api::kBytes:
      return "bytes";
    case Api::kCapnpRaw:
      return "capnp_raw";
    case Api::kCapnpMethod:
      return "capnp_method";
  }
  return "?";
}

// CPU time of the calling thread, in nanoseconds: on a shared machine a
// thread's CPU per request varies far less than requests per second.
uint64_t ThreadCpuNanos() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u +
         static_cast<uint64_t>(t.tv_nsec);
}

// The method of --api capnp_method.
const Method<schema::Ping, schema::Pong> kPingMethod{"bench.Echo/Ping"};

// The Pong of `ping`: its sequence and payload echoed.
CapnpMessage<schema::Pong> MakePong(schema::Ping::Reader ping) {
  CapnpMessage<schema::Pong> pong;
  pong.builder().setSequence(ping.getSequence());
  pong.builder().setPayload(ping.getPayload());
  return pong;
}

// Each request's deadline: far beyond any latency of a healthy run, so a
// DeadlineExceeded is a failure, not load shedding.
constexpr absl::Duration kRequestTimeout = absl::Seconds(10);

size_t HandlerCount() {
  if (const char* env = std::getenv("MOONPOOL_BENCH_HANDLERS")) {
    const int n = std::atoi(env);
    if (n > 0) return static_cast<size_t>(n);
  }
  return 4;
}

// Both ends' TLS contexts of a NAME_tls workload (null otherwise), made once
// and shared by every loop and connection.
struct TlsContexts {
  std::shared_ptr<const TlsContext> server;
  std::shared_ptr<const TlsContext> client;
};

TlsContexts MakeTlsContexts(const Options& options) {
  TlsContexts contexts;
  if (!options.tls) return contexts;
  TlsConfig server;
  server.certificate_chain_file = peers::TlsFile(options, "server.pem");
  server.private_key_file = peers::TlsFile(options, "server.key");
  server.trusted_ca_file = peers::TlsFile(options, "ca.pem");
  server.require_client_certificate = true;
  absl::StatusOr<std::shared_ptr<const TlsContext>> s =
      TlsContext::CreateServer(server);
  if (!s.ok()) Die("server TLS context: " + s.status().ToString());
  TlsConfig client;
  client.certificate_chain_file = peers::TlsFile(options, "client.pem");
  client.private_key_file = peers::TlsFile(options, "client.key");
  client.trusted_ca_file = peers::TlsFile(options, "ca.pem");
  absl::StatusOr<std::shared_ptr<const TlsContext>> c =
      TlsContext::CreateClient(client);
  if (!c.ok()) Die("client TLS context: " + c.status().ToString());
  contexts.server = *std::move(s);
  contexts.client = *std::move(c);
  if (const char* suites = std::getenv("MOONPOOL_BENCH_TLS_CIPHERSUITES")) {
    for (const auto& context : {contexts.server, contexts.client}) {
      if (SSL_CTX_set_ciphersuites(context->native_handle(), suites) != 1) {
        Die(std::string("MOONPOOL_BENCH_TLS_CIPHERSUITES: OpenSSL refused ") +
            suites);
      }
    }
  }
  return contexts;
}

// ---------------------------------------------------------------------------
// Server: transport::ServerThreads, one loop (N for a workload NAME_tN, on
// one port), each loop a ServerTransport and a few echo handlers.

class Server {
 public:
  // Starts the loops and waits until they are bound.
  Server(Api api, int threads, std::shared_ptr<const TlsContext> tls)
      : snapshots_(static_cast<size_t>(threads)) {
    moonpool::transport::ServerThreadsOptions options;
    options.threads = static_cast<size_t>(threads);
    options.server.tls = std::move(tls);
    options.on_task_error = [](size_t, const absl::Status& s) {
      Die("server: a task failed: " + s.ToString());
    };
    absl::StatusOr<std::unique_ptr<moonpool::transport::ServerThreads>> loops =
        moonpool::transport::ServerThreads::Start(
            Address::Loopback(0), std::move(options),
            [api](moonpool::transport::ServerLoop& s) -> absl::Status {
              if (api == Api::kCapnpMethod) {
                absl::Status h = s.server.Handle(
                    kPingMethod,
                    [](RequestContext&, CapnpReader<schema::Ping> ping)
                        -> Task<absl::StatusOr<CapnpMessage<schema::Pong>>> {
                      co_return MakePong(ping.get());
                    });
                if (!h.ok()) return h;
              }
              for (size_t i = 0, n = HandlerCount(); i < n; ++i) {
                s.scope.Spawn(api == Api::kCapnpRaw ? EchoPing(s.server)
                                                    : Echo(s.server));
              }
              return absl::OkStatus();
            });
    if (!loops.ok()) Die("server: Start failed: " + loops.status().ToString());
    loops_ = std::move(*loops);
  }

  const Address& address() const { return loops_->address(); }

  // Thread-safe: each server loop reads its thread's allocation count.
  void RequestBeginSnapshot() {
    for (size_t i = 0; i < snapshots_.size(); ++i) {
      (void)loops_->Post(i, [this](moonpool::transport::ServerLoop& s) {
        snapshots_[s.index].allocs_begin = ThreadAllocations();
        snapshots_[s.index].cpu_begin = ThreadCpuNanos();
      });
    }
  }
  void RequestEndSnapshot() {
    for (size_t i = 0; i < snapshots_.size(); ++i) {
      (void)loops_->Post(i, [this](moonpool::transport::ServerLoop& s) {
        snapshots_[s.index].allocs_end = ThreadAllocations();
        snapshots_[s.index].cpu_end = ThreadCpuNanos();
      });
    }
  }

  // Closes the servers (posted after the snapshots, so taken after them)
  // and joins their threads.
  void StopAndJoin() {
    loops_->Stop(/*drain=*/false);
    recorded_ = loops_->total_stats().exactly_once.recorded;
  }

  // Valid after StopAndJoin: the loops' sums.
  uint64_t measured_allocations() const {
    uint64_t n = 0;
    for (const Snapshot& s : snapshots_) n += s.allocs_end - s.allocs_begin;
    return n;
  }
  uint64_t measured_cpu_nanos() const {
    uint64_t n = 0;
    for (const Snapshot& s : snapshots_) n += s.cpu_end - s.cpu_begin;
    return n;
  }
  // Exactly-once outcomes the server recorded in the whole run.
  uint64_t outcomes_recorded() const { return recorded_; }

 private:
  static Task<void> Echo(ServerTransport& server) {
    while (std::optional<IncomingMessage> msg = co_await server.NextMessage()) {
      if (!msg->is_request()) continue;
      // Given back (std::move): the server reuses the message's storage.
      absl::Status s = server.Reply(std::move(*msg),
                                    absl::string_view(msg->envelope.payload));
      if (!s.ok()) Die("server: Reply failed: " + s.ToString());
    }
  }

  // The default queue's handler for --api capnp_raw: a Pong for each Ping.
  static Task<void> EchoPing(ServerTransport& server) {
    while (std::optional<IncomingMessage> msg = co_await server.NextMessage()) {
      if (!msg->is_request()) continue;
      absl::StatusOr<CapnpReader<schema::Ping>> ping =
          moonpool::transport::Codec<CapnpReader<schema::Ping>>::Decode(
              msg->envelope.payload);
      if (!ping.ok()) Die("server: bad Ping: " + ping.status().ToString());
      absl::Status s = server.Reply(std::move(*msg), MakePong(ping->get()));
      if (!s.ok()) Die("server: Reply failed: " + s.ToString());
    }
  }

  // Each loop's window; written on its thread, read by main after the join.
  struct Snapshot {
    uint64_t allocs_begin = 0;
    uint64_t allocs_end = 0;
    uint64_t cpu_begin = 0;
    uint64_t cpu_end = 0;
  };
  std::vector<Snapshot> snapshots_;
  std::unique_ptr<moonpool::transport::ServerThreads> loops_;
  uint64_t recorded_ = 0;
};

// ---------------------------------------------------------------------------
// Client: one thread, one UvLoop, a ClientTransport per connection, K
// workers per connection, the measurement window.

class Client {
 public:
  // Only the client that `snapshots_server` asks the server for its
  // allocation and CPU snapshots (with several client threads, the first).
  Client(const Options& options, Api api, bool exactly_once, Server& server,
         std::shared_ptr<const TlsContext> tls, bool snapshots_server = true)
      : tls_(std::move(tls)),
        snapshots_server_(snapshots_server),
        options_(options),
        api_(api),
        exactly_once_(exactly_once),
        payload_(options.workload.payload_size),
        server_(server) {}

  // Runs the workload to its end on the calling thread.
  void Run() {
    UvLoop loop;
    loop_ = &loop;
    ClientOptions client_options;
    client_options.expected_peers = 1;
    client_options.peer.tls = tls_;
    client_options.peer.max_queued_requests =
        std::max<size_t>(client_options.peer.max_queued_requests,
                         static_cast<size_t>(options_.workload.in_flight));
    std::vector<std::unique_ptr<ClientTransport>> clients;
    for (int c = 0; c < options_.workload.connections; ++c) {
      clients.push_back(
          std::make_unique<ClientTransport>(loop, client_options));
    }
    {
      TaskScope scope(loop, [](absl::Status s) {
        Die("client: a task failed: " + s.ToString());
      });
      live_workers_ = static_cast<size_t>(options_.workload.connections) *
                      static_cast<size_t>(options_.workload.in_flight);
      for (auto& client : clients) {
        for (int k = 0; k < options_.workload.in_flight; ++k) {
          scope.Spawn(api_ == Api::kBytes ? Worker(*client)
                                          : CapnpWorker(*client));
        }
      }
      scope.Spawn(Controller());
      // Every request has a deadline, so the workers end; past this, a
      // request went silent.
      const absl::Time give_up =
          loop.Now() + absl::FromChrono(options_.warmup + options_.duration) +
          kRequestTimeout + absl::Seconds(5);
      if (!loop.RunUntil([this] { return stopping_ && live_workers_ == 0; },
                         give_up)) {
        Die("client: requests had no outcome long after their deadline");
      }
    }
    for (auto& client : clients) client->Close();
    clients.clear();  // the Peers' streams and timers go before the loop
  }

  uint64_t requests() const { return requests_; }
  double seconds() const {
    return std::chrono::duration<double>(measure_end_ - measure_begin_).count();
  }
  uint64_t measured_allocations() const {
    return allocs_end_ - allocs_begin_ - latencies_.growth_allocations();
  }
  uint64_t measured_cpu_nanos() const { return cpu_end_ - cpu_begin_; }
  LatencyRecorder& latencies() { return latencies_; }

 private:
  // One request in flight on `client`, again and again, until stopping_.
  Task<void> Worker(ClientTransport& client) {
    std::string request(payload_.size(), '\0');
    bool seq_filled = false;
    RequestOptions request_options = RequestOptions::Timeout(kRequestTimeout);
    request_options.exactly_once = exactly_once_;
    // Converted once, as a client that keeps its server's name does: a
    // HostPort built from an Address formats the IP on every call.
    const driver::HostPort server(server_.address());
    while (!stopping_) {
      const uint64_t seq = next_seq_++;
      // The pattern after the stamp is the same in every request, so it is
      // written once, on the first pass; then only the stamp changes, as in
      // raw_uv_echo (which stamps, and sends the tail from where it is).
      if (seq_filled) {
        payload_.Stamp(seq, request.data());
      } else {
        payload_.Fill(seq, request.data());
        seq_filled = true;
      }
      const Clock::time_point sent_at = Clock::now();
      absl::StatusOr<std::string> reply = co_await client.Request<std::string>(
          server, request, request_options);
      const Clock::time_point now = Clock::now();
      if (!reply.ok()) {
        Die("client: request " + std::to_string(seq) +
            " failed: " + reply.status().ToString());
      }
      if (!payload_.Matches(seq, std::span<const char>(*reply))) {
        peers::DieMismatch(seq, "reply of " + std::to_string(reply->size()) +
                                    " bytes differs from the request");
      }
      if (measuring_) {
        ++requests_;
        latencies_.Record(now - sent_at);
      } else if (!stopping_) {
        ++warmup_requests_;
      }
    }
    --live_workers_;
  }

  // Worker's loop with a Ping and a Pong (--api capnp_raw, capnp_method).
  Task<void> CapnpWorker(ClientTransport& client) {
    std::string bytes(payload_.size(), '\0');
    const RequestOptions request_options =
        RequestOptions::Timeout(kRequestTimeout);
    // Converted once, as a client that keeps its server's name does: a
    // HostPort built from an Address formats the IP on every call.
    const driver::HostPort server(server_.address());
    while (!stopping_) {
      const uint64_t seq = next_seq_++;
      payload_.Fill(seq, bytes.data());
      CapnpMessage<schema::Ping> ping;
      ping.builder().setSequence(seq);
      ping.builder().setPayload(capnp::Data::Reader(
          reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
      const Clock::time_point sent_at = Clock::now();
      absl::StatusOr<CapnpReader<schema::Pong>> reply;
      if (api_ == Api::kCapnpMethod) {
        reply =
            co_await client.Call(server, kPingMethod, ping, request_options);
      } else {
        reply = co_await client.Request<CapnpReader<schema::Pong>>(
            server, ping, request_options);
      }
      const Clock::time_point now = Clock::now();
      if (!reply.ok()) {
        Die("client: request " + std::to_string(seq) +
            " failed: " + reply.status().ToString());
      }
      const capnp::Data::Reader echoed = reply->get().getPayload();
      if (reply->get().getSequence() != seq ||
          !payload_.Matches(seq,
                            std::span<const char>(
                                reinterpret_cast<const char*>(echoed.begin()),
                                echoed.size()))) {
        peers::DieMismatch(seq, "the Pong differs from the Ping");
      }
      if (measuring_) {
        ++requests_;
        latencies_.Record(now - sent_at);
      } else if (!stopping_) {
        ++warmup_requests_;
      }
    }
    --live_workers_;
  }

  // Until `t` by the steady clock. The loop's Now() is sampled once per
  // turn, so a Sleep started late in a long turn (1 MiB payloads) ends early
  // by steady_clock: sleep again for what is left.
  Task<void> SleepUntil(Clock::time_point t) {
    for (Clock::time_point now = Clock::now(); now < t; now = Clock::now()) {
      co_await driver::Sleep(*loop_, absl::FromChrono(t - now));
    }
  }

  // The warm-up, then the measured window; then tells the workers to stop
  // (each finishes the request it has in flight).
  Task<void> Controller() {
    const Clock::time_point warmup_begin = Clock::now();
    co_await SleepUntil(warmup_begin + options_.warmup);
    latencies_.Reserve(peers::EstimateSamples(
        warmup_requests_, Clock::now() - warmup_begin, options_.duration));
    if (snapshots_server_) server_.RequestBeginSnapshot();
    allocs_begin_ = ThreadAllocations();
    cpu_begin_ = ThreadCpuNanos();
    measuring_ = true;
    measure_begin_ = Clock::now();
    co_await SleepUntil(measure_begin_ + options_.duration);
    measure_end_ = Clock::now();
    measuring_ = false;
    stopping_ = true;
    allocs_end_ = ThreadAllocations();
    cpu_end_ = ThreadCpuNanos();
    if (snapshots_server_) server_.RequestEndSnapshot();
  }

  const std::shared_ptr<const TlsContext> tls_;
  const bool snapshots_server_;
  const Options options_;
  const Api api_;
  const bool exactly_once_;
  const Payload payload_;
  Server& server_;
  UvLoop* loop_ = nullptr;

  size_t live_workers_ = 0;
  uint64_t next_seq_ = 0;
  bool measuring_ = false;
  bool stopping_ = false;
  uint64_t warmup_requests_ = 0;
  uint64_t requests_ = 0;
  Clock::time_point measure_begin_;
  Clock::time_point measure_end_;
  uint64_t allocs_begin_ = 0;
  uint64_t allocs_end_ = 0;
  uint64_t cpu_begin_ = 0;
  uint64_t cpu_end_ = 0;
  LatencyRecorder latencies_;
};

// JSON numbers as peer_harness.cc writes them.
std::string Number(double value, int digits) {
  if (!std::isfinite(value)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

// The contract's object (peers::PrintReport, same keys, order and number
// formats) with the client's and the server's share of allocs_per_request
// appended.
// `api` is added unless it is the default (bytes), and "exactly_once" only
// when true; "cpu_us_per_request" is always the last key.
void PrintReportWithSplit(const Report& report, LatencyRecorder& latencies,
                          std::optional<double> client_allocs,
                          std::optional<double> server_allocs, Api api,
                          bool exactly_once, double cpu_us_per_request) {
  const double rps = report.seconds > 0
                         ? static_cast<double>(report.requests) / report.seconds
                         : 0;
  const double bps = rps * static_cast<double>(report.workload.payload_size);
  auto optional_number = [](std::optional<double> v) {
    return v ? Number(*v, 3) : std::string("null");
  };
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
  json +=
      ", \"allocs_per_request\": " + optional_number(report.allocs_per_request);
  json += ", \"client_allocs_per_request\": " + optional_number(client_allocs);
  json += ", \"server_allocs_per_request\": " + optional_number(server_allocs);
  if (api != Api::kBytes) {
    json += ", \"api\": \"" + std::string(ApiName(api)) + "\"";
  }
  if (exactly_once) json += ", \"exactly_once\": true";
  json += ", \"cpu_us_per_request\": " + Number(cpu_us_per_request, 3);
  json += "}\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace
}  // namespace moonpool::bench::transport_benchmark

namespace moonpool::bench::transport_benchmark {
namespace {

struct RunResult {
  double requests_per_second = 0;
  // CPU of the client and server loop threads in the window, per request.
  double cpu_us_per_request = 0;
};

// One run of the workload with a fresh server and client; prints its JSON
// object.
RunResult RunOnce(const Options& options, Api api, bool exactly_once = false) {
  // NAME_tN: N server loops and N client threads, client t with
  // connections t, t + N, ... of the workload.
  const int threads = options.threads;
  const TlsContexts tls = MakeTlsContexts(options);
  Server server(api, threads, tls.server);
  std::vector<std::unique_ptr<Client>> clients;
  for (int t = 0; t < threads; ++t) {
    Options share = options;
    share.workload.connections =
        (options.workload.connections - t + threads - 1) / threads;
    clients.push_back(std::make_unique<Client>(share, api, exactly_once, server,
                                               tls.client,
                                               /*snapshots_server=*/t == 0));
  }
  std::vector<std::thread> client_threads;
  for (auto& c : clients) {
    client_threads.emplace_back([c = c.get()] { c->Run(); });
  }
  for (std::thread& t : client_threads) t.join();
  server.StopAndJoin();

  Report report;
  report.peer = "moonpool";
  report.workload = options.workload;
  uint64_t client_allocations = 0;
  uint64_t client_cpu_nanos = 0;
  for (auto& c : clients) {
    report.requests += c->requests();
    report.seconds += c->seconds() / threads;
    client_allocations += c->measured_allocations();
    client_cpu_nanos += c->measured_cpu_nanos();
  }
  for (int t = 1; t < threads; ++t) {
    clients[0]->latencies().Append(clients[t]->latencies());
  }
  Client& client = *clients[0];
  std::optional<double> client_allocs;
  std::optional<double> server_allocs;
  if (moonpool::bench::CountsMallocCalls() && report.requests > 0) {
    const double n = static_cast<double>(report.requests);
    client_allocs = static_cast<double>(client_allocations) / n;
    server_allocs = static_cast<double>(server.measured_allocations()) / n;
    report.allocs_per_request = *client_allocs + *server_allocs;
  }
  // The flag must have reached the server: an exactly-once run whose
  // requests went plain would measure nothing of it.
  if (exactly_once && server.outcomes_recorded() < report.requests) {
    Die("the server recorded " + std::to_string(server.outcomes_recorded()) +
        " exactly-once outcomes for " + std::to_string(report.requests) +
        " requests");
  }
  RunResult result;
  if (report.seconds > 0) {
    result.requests_per_second =
        static_cast<double>(report.requests) / report.seconds;
  }
  if (report.requests > 0) {
    result.cpu_us_per_request =
        static_cast<double>(client_cpu_nanos + server.measured_cpu_nanos()) /
        1000.0 / static_cast<double>(report.requests);
  }
  PrintReportWithSplit(report, client.latencies(), client_allocs, server_allocs,
                       api, exactly_once, result.cpu_us_per_request);
  return result;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace
}  // namespace moonpool::bench::transport_benchmark

int main(int argc, char** argv) {
  using namespace moonpool::bench::transport_benchmark;  // NOLINT: main
  using namespace moonpool::bench::peers;                // NOLINT: main
  // --api and --rounds are this program's own: taken out before the
  // contract's flags are parsed.
  std::string api_name = "bytes";
  int rounds = 3;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::string_view arg = argv[i];
    for (std::string_view flag : {"--api", "--rounds"}) {
      if (arg.substr(0, flag.size()) != flag) continue;
      std::string value;
      if (arg.size() > flag.size() && arg[flag.size()] == '=') {
        value = std::string(arg.substr(flag.size() + 1));
      } else if (arg.size() == flag.size() && i + 1 < argc) {
        value = argv[++i];
      } else {
        continue;
      }
      if (flag == "--api") api_name = value;
      if (flag == "--rounds") rounds = std::max(1, std::atoi(value.c_str()));
      arg = {};
      break;
    }
    if (!arg.empty()) args.push_back(argv[i]);
  }
  // A workload named NAME_eo is NAME with exactly-once requests: the
  // harness parses NAME, the report says NAME_eo.
  constexpr std::string_view kExactlyOnceSuffix = "_eo";
  bool exactly_once = false;
  std::string eo_name;  // outlives `options`, whose name views it
  std::string stripped;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    char** value = nullptr;
    std::string prefix;
    if (arg == "--workload" && i + 1 < args.size()) {
      value = &args[i + 1];
    } else if (arg.substr(0, 11) == "--workload=") {
      value = &args[i];
      prefix = "--workload=";
    }
    if (value == nullptr) continue;
    std::string_view name = std::string_view(*value).substr(prefix.size());
    if (name.size() > kExactlyOnceSuffix.size() &&
        name.substr(name.size() - kExactlyOnceSuffix.size()) ==
            kExactlyOnceSuffix) {
      exactly_once = true;
      eo_name = std::string(name);
      stripped = prefix + std::string(name.substr(
                              0, name.size() - kExactlyOnceSuffix.size()));
      *value = stripped.data();
    }
    break;
  }
  Options options =
      ParseOptionsOrDie(static_cast<int>(args.size()), args.data(),
                        WorkloadKinds::kUnary, /*accepts_threads=*/true,
                        /*accepts_tls=*/true);
  if (options.workload.connections < options.threads) {
    Die("a workload of " + std::to_string(options.workload.connections) +
        " connection(s) cannot be shared by " +
        std::to_string(options.threads) + " client threads");
  }
  if (exactly_once) {
    if (options.workload.is_stream() || api_name != "bytes") {
      Die("an exactly-once workload (_eo) is a unary workload with --api "
          "bytes");
    }
    options.workload.name = eo_name;
  }
  ConfigureMalloc();

  if (api_name == "compare") {
    std::vector<double> raw, method, raw_cpu, method_cpu;
    for (int r = 0; r < rounds; ++r) {
      const RunResult a = RunOnce(options, Api::kCapnpRaw);
      const RunResult b = RunOnce(options, Api::kCapnpMethod);
      raw.push_back(a.requests_per_second);
      raw_cpu.push_back(a.cpu_us_per_request);
      method.push_back(b.requests_per_second);
      method_cpu.push_back(b.cpu_us_per_request);
    }
    const double raw_median = Median(raw);
    const double method_median = Median(method);
    const double raw_cpu_median = Median(raw_cpu);
    const double method_cpu_median = Median(method_cpu);
    // "ratio": method / raw requests per second (1 = as fast); "cpu_ratio":
    // raw / method CPU per request, the same sense, and the steadier figure
    // on a loaded machine.
    std::printf(
        "{\"compare\": \"capnp_method / capnp_raw\", \"workload\": \"%s\", "
        "\"rounds\": %d, \"raw_median_rps\": %.1f, "
        "\"method_median_rps\": %.1f, \"ratio\": %.4f, "
        "\"raw_median_cpu_us\": %.3f, \"method_median_cpu_us\": %.3f, "
        "\"cpu_ratio\": %.4f}\n",
        std::string(options.workload.name).c_str(), rounds, raw_median,
        method_median, raw_median > 0 ? method_median / raw_median : 0.0,
        raw_cpu_median, method_cpu_median,
        method_cpu_median > 0 ? raw_cpu_median / method_cpu_median : 0.0);
    return 0;
  }
  Api api = Api::kBytes;
  if (api_name == "capnp_raw") {
    api = Api::kCapnpRaw;
  } else if (api_name == "capnp_method") {
    api = Api::kCapnpMethod;
  } else if (api_name != "bytes") {
    Die("unknown --api '" + api_name +
        "' (bytes, capnp_raw, capnp_method, compare)");
  }
  RunOnce(options, api, exactly_once);
  return 0;
}
