// moonpool-pingpong: a closed-loop load generator for the transport. It
// keeps K requests in flight on each of N connections for a while, checks
// that every reply carries its request's payload, and reports throughput,
// latency percentiles and the outcome of every request.
//
//   moonpool-pingpong [--connect HOST:PORT] [--threads T] [--connections N]
//                     [--in-flight K]
//                     [--payload BYTES] [--duration SECONDS] [--idempotent]
//                     [--exactly-once] [--requests N] [--never-settle]
//                     [--timeout SECONDS] [--allow-faults] [--json FILE]
//                     [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
//                     [--tls-server-name NAME] [--tls]
//                     [--tls-handshake-timeout DURATION]
//
// Any --tls* flag (transport/program_tls.h) makes every connection TLS 1.3
// (PeerOptions::tls), verifying the server against --tls-ca and the name
// --tls-server-name (default: the host of --connect); --tls-cert and
// --tls-key are its client certificate for mutual TLS. TLS needs --connect
// and is not for --never-settle. A handshake that fails is a failed connect:
// the requests waiting for it end with the Status saying why (printed as
// UNEXPECTED lines unless --allow-faults), and the summary counts the failed
// handshakes and gives the connection's last error.
//
// --exactly-once marks every request exactly-once (RequestOptions): after a
// connection loss it is sent again with the same id to the same server
// process, which answers it from its record. --requests N stops after N
// requests in all (whichever of it and --duration comes first).
// --never-settle (with --connect, an IP literal) is another client
// altogether: one bare protocol connection (driver::ConnectionDriver, no
// Peer) that sends exactly-once requests to the server's default queue
// and never says answeredBelow, so the server keeps every outcome until its
// bounds (ServerOptions::exactly_once) forget them; it stops at --requests
// or --duration, does not reconnect, and prints a short summary of its own
// (--json is not written).
//
// Without --connect it runs an echo server in the same process, on its own
// thread with its own UvLoop, on 127.0.0.1 (port 0); the client runs on the
// main thread's loop. Each connection is a ClientTransport of its own (a
// ClientTransport keeps one Peer, so one connection, per address): N
// connections to one server are N transports on the one client loop.
//
// --threads T runs T client loops, one thread each (the main thread's is
// the first), and deals the N connections out among them (connection c to
// loop c mod T; N must be at least T); --requests is shared out the same
// way. The figures printed are the loops' sums (latency percentiles over
// every request). Without --connect, the in-process server has T loops too
// (transport::ServerThreads, on one port).
//
// Progress goes to stderr about once a second (one line rewritten with \r
// on a terminal, plain lines otherwise); the summary goes to stdout, and
// with --json also to FILE.
//
// SIGINT or SIGTERM ends the run early (transport::GracefulShutdown): no new
// request starts, those in flight finish (within --timeout), and the
// summary covers what ran; a second signal closes the ClientTransports at
// once (what was in flight fails with Cancelled, which then counts as
// expected) and the summary follows.
//
// Exit status: 0; 1 when a reply did not match its request, when a request
// never finished, or when one failed with a status that was not expected
// (any error without --allow-faults; with it, anything but Aborted,
// Unavailable and DeadlineExceeded); 2 for a flag value out of range (absl's
// own flag errors, and --help, exit 1).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echo_service.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/connection_driver.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/graceful_shutdown.h"
#include "moonpool/transport/program_flags.h"
#include "moonpool/transport/program_tls.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_threads.h"

ABSL_FLAG(std::string, connect, "",
          "HOST:PORT of the server to load, HOST a name or an IP literal "
          "(default: an echo server in this "
          "process, on its own thread and loop)");
ABSL_FLAG(size_t, threads, 1,
          "client loops, one thread each, sharing the connections (and the "
          "in-process server's loops)");
ABSL_FLAG(size_t, connections, 1, "connections, one ClientTransport each");
ABSL_FLAG(size_t, in_flight, 1, "requests kept in flight per connection");
ABSL_FLAG(size_t, payload, 64,
          "request (and so reply) payload size in bytes, at most 8 MiB");
ABSL_FLAG(double, duration, 5, "seconds to send new requests for");
ABSL_FLAG(double, timeout, 5, "each request's deadline, in seconds");
ABSL_FLAG(bool, idempotent, false,
          "mark requests idempotent (sent again after a reconnect)");
ABSL_FLAG(bool, exactly_once, false,
          "mark requests exactly-once (sent again with the same id after a "
          "reconnect to the same server process)");
ABSL_FLAG(uint64_t, requests, 0,
          "stop after this many requests in all (0: --duration alone)");
ABSL_FLAG(bool, never_settle, false,
          "one bare connection sending exactly-once requests that it never "
          "settles (needs --connect; see the file comment)");
ABSL_FLAG(bool, allow_faults, false,
          "faults are injected from outside: Aborted, Unavailable and "
          "DeadlineExceeded are counted, not failures");
