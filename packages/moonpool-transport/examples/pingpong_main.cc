// moonpool-pingpong: a closed-loop load generator for the transport. It
// keeps K requests in flight on each of N connections for a while, checks
// that every reply carries its request's payload, and reports throughput,
// latency percentiles and the outcome of every request.
//
//   moonpool-pingpong [--connect HOST:PORT] [--connections N] [--in-flight K]
//                     [--payload BYTES] [--duration SECONDS] [--idempotent]
//                     [--timeout SECONDS] [--allow-faults] [--json FILE]
//
// Without --connect it runs an echo server in the same process, on its own
// thread with its own UvLoop, on 127.0.0.1 (port 0); the client runs on the
// main thread's loop. Each connection is a ClientTransport of its own (a
// ClientTransport keeps one Peer, so one connection, per address): N
// connections to one server are N transports on the one client loop.
//
// Progress goes to stderr about once a second (one line rewritten with \r
// on a terminal, plain lines otherwise); the summary goes to stdout, and
// with --json also to FILE. Exit status: 0; 1 when a reply did not match its
// request, when a request never finished, or when one failed with a status
// that was not expected (any error without --allow-faults; with it, anything
// but Aborted, Unavailable and DeadlineExceeded); 2 for bad flags.
#include <unistd.h>

#include <algorithm>
#include <array>
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
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echo_service.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/request_options.h"

namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::ClientOptions;
using moonpool::transport::ClientTransport;
using moonpool::transport::RequestOptions;
using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: moonpool-pingpong [flags]\n"
    "  --connect HOST:PORT   server to load (default: an echo server in this\n"
    "                        process, on its own thread and loop)\n"
    "  --connections N       connections, one ClientTransport each (default "
    "1)\n"
    "  --in-flight K         requests kept in flight per connection (default "
    "1)\n"
    "  --payload BYTES       request (and so reply) payload size (default 64)\n"
    "  --duration SECONDS    how long to send new requests (default 5)\n"
    "  --timeout SECONDS     each request's deadline (default 5)\n"
    "  --idempotent          mark requests idempotent (resent after a "
    "reconnect)\n"
    "  --allow-faults        faults are injected from outside: Aborted,\n"
    "                        Unavailable and DeadlineExceeded are counted, not "
    "failures\n"
    "  --max-backoff SECONDS reconnect backoff ceiling (default 1)\n"
    "  --json FILE           also write the summary to FILE as JSON\n";

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(stderr, "moonpool-pingpong: %s\n%s", error.c_str(), kUsage);
  std::exit(2);
}

struct Flags {
  std::string connect;
  size_t connections = 1;
  size_t in_flight = 1;
  size_t payload = 64;
  double duration_s = 5;
  double timeout_s = 5;
  double max_backoff_s = 1;
  bool idempotent = false;
  bool allow_faults = false;
  std::string json;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--idempotent") {
      f.idempotent = true;
      continue;
    }
    if (arg == "--allow-faults") {
      f.allow_faults = true;
      continue;
    }
    if (i + 1 >= argc) Usage("missing value for " + std::string(arg));
    absl::string_view value = argv[++i];
    bool ok = true;
    if (arg == "--connect") {
      f.connect = std::string(value);
    } else if (arg == "--connections") {
      ok = absl::SimpleAtoi(value, &f.connections) && f.connections > 0;
    } else if (arg == "--in-flight") {
      ok = absl::SimpleAtoi(value, &f.in_flight) && f.in_flight > 0;
    } else if (arg == "--payload") {
      ok =
          absl::SimpleAtoi(value, &f.payload) && f.payload <= (size_t{8} << 20);
    } else if (arg == "--duration") {
      ok = absl::SimpleAtod(value, &f.duration_s) && f.duration_s >= 0;
    } else if (arg == "--timeout") {
      ok = absl::SimpleAtod(value, &f.timeout_s) && f.timeout_s > 0;
    } else if (arg == "--max-backoff") {
      ok = absl::SimpleAtod(value, &f.max_backoff_s) && f.max_backoff_s > 0;
    } else if (arg == "--json") {
      f.json = std::string(value);
    } else {
      Usage("unknown flag " + std::string(arg));
    }
    if (!ok) {
      Usage("bad value for " + std::string(arg) + ": " + std::string(value));
    }
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

// Everything the workers share; the client loop's thread only.
struct Run {
  UvLoop* loop = nullptr;
  Flags flags;
  Address server;
  absl::Time end;  // no request starts after this (loop clock)
  size_t live_workers = 0;
  uint64_t next_id = 0;
  uint64_t started = 0;
  uint64_t completed = 0;
  uint64_t ok = 0;
  uint64_t mismatches = 0;
  uint64_t unexpected = 0;
  std::map<absl::StatusCode, uint64_t> errors;
  Histogram latency;
};