ABSL_FLAG(double, max_backoff, 1, "reconnect backoff ceiling, in seconds");
ABSL_FLAG(std::string, json, "", "also write the summary to this file as JSON");

namespace {

using moonpool::driver::Address;
using moonpool::driver::HostPort;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::ClientOptions;
using moonpool::transport::ClientTransport;
using moonpool::transport::RequestOptions;
using Clock = std::chrono::steady_clock;

using moonpool::transport::GracefulShutdown;
using moonpool::transport::GracefulShutdownOptions;
using moonpool::transport::ShutdownStep;
using moonpool::transport::UsageError;

constexpr char kProgram[] = "moonpool-pingpong";
constexpr char kUsage[] =
    "a closed-loop load generator: K requests in flight on each of N\n"
    "connections, every reply checked against its request.\n\n"
    "  moonpool-pingpong [--connect HOST:PORT] [--threads T] [--connections "
    "N]\n"
    "      [--in-flight K] [--payload BYTES] [--duration SECONDS]\n"
    "      [--timeout SECONDS] [--idempotent] [--exactly-once]\n"
    "      [--requests N] [--never-settle] [--allow-faults]\n"
    "      [--max-backoff SECONDS] [--json FILE]\n"
    "      [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]\n"
    "      [--tls-server-name NAME] [--tls] [--tls-handshake-timeout D]\n\n"
    "Flag names take dashes or underscores. SIGINT/SIGTERM: stop starting\n"
    "requests and report; a second one: cancel what is in flight.";

struct Flags {
  std::string connect;
  size_t threads;
  size_t connections;
  size_t in_flight;
  size_t payload;
  double duration_s;
  double timeout_s;
  double max_backoff_s;
  bool idempotent;
  bool exactly_once;
  uint64_t requests;
  bool never_settle;
  bool allow_faults;
  std::string json;
  std::shared_ptr<const moonpool::driver::TlsContext> tls;  // null: plaintext
};

Flags ReadFlags(int argc, char** argv) {
  moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
  Flags f;
  f.connect = absl::GetFlag(FLAGS_connect);
  f.threads = absl::GetFlag(FLAGS_threads);
  f.connections = absl::GetFlag(FLAGS_connections);
  f.in_flight = absl::GetFlag(FLAGS_in_flight);
  f.payload = absl::GetFlag(FLAGS_payload);
  f.duration_s = absl::GetFlag(FLAGS_duration);
  f.timeout_s = absl::GetFlag(FLAGS_timeout);
  f.max_backoff_s = absl::GetFlag(FLAGS_max_backoff);
  f.idempotent = absl::GetFlag(FLAGS_idempotent);
  f.exactly_once = absl::GetFlag(FLAGS_exactly_once);
  f.requests = absl::GetFlag(FLAGS_requests);
  f.never_settle = absl::GetFlag(FLAGS_never_settle);
  if (f.never_settle && f.connect.empty()) {
    UsageError(kProgram, "--never-settle needs --connect");
  }
  f.allow_faults = absl::GetFlag(FLAGS_allow_faults);
  f.json = absl::GetFlag(FLAGS_json);
  if (f.connections == 0) UsageError(kProgram, "--connections is 0");
  if (f.threads == 0) UsageError(kProgram, "--threads is 0");
  if (f.threads > f.connections) {
    UsageError(kProgram, "--threads is above --connections");
  }
  if (f.requests != 0 && f.requests < f.threads) {
    UsageError(kProgram, "--requests is below --threads");
  }
  if (f.never_settle && f.threads != 1) {
    UsageError(kProgram, "--never-settle runs on one thread");
  }
  if (f.in_flight == 0) UsageError(kProgram, "--in-flight is 0");
  if (f.payload > (size_t{8} << 20)) {
    UsageError(kProgram, "--payload is over 8 MiB");
  }
  if (!(f.duration_s >= 0)) UsageError(kProgram, "--duration is negative");
  if (!(f.timeout_s > 0)) UsageError(kProgram, "--timeout is not > 0");
  if (!(f.max_backoff_s > 0)) UsageError(kProgram, "--max-backoff is not > 0");
  absl::StatusOr<std::shared_ptr<const moonpool::driver::TlsContext>> tls =
      moonpool::transport::MakeProgramTls(
          moonpool::driver::TlsRole::kClient,
          moonpool::transport::ProgramTlsFlagValues());
  if (!tls.ok()) UsageError(kProgram, tls.status().message());
  f.tls = *std::move(tls);
  if (f.tls != nullptr && f.connect.empty()) {
    UsageError(kProgram, "the --tls* flags need --connect");
  }
  if (f.tls != nullptr && f.never_settle) {
    UsageError(kProgram, "--never-settle speaks plaintext only");
  }
  return f;
}

// Latencies in nanoseconds, log-linear buckets (64 per power of two: under
// 1.6% error), fixed size: recording allocates nothing however long the run.
class Histogram {
 public:
  void Record(uint64_t v) {
    ++counts_[Index(v)];
    ++count_;
    max_ = std::max(max_, v);
  }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  void Merge(const Histogram& other) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
  }
  // The value at quantile q (0..1): the middle of its bucket.
  uint64_t Quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * count_));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(Middle(i), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 6;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static size_t Index(uint64_t v) {
    if (v < kSub) return v;
    int msb = 63 - std::countl_zero(v);
    int shift = msb - kSubBits;
    return ((shift + 1) << kSubBits) + ((v >> shift) - kSub);
  }
  static uint64_t Middle(size_t i) {
    if (i < kSub) return i;
    int shift = static_cast<int>(i >> kSubBits) - 1;
    uint64_t low = (kSub + (i & (kSub - 1))) << shift;
    return low + ((uint64_t{1} << shift) >> 1);
  }
  std::array<uint64_t, 64 * kSub> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

// Everything the workers of one client loop share; that loop's thread
// only, but for the progress_* figures.
struct Run {
  UvLoop* loop = nullptr;
  Flags flags;
  HostPort server;
  absl::Time end;      // no request starts after this (loop clock)
  uint64_t quota = 0;  // requests this loop sends at most; 0: no bound
  size_t live_workers = 0;
  uint64_t next_id = 0;
  uint64_t started = 0;
  uint64_t completed = 0;
  uint64_t ok = 0;
  uint64_t mismatches = 0;
  uint64_t unexpected = 0;
  std::map<absl::StatusCode, uint64_t> errors;
  Histogram latency;
  // A signal ended the run early; a second one closed the clients.
  bool interrupted = false;
  bool closed_now = false;
  // Copies for the progress line, which the main thread prints for every
  // loop: written by this loop's thread alone.
  std::atomic<uint64_t> progress_ok{0};
  std::atomic<uint64_t> progress_in_flight{0};
  std::atomic<uint64_t> progress_mismatches{0};
  std::atomic<uint64_t> progress_errors{0};
  void Publish() {
    progress_ok.store(ok, std::memory_order_relaxed);
    progress_in_flight.store(started - completed, std::memory_order_relaxed);
    progress_mismatches.store(mismatches, std::memory_order_relaxed);
    progress_errors.store(completed - ok - mismatches,
                          std::memory_order_relaxed);
  }
};

bool Expected(const Run& run, absl::StatusCode code) {
  // Closing the clients at the second signal cancels what was in flight.
  if (run.closed_now && code == absl::StatusCode::kCancelled) return true;
  return run.flags.allow_faults &&
         (code == absl::StatusCode::kAborted ||
          code == absl::StatusCode::kUnavailable ||
          code == absl::StatusCode::kDeadlineExceeded);
}

// Fills `payload` with bytes only this worker sends; each request then
// stamps its own id on the front, so a reply meant for another request (or
// worker, or connection) never matches.
void FillPattern(std::string& payload, uint64_t worker) {
  uint64_t x = worker * 0x9E3779B97F4A7C15ull + 1;
  for (char& c : payload) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    c = static_cast<char>(x >> 56);
  }
}

Task<void> Worker(Run& run, ClientTransport& client, uint64_t worker) {
  std::string payload(run.flags.payload, '\0');
  FillPattern(payload, worker);
  RequestOptions options;
  options.timeout = absl::Seconds(run.flags.timeout_s);
  options.idempotent = run.flags.idempotent;
  options.exactly_once = run.flags.exactly_once;
  while (run.loop->Now() < run.end &&
         (run.quota == 0 || run.next_id < run.quota)) {
    uint64_t id = ++run.next_id;
    std::memcpy(payload.data(), &id, std::min(payload.size(), sizeof(id)));
    ++run.started;
    if (run.flags.threads > 1) run.Publish();
    Clock::time_point t0 = Clock::now();
    absl::StatusOr<std::string> reply =
        co_await client.Request<std::string>(run.server, payload, options);
    uint64_t ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0)
            .count();
    ++run.completed;
    if (reply.ok()) {
      if (*reply != payload) {
        if (++run.mismatches <= 10) {
          std::fprintf(stderr,
                       "\nmoonpool-pingpong: MISMATCH: request %" PRIu64
                       " (worker %" PRIu64 ") sent %zu bytes, got %zu back%s\n",
                       id, worker, payload.size(), reply->size(),
                       reply->size() == payload.size() ? " that differ" : "");
        }
      } else {
        ++run.ok;
        run.latency.Record(ns);
      }
      continue;
    }
    ++run.errors[reply.status().code()];
    if (!Expected(run, reply.status().code())) {
      if (++run.unexpected <= 10) {
        std::fprintf(stderr,
                     "\nmoonpool-pingpong: UNEXPECTED: request %" PRIu64
                     ": %s\n",
                     id, reply.status().ToString().c_str());
      }
    }
    // An error may come back at once (a closed transport, a full queue):
    // do not spin on it.
    co_await moonpool::driver::Sleep(*run.loop, absl::Milliseconds(1));
  }
  if (run.flags.threads > 1) run.Publish();
  --run.live_workers;
}