bool Expected(const Flags& flags, absl::StatusCode code) {
  return flags.allow_faults && (code == absl::StatusCode::kAborted ||
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
  while (run.loop->Now() < run.end) {
    uint64_t id = ++run.next_id;
    std::memcpy(payload.data(), &id, std::min(payload.size(), sizeof(id)));
    ++run.started;
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
    if (!Expected(run.flags, reply.status().code())) {
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
  --run.live_workers;
}

std::string ErrorCounts(const Run& run, absl::string_view sep) {
  std::string out;
  for (const auto& [code, n] : run.errors) {
    absl::StrAppend(&out, sep, absl::StatusCodeToString(code), "=", n);
  }
  return out;
}

Task<void> Progress(Run& run, Clock::time_point start) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  uint64_t last_ok = 0;
  Clock::time_point last = start;
  while (run.live_workers > 0) {
    co_await moonpool::driver::Sleep(*run.loop, absl::Seconds(1));
    Clock::time_point now = Clock::now();
    double dt = std::chrono::duration<double>(now - last).count();
    double elapsed = std::chrono::duration<double>(now - start).count();
    std::string errors = ErrorCounts(run, " ");
    std::fprintf(stderr,
                 "%s[%5.1f s] %8.0f req/s  ok %" PRIu64 "  in flight %" PRIu64
                 "  mismatches %" PRIu64 "%s%s",
                 tty ? "\r" : "", elapsed, (run.ok - last_ok) / dt, run.ok,
                 run.started - run.completed, run.mismatches, errors.c_str(),
                 tty ? "\033[K" : "\n");
    std::fflush(stderr);
    last_ok = run.ok;
    last = now;
  }
  if (tty) std::fputc('\n', stderr);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = ParseFlags(argc, argv);

  moonpool::examples::EchoServerThread server_thread;
  Address server;
  if (!flags.connect.empty()) {
    absl::StatusOr<Address> a = Address::Parse(flags.connect);
    if (!a.ok()) Usage(a.status().ToString());
    server = *a;
  } else {
    moonpool::transport::ServerOptions options;
    options.max_connections = std::max<size_t>(1024, flags.connections);
    absl::StatusOr<Address> a =
        server_thread.Start(Address::Loopback(0), options, /*handlers=*/16);
    if (!a.ok()) {
      std::fprintf(stderr, "moonpool-pingpong: in-process server: %s\n",
                   a.status().ToString().c_str());
      return 1;
    }
    server = *a;
  }

  Run run;
  UvLoop loop;
  run.loop = &loop;
  run.flags = flags;
  run.server = server;

  ClientOptions client_options;
  client_options.peer.backoff.max = absl::Seconds(flags.max_backoff_s);
  client_options.peer.max_queued_requests = std::max<size_t>(
      client_options.peer.max_queued_requests, flags.in_flight);
  std::vector<std::unique_ptr<ClientTransport>> clients;
  for (size_t i = 0; i < flags.connections; ++i) {
    clients.push_back(std::make_unique<ClientTransport>(loop, client_options));
  }

  std::fprintf(stderr,
               "moonpool-pingpong: %s %s, %zu connection(s) x %zu in flight, "
               "%zu-byte payloads, %.1f s%s\n",
               flags.connect.empty() ? "in-process server on" : "server",
               server.ToString().c_str(), flags.connections, flags.in_flight,
               flags.payload, flags.duration_s,
               flags.idempotent ? ", idempotent" : "");

  bool task_failed = false;
  Clock::time_point start = Clock::now();
  run.end = loop.Now() + absl::Seconds(flags.duration_s);
  uint64_t unfinished = 0;
  {
    TaskScope scope(loop, [&task_failed](absl::Status s) {
      std::fprintf(stderr, "moonpool-pingpong: task failed: %s\n",
                   s.ToString().c_str());
      task_failed = true;
    });
    for (size_t c = 0; c < flags.connections; ++c) {
      for (size_t k = 0; k < flags.in_flight; ++k) {
        ++run.live_workers;
        scope.Spawn(Worker(run, *clients[c], c * flags.in_flight + k));
      }
    }
    scope.Spawn(Progress(run, start));
    // Every request has a deadline, so every worker ends by then; past it,
    // a request went silent.
    absl::Time give_up = run.end + absl::Seconds(flags.timeout_s + 5);
    loop.RunUntil([&run] { return run.live_workers == 0; }, give_up);
    unfinished = run.started - run.completed;
    if (unfinished != 0) {
      std::fprintf(stderr,
                   "\nmoonpool-pingpong: SILENCE: %" PRIu64
                   " request(s) had no outcome %.1f s after their deadline\n",
                   unfinished, 5.0);
    }
  }  // destroys what is left of the tasks
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  // What the Peers saw: reconnections and requests sent again.
  uint64_t tcp_connections = 0;
  uint64_t retries = 0;
  for (const auto& c : clients) {
    if (const moonpool::driver::Peer* peer = c->peer(server)) {
      tcp_connections += peer->stats().connections;
      retries += peer->stats().retries;
    }
  }
  for (auto& c : clients) c->Close();
  clients.clear();
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(50));
  server_thread.Stop();

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
  std::printf("result:     %s\n", passed ? "PASS" : "FAIL");

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