std::string ErrorCounts(const Run& run, absl::string_view sep) {
  std::string out;
  for (const auto& [code, n] : run.errors) {
    absl::StrAppend(&out, sep, absl::StatusCodeToString(code), "=", n);
  }
  return out;
}

// The progress line, from the main thread's loop (`run`) while its workers
// run. With more than one loop, the sums of every loop's published figures
// (`all`), and the errors as one count.
Task<void> Progress(Run& run, const std::vector<Run*>& all,
                    Clock::time_point start) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  uint64_t last_ok = 0;
  Clock::time_point last = start;
  while (run.live_workers > 0) {
    co_await moonpool::driver::Sleep(*run.loop, absl::Seconds(1));
    Clock::time_point now = Clock::now();
    double dt = std::chrono::duration<double>(now - last).count();
    double elapsed = std::chrono::duration<double>(now - start).count();
    uint64_t ok = run.ok;
    uint64_t in_flight = run.started - run.completed;
    uint64_t mismatches = run.mismatches;
    std::string errors = ErrorCounts(run, " ");
    if (all.size() > 1) {
      ok = in_flight = mismatches = 0;
      uint64_t failed = 0;
      for (const Run* r : all) {
        ok += r->progress_ok.load(std::memory_order_relaxed);
        in_flight += r->progress_in_flight.load(std::memory_order_relaxed);
        mismatches += r->progress_mismatches.load(std::memory_order_relaxed);
        failed += r->progress_errors.load(std::memory_order_relaxed);
      }
      errors = failed == 0 ? "" : absl::StrCat(" errors ", failed);
    }
    std::fprintf(stderr,
                 "%s[%5.1f s] %8.0f req/s  ok %" PRIu64 "  in flight %" PRIu64
                 "  mismatches %" PRIu64 "%s%s",
                 tty ? "\r" : "", elapsed, (ok - last_ok) / dt, ok, in_flight,
                 mismatches, errors.c_str(), tty ? "\033[K" : "\n");
    std::fflush(stderr);
    last_ok = ok;
    last = now;
  }
  if (tty) std::fputc('\n', stderr);
}

// The program's drain: the signal has moved run.end to now, so no worker
// starts another request; this ends when the last one has its outcome.
Task<void> WorkersDone(Run& run) {
  while (run.live_workers > 0) {
    co_await moonpool::driver::Sleep(*run.loop, absl::Milliseconds(5));
  }
}

// Connections made and requests sent again, summed over the Peers.
struct PeerTotals {
  bool read = false;
  uint64_t tcp_connections = 0;
  uint64_t retries = 0;
  uint64_t resent_exactly_once = 0;
  uint64_t exactly_once_aborted = 0;
  uint64_t tls_handshake_failures = 0;
  // A connection's last error (Peer::last_error), when one had any.
  std::string last_error;
};

// --never-settle: one bare connection whose exactly-once requests are
// never settled (no answeredBelow ever goes out), K in flight.
class UnsettledClient final : public moonpool::driver::ConnectionHandler {
 public:
  UnsettledClient(UvLoop& loop, const Flags& flags)
      : loop_(loop), flags_(flags) {
    payload_.assign(flags.payload, '\0');
    FillPattern(payload_, 0);
  }

  void Attach(std::unique_ptr<moonpool::driver::Stream> stream) {
    moonpool::driver::ConnectionDriverOptions o;
    o.connection.role = moonpool::protocol::Role::kClient;
    o.connection.peer_name = "moonpool-pingpong --never-settle";
    // Random and never 0, as a transport's.
    o.connection.incarnation = loop_.Random() | 1;
    o.connection.default_request_timeout = absl::Seconds(flags_.timeout_s);
    driver_ = std::make_unique<moonpool::driver::ConnectionDriver>(
        loop_, std::move(stream), o, *this);
    driver_->Start(/*pump_now=*/true);
  }
  void Close() {
    if (driver_ != nullptr) driver_->Close();
  }

  bool Done() const {
    return closed || (!MaySend() && in_flight == 0 && ready);
  }

  bool ready = false;
  bool closed = false;
  absl::Status close_status;
  uint64_t sent = 0;
  uint64_t ok = 0;
  uint64_t mismatches = 0;
  uint64_t in_flight = 0;
  std::map<absl::StatusCode, uint64_t> errors;
  absl::Time end = absl::InfiniteFuture();

 private:
  bool MaySend() const {
    return loop_.Now() < end &&
           (flags_.requests == 0 || sent < flags_.requests);
  }
  void OnEvent(moonpool::protocol::Event& event) override {
    if (std::holds_alternative<moonpool::protocol::HandshakeDone>(event)) {
      ready = true;
    } else if (auto* r =
                   std::get_if<moonpool::protocol::ReplyReceived>(&event)) {
      --in_flight;
      if (!r->status.ok()) {
        ++errors[r->status.code()];
      } else if (r->payload.size() != payload_.size()) {
        ++mismatches;
      } else {
        ++ok;
      }
    } else if (auto* f =
                   std::get_if<moonpool::protocol::RequestFailed>(&event)) {
      --in_flight;
      ++errors[f->status.code()];
    }
  }
  // Tops the window up once the events of a pump are in.
  void OnPumped() override {
    if (!ready || driver_->ending()) return;
    while (in_flight < flags_.in_flight && MaySend()) {
      uint64_t id = sent + 1;
      std::memcpy(payload_.data(), &id, std::min(payload_.size(), sizeof(id)));
      moonpool::protocol::RequestOptions o;
      o.exactly_once = true;  // and no answered_below: nothing is settled
      o.deadline = loop_.Now() + absl::Seconds(flags_.timeout_s);
      if (!driver_->SendRequest(payload_, o).ok()) break;
      ++sent;
      ++in_flight;
    }
  }
  void OnClosed(const absl::Status& status) override {
    closed = true;
    close_status = status;
  }

  UvLoop& loop_;
  const Flags& flags_;
  std::string payload_;
  std::unique_ptr<moonpool::driver::ConnectionDriver> driver_;
};

int RunNeverSettle(const Flags& flags) {
  absl::StatusOr<Address> address = Address::Parse(flags.connect);
  if (!address.ok()) UsageError(kProgram, address.status().ToString());
  UvLoop loop;
  UnsettledClient client(loop, flags);
  bool connected = false;
  absl::Status connect_status;
  absl::StatusOr<std::unique_ptr<moonpool::driver::Stream>> stream =
      loop.Connect(*address, [&](absl::Status s) {
        connected = true;
        connect_status = std::move(s);
      });
  if (stream.ok()) {
    loop.RunUntil([&] { return connected; }, loop.Now() + absl::Seconds(10));
  }
  if (!stream.ok() || !connected || !connect_status.ok()) {
    std::fprintf(
        stderr, "moonpool-pingpong: cannot connect to %s: %s\n",
        flags.connect.c_str(),
        (!stream.ok() ? stream.status() : connect_status).ToString().c_str());
    return 1;
  }
  std::fprintf(stderr,
               "moonpool-pingpong: never settling, server %s, %zu in flight, "
               "%zu-byte payloads\n",
               flags.connect.c_str(), flags.in_flight, flags.payload);
  Clock::time_point start = Clock::now();
  client.end = loop.Now() + absl::Seconds(flags.duration_s);
  client.Attach(std::move(*stream));
  loop.RunUntil([&] { return client.Done(); },
                client.end + absl::Seconds(flags.timeout_s + 5));
  const double elapsed =
      std::chrono::duration<double>(Clock::now() - start).count();
  const bool ended_early = client.closed;
  const uint64_t unfinished = client.in_flight;
  client.Close();
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(50));

  std::string errors;
  uint64_t unexpected = 0;
  for (const auto& [code, n] : client.errors) {
    absl::StrAppend(&errors, " ", absl::StatusCodeToString(code), "=", n);
    if (!flags.allow_faults) unexpected += n;
  }
  const bool passed = client.mismatches == 0 && unexpected == 0 &&
                      unfinished == 0 && !ended_early && client.ok > 0;
  std::printf(
      "moonpool-pingpong: never settling, %zu in flight, %zu-byte "
      "payloads, %.2f s\n",
      flags.in_flight, flags.payload, elapsed);
  std::printf("requests:   %" PRIu64 " sent, %" PRIu64 " ok\n", client.sent,
              client.ok);
  std::printf("outcomes:   OK=%" PRIu64 "%s  mismatches=%" PRIu64
              "  unfinished=%" PRIu64 "\n",
              client.ok, errors.c_str(), client.mismatches, unfinished);
  if (ended_early) {
    std::printf("connection: ended early: %s\n",
                client.close_status.ToString().c_str());
  }
  std::printf("result:     %s\n", passed ? "PASS" : "FAIL");
  return passed ? 0 : 1;
}

// One client loop: its Run, its connections (one ClientTransport each) and
// what it measured. The main thread's is the first; each of the others has
// a thread of its own. Owned by main, which outlives the threads: a signal
// posts to these loops (UvLoop::PostFromAnyThread) until they are gone.
struct ClientLoop {
  UvLoop loop;
  Run run;
  std::vector<size_t> connections;  // indexes into 0 .. --connections - 1
  std::vector<std::unique_ptr<ClientTransport>> clients;
  PeerTotals peers;
  uint64_t unfinished = 0;
  bool task_failed = false;
  Clock::time_point done_at;
  std::thread thread;
};

void MakeClients(ClientLoop& cl, const ClientOptions& options) {
  for (size_t i = 0; i < cl.connections.size(); ++i) {
    cl.clients.push_back(std::make_unique<ClientTransport>(cl.loop, options));
  }
}

// What the Peers saw, read once: before the clients close, whether the run
// ends by itself or a signal's shutdown closes them.
void ReadPeers(ClientLoop& cl) {
  if (cl.peers.read) return;
  cl.peers.read = true;
  for (const auto& c : cl.clients) {
    if (const moonpool::driver::Peer* peer = c->peer(cl.run.server)) {
      cl.peers.tcp_connections += peer->stats().connections;
      cl.peers.retries += peer->stats().retries;
      cl.peers.resent_exactly_once += peer->stats().resent_exactly_once;
      cl.peers.exactly_once_aborted += peer->stats().exactly_once_aborted;
      cl.peers.tls_handshake_failures += peer->stats().tls_handshake_failures;
      if (!peer->last_error().ok()) {
        cl.peers.last_error = peer->last_error().ToString();
      }
    }
  }
}

// Runs `cl`'s workers (and, when `progress` is given, the progress line
// over those loops) until they are done, then closes its clients;
// `before_close` runs just before (the main loop's shutdown goes there).
void DriveClients(ClientLoop& cl, Clock::time_point start,
                  const std::vector<Run*>* progress,
                  absl::FunctionRef<void()> before_close) {
  Run& run = cl.run;
  const Flags& flags = run.flags;
  run.end = cl.loop.Now() + absl::Seconds(flags.duration_s);
  {
    TaskScope scope(cl.loop, [&cl](absl::Status s) {
      std::fprintf(stderr, "moonpool-pingpong: task failed: %s\n",
                   s.ToString().c_str());
      cl.task_failed = true;
    });
    for (size_t i = 0; i < cl.connections.size(); ++i) {
      for (size_t k = 0; k < flags.in_flight; ++k) {
        ++run.live_workers;
        scope.Spawn(Worker(run, *cl.clients[i],
                           cl.connections[i] * flags.in_flight + k));
      }
    }
    if (progress != nullptr) scope.Spawn(Progress(run, *progress, start));
    // Every request has a deadline, so every worker ends by then; past it,
    // a request went silent.
    absl::Time give_up = run.end + absl::Seconds(flags.timeout_s + 5);
    cl.loop.RunUntil([&run] { return run.live_workers == 0; }, give_up);
    cl.unfinished = run.started - run.completed;
    if (cl.unfinished != 0) {
      std::fprintf(stderr,
                   "\nmoonpool-pingpong: SILENCE: %" PRIu64
                   " request(s) had no outcome %.1f s after their deadline\n",
                   cl.unfinished, 5.0);
    }
  }  // destroys what is left of the tasks
  cl.done_at = Clock::now();
  ReadPeers(cl);
  before_close();
  for (auto& c : cl.clients) c->Close();
  cl.clients.clear();
  cl.loop.RunUntil([] { return false; },
                   cl.loop.Now() + absl::Milliseconds(50));
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ReadFlags(argc, argv);
  if (flags.never_settle) return RunNeverSettle(flags);

  std::unique_ptr<moonpool::transport::ServerThreads> in_process;
  // A name (resolved by the client's loop on each connect) or a literal.
  HostPort server;
  if (!flags.connect.empty()) {
    absl::StatusOr<HostPort> a = HostPort::Parse(flags.connect);
    if (!a.ok()) UsageError(kProgram, a.status().ToString());
    server = *a;
  } else {
    moonpool::transport::ServerThreadsOptions options;
    options.threads = flags.threads;
    options.server.max_connections = std::max<size_t>(1024, flags.connections);
    options.on_task_error = [](size_t, const absl::Status& s) {
      std::fprintf(stderr, "echo server: task failed: %s\n",
                   s.ToString().c_str());
    };
    absl::StatusOr<std::unique_ptr<moonpool::transport::ServerThreads>> a =
        moonpool::transport::ServerThreads::Start(
            Address::Loopback(0), std::move(options),
            [](moonpool::transport::ServerLoop& s) {
              moonpool::examples::SpawnEchoHandlers(s.loop, s.server, s.scope,
                                                    /*handlers=*/16);
              return absl::OkStatus();
            });
    if (!a.ok()) {
      std::fprintf(stderr, "moonpool-pingpong: in-process server: %s\n",
                   a.status().ToString().c_str());
      return 1;
    }
    in_process = std::move(*a);
    server = in_process->address();
  }

  ClientOptions client_options;
  client_options.peer.backoff.max = absl::Seconds(flags.max_backoff_s);
  client_options.peer.tls = flags.tls;
  client_options.peer.max_queued_requests = std::max<size_t>(
      client_options.peer.max_queued_requests, flags.in_flight);
  // Loop 0 is the main thread's. Connection c goes to loop c mod T, and
  // the --requests bound is shared out alike.
  std::vector<std::unique_ptr<ClientLoop>> loops;
  std::vector<Run*> runs;
  for (size_t t = 0; t < flags.threads; ++t) {
    auto cl = std::make_unique<ClientLoop>();
    cl->run.loop = &cl->loop;
    cl->run.flags = flags;
    cl->run.server = server;
    if (flags.requests != 0) {
      cl->run.quota =
          flags.requests / flags.threads + (t < flags.requests % flags.threads);
    }
    for (size_t c = t; c < flags.connections; c += flags.threads) {
      cl->connections.push_back(c);
    }
    runs.push_back(&cl->run);
    loops.push_back(std::move(cl));
  }
  ClientLoop& main_loop = *loops[0];
  Run& run = main_loop.run;
  UvLoop& loop = main_loop.loop;
  MakeClients(main_loop, client_options);

  std::fprintf(
      stderr,
      "moonpool-pingpong: %s %s, %zu connection(s) x %zu in flight, "
      "%zu-byte payloads, %.1f s%s%s\n",
      flags.connect.empty() ? "in-process server on" : "server",
      server.ToString().c_str(), flags.connections, flags.in_flight,
      flags.payload, flags.duration_s, flags.idempotent ? ", idempotent" : "",
      flags.threads > 1 ? absl::StrCat(", ", flags.threads, " threads").c_str()
                        : "");

  // Tells the other loops what a signal did (their own Run is theirs).
  auto tell_others = [&loops](bool close_now) {
    for (size_t t = 1; t < loops.size(); ++t) {
      ClientLoop* cl = loops[t].get();
      cl->loop.PostFromAnyThread([cl, close_now] {
        cl->run.interrupted = true;
        if (!close_now) {
          cl->run.end = std::min(cl->run.end, cl->loop.Now());
          return;
        }
        cl->run.closed_now = true;
        ReadPeers(*cl);
        for (auto& c : cl->clients) c->Close();
      });
    }
  };
  GracefulShutdownOptions shutdown_options;
  shutdown_options.stop_loop = false;  // RunUntil waits for the workers
  // In flight requests end by their deadline; past it, silence is reported.
  shutdown_options.drain_timeout = absl::Seconds(flags.timeout_s + 5);
  shutdown_options.on_signal = [&run, &loop, &tell_others](int signum,
                                                           ShutdownStep step) {
    run.interrupted = true;
    if (step == ShutdownStep::kDrain) {
      run.end = std::min(run.end, loop.Now());
      std::fprintf(stderr,
                   "\nmoonpool-pingpong: %s: no new requests; waiting for "
                   "those in flight\n",
                   strsignal(signum));
    } else {
      run.closed_now = true;
      std::fprintf(stderr,
                   "\nmoonpool-pingpong: %s: closing now (in flight: "
                   "Cancelled)\n",
                   strsignal(signum));
    }
    tell_others(step != ShutdownStep::kDrain);
  };
  shutdown_options.on_closing = [&main_loop] { ReadPeers(main_loop); };
  absl::StatusOr<std::unique_ptr<GracefulShutdown>> shutdown =
      GracefulShutdown::Watch(loop, std::move(shutdown_options));
  if (!shutdown.ok()) {
    std::fprintf(stderr, "moonpool-pingpong: cannot watch signals: %s\n",
                 shutdown.status().ToString().c_str());
    return 1;
  }
  for (const auto& c : main_loop.clients) (*shutdown)->AddClient(*c);
  (*shutdown)->SetDrain([&run] { return WorkersDone(run); });

  Clock::time_point start = Clock::now();
  for (size_t t = 1; t < loops.size(); ++t) {
    ClientLoop* cl = loops[t].get();
    cl->thread = std::thread([cl, &client_options, start] {
      MakeClients(*cl, client_options);
      DriveClients(*cl, start, nullptr, [] {});
    });
  }
  // It borrows the clients: gone first (and from here on a signal has its
  // default action again).
  DriveClients(main_loop, start, &runs, [&shutdown] { shutdown->reset(); });
  for (size_t t = 1; t < loops.size(); ++t) loops[t]->thread.join();
  if (in_process != nullptr) in_process->Stop();

  // The loops' sums.
  Clock::time_point done_at = start;
  uint64_t unfinished = 0;
  bool task_failed = false;
  PeerTotals peers;
  for (size_t t = 0; t < loops.size(); ++t) {
    const ClientLoop& cl = *loops[t];
    done_at = std::max(done_at, cl.done_at);
    unfinished += cl.unfinished;
    task_failed = task_failed || cl.task_failed;
    peers.tcp_connections += cl.peers.tcp_connections;
    peers.retries += cl.peers.retries;
    peers.resent_exactly_once += cl.peers.resent_exactly_once;
    peers.exactly_once_aborted += cl.peers.exactly_once_aborted;
    peers.tls_handshake_failures += cl.peers.tls_handshake_failures;
    if (!cl.peers.last_error.empty()) peers.last_error = cl.peers.last_error;
    if (t == 0) continue;
    const Run& r = cl.run;
    run.started += r.started;
    run.completed += r.completed;
    run.ok += r.ok;
    run.mismatches += r.mismatches;
    run.unexpected += r.unexpected;
    for (const auto& [code, n] : r.errors) run.errors[code] += n;
    run.latency.Merge(r.latency);
    run.interrupted = run.interrupted || r.interrupted;
  }
  const double elapsed = std::chrono::duration<double>(done_at - start).count();
  const uint64_t tcp_connections = peers.tcp_connections;
  const uint64_t retries = peers.retries;

  const double rps = elapsed > 0 ? run.ok / elapsed : 0;
  const double mbps =
      elapsed > 0 ? 2.0 * run.ok * flags.payload / elapsed / 1e6 : 0;
  const double p50 = run.latency.Quantile(0.5) / 1e3;
  const double p99 = run.latency.Quantile(0.99) / 1e3;
  const double p999 = run.latency.Quantile(0.999) / 1e3;
  const double max = run.latency.max() / 1e3;
  bool passed = run.mismatches == 0 && run.unexpected == 0 && unfinished == 0 &&
                !task_failed &&
                (run.ok > 0 || flags.allow_faults || flags.duration_s == 0);

  std::printf(
      "moonpool-pingpong: %zu connection(s) x %zu in flight, %zu-byte "
      "payloads, %.2f s%s\n",
      flags.connections, flags.in_flight, flags.payload, elapsed,
      flags.idempotent ? ", idempotent" : "");
  std::printf("requests:   %" PRIu64 " sent, %" PRIu64 " ok, %.0f req/s\n",
              run.started, run.ok, rps);
  std::printf("throughput: %.2f MB/s (request + reply payloads)\n", mbps);
  std::printf(
      "latency:    p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f "
      "us\n",
      p50, p99, p999, max);
  std::printf("outcomes:   OK=%" PRIu64 "%s  mismatches=%" PRIu64
              "  unfinished=%" PRIu64 "  unexpected=%" PRIu64 "\n",
              run.ok, ErrorCounts(run, " ").c_str(), run.mismatches, unfinished,
              run.unexpected);
  std::printf("peers:      %" PRIu64 " TCP connections made, %" PRIu64
              " requests sent again after a connection ended\n",
              tcp_connections, retries);
  if (flags.exactly_once) {
    std::printf("exactly-once: %" PRIu64
                " sent again with the same id, %" PRIu64
                " Aborted (the server restarted)\n",
                peers.resent_exactly_once, peers.exactly_once_aborted);
  }
  if (flags.tls != nullptr) {
    std::printf("tls:        %" PRIu64 " handshakes failed\n",
                peers.tls_handshake_failures);
  }
  if (!peers.last_error.empty()) {
    std::printf("last error: %s\n", peers.last_error.c_str());
  }
  std::printf("result:     %s%s\n", passed ? "PASS" : "FAIL",
              run.interrupted ? " (interrupted by a signal)" : "");

  if (!flags.json.empty()) {
    std::string outcomes = absl::StrCat("\"OK\": ", run.ok);
    for (const auto& [code, n] : run.errors) {
      absl::StrAppend(&outcomes, ", \"", absl::StatusCodeToString(code),
                      "\": ", n);
    }
    std::string json = absl::StrCat(
        "{\n  \"connections\": ", flags.connections,
        ",\n  \"in_flight\": ", flags.in_flight,
        ",\n  \"payload_bytes\": ", flags.payload,
        ",\n  \"idempotent\": ", flags.idempotent ? "true" : "false",
        ",\n  \"elapsed_s\": ", elapsed, ",\n  \"requests\": ", run.started,
        ",\n  \"completed\": ", run.completed,
        ",\n  \"requests_per_second\": ", rps, ",\n  \"mb_per_second\": ", mbps,
        ",\n  \"latency_us\": {\"p50\": ", p50, ", \"p99\": ", p99,
        ", \"p999\": ", p999, ", \"max\": ", max, "}", ",\n  \"outcomes\": {",
        outcomes, "}", ",\n  \"mismatches\": ", run.mismatches,
        ",\n  \"unfinished\": ", unfinished,
        ",\n  \"unexpected\": ", run.unexpected,
        ",\n  \"tcp_connections\": ", tcp_connections,
        ",\n  \"retries\": ", retries,
        ",\n  \"exactly_once\": ", flags.exactly_once ? "true" : "false",
        ",\n  \"resent_exactly_once\": ", peers.resent_exactly_once,
        ",\n  \"exactly_once_aborted\": ", peers.exactly_once_aborted,
        ",\n  \"tls\": ", flags.tls != nullptr ? "true" : "false",
        ",\n  \"tls_handshake_failures\": ", peers.tls_handshake_failures,
        ",\n  \"interrupted\": ", run.interrupted ? "true" : "false",
        ",\n  \"passed\": ", passed ? "true" : "false", "\n}\n");
    FILE* f = std::fopen(flags.json.c_str(), "w");
    if (f == nullptr || std::fputs(json.c_str(), f) < 0 ||
        std::fclose(f) != 0) {
      std::fprintf(stderr, "moonpool-pingpong: cannot write %s\n",
                   flags.json.c_str());
      return 1;
    }
  }
  return passed ? 0 : 1;
}
