// stream_benchmark: moonpool's column of ci/bench for the stream workloads
// (issue 14): one reply stream over moonpool-transport, under the contract of
// benchmarks/peers (peer_harness.h, README.md there), beside grpc_echo's
// server stream:
//
//   stream_benchmark --workload stream_64B_w64KiB [--duration_ms 2000]
//                    [--warmup_ms 300]
//
// The server runs on a thread of its own with its own UvLoop:
// ServerTransport::Bind(127.0.0.1:0) and HandleStream(kItems, ...), whose
// handler writes item after item of the requested size (Bytes, item i the
// harness's payload of sequence number i) with StreamWriter::Write, which
// waits while the stream is out of credit, until the count the request asks
// for (0: until the call is cancelled). The client runs on a second thread
// with its own UvLoop: one ClientTransport, one CallStream asking for items
// until it cancels, with StreamOptions::window_bytes the workload's window,
// and one coroutine taking the items with co_await ReplyStream::Next, each
// checked against the payload of its sequence number (a mismatch, a failed
// stream or an early end exits with status 1). At the end of the window the
// client destroys the stream (a `cancel` to the server) and the server's
// writes yield Cancelled.
//
// Measured, as transport_benchmark measures requests: the items received
// inside the window (after the warm-up, for --duration_ms); their
// "latency", the gap since the previous item (peers/README.md, stream
// workloads); the heap allocations made on the client's and on the server's
// loop thread inside the window (alloc_counter.h) per item; the CPU time of
// the two loop threads per item. stdout is the contract's one JSON object
// plus "client_allocs_per_request", "server_allocs_per_request",
// "cpu_us_per_request", "window_bytes", "grants" (credit grants the client
// sent during the whole stream) and "max_buffered_bytes" (the most item bytes
// the client held at once: never more than the window plus one item).
//
// What it is not: a test of streams' edge cases (the transport's tests and
// the simulation do that); one stream on one connection, in steady state.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "alloc_counter.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_options.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/reply_stream.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/transport/stream_method.h"
#include "moonpool/transport/stream_writer.h"
#include "peer_harness.h"

namespace moonpool::bench::stream_benchmark {
namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::Bytes;
using moonpool::transport::ClientOptions;
using moonpool::transport::ClientTransport;
using moonpool::transport::ReplyStream;
using moonpool::transport::RequestContext;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;
using moonpool::transport::StreamMethod;
using moonpool::transport::StreamOptions;
using moonpool::transport::StreamWriter;
using peers::Die;
using peers::LatencyRecorder;
using peers::Options;
using peers::Payload;
using peers::Report;
using Clock = std::chrono::steady_clock;

// The request: the item size and the item count (0: until cancelled), each
// a little-endian u64. A std::string rather than a Cap'n Proto struct: the
// request is sent once per run, and the benchmark needs no schema of its own.
const StreamMethod<std::string, Bytes> kItems{"bench.Stream/Items"};

std::string EncodeRequest(uint64_t item_size, uint64_t count) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(item_size >> (8 * i));
    out[8 + i] = static_cast<char>(count >> (8 * i));
  }
  return out;
}

bool DecodeRequest(const std::string& in, uint64_t& item_size,
                   uint64_t& count) {
  if (in.size() != 16) return false;
  item_size = 0;
  count = 0;
  for (int i = 0; i < 8; ++i) {
    item_size |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
    count |= uint64_t{static_cast<uint8_t>(in[8 + i])} << (8 * i);
  }
  return item_size <= (uint64_t{64} << 20);
}

// CPU time of the calling thread, in nanoseconds (as transport_benchmark).
uint64_t ThreadCpuNanos() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u +
         static_cast<uint64_t>(t.tv_nsec);
}

// The stream's deadline is past the whole run: it bounds the stream, not an
// item (DESIGN.md section 5).
constexpr absl::Duration kSlack = absl::Seconds(30);

// ---------------------------------------------------------------------------
// Server: one thread, one UvLoop, one ServerTransport serving kItems.

class Server {
 public:
  // Starts the thread and waits until the server is bound.
  Server() {
    std::promise<Address> bound;
    std::future<Address> address = bound.get_future();
    thread_ =
        std::thread([this, bound = std::move(bound)]() mutable { Run(bound); });
    address_ = address.get();
  }

  const Address& address() const { return address_; }

  // Thread-safe: the server loop reads its thread's counters.
  void RequestBeginSnapshot() {
    loop_->PostFromAnyThread([this] {
      allocs_begin_ = ThreadAllocations();
      cpu_begin_ = ThreadCpuNanos();
    });
  }
  void RequestEndSnapshot() {
    loop_->PostFromAnyThread([this] {
      allocs_end_ = ThreadAllocations();
      cpu_end_ = ThreadCpuNanos();
    });
  }

  // Closes the server (the handler's writes yield Cancelled, its loop runs
  // out) and joins.
  void StopAndJoin() {
    loop_->PostFromAnyThread([this] { scope_->Spawn(server_->Close(false)); });
    thread_.join();
  }

  // Valid after StopAndJoin.
  uint64_t measured_allocations() const { return allocs_end_ - allocs_begin_; }
  uint64_t measured_cpu_nanos() const { return cpu_end_ - cpu_begin_; }
  uint64_t items_written() const { return items_written_; }

 private:
  // The stream method's handler: items until the count, or until a Write
  // says the call is over (the client cancelled).
  Task<absl::Status> WriteItems(std::string request, StreamWriter<Bytes>& out) {
    uint64_t item_size = 0;
    uint64_t count = 0;
    if (!DecodeRequest(request, item_size, count)) {
      co_return absl::InvalidArgumentError("bad stream request");
    }
    const Payload payload(item_size);
    Bytes item(item_size);
    for (uint64_t seq = 0; count == 0 || seq < count; ++seq) {
      payload.Fill(seq, reinterpret_cast<char*>(item.data()));
      absl::Status s = co_await out.Write(item);
      if (!s.ok()) co_return s;  // Cancelled: nobody reads any more
      ++items_written_;
    }
    co_return absl::OkStatus();
  }

  void Run(std::promise<Address>& bound) {
    UvLoop loop;
    absl::StatusOr<std::unique_ptr<ServerTransport>> server =
        ServerTransport::Bind(loop, Address::Loopback(0), ServerOptions());
    if (!server.ok()) Die("server: Bind failed: " + server.status().ToString());
    TaskScope scope(loop, [](absl::Status s) {
      Die("server: a task failed: " + s.ToString());
    });
    absl::Status s = (*server)->HandleStream(
        kItems,
        [this](RequestContext&, std::string request,
               StreamWriter<Bytes>& out) -> Task<absl::Status> {
          return WriteItems(std::move(request), out);
        });
    if (!s.ok()) Die("server: HandleStream failed: " + s.ToString());
    loop_ = &loop;
    server_ = server->get();
    scope_ = &scope;
    bound.set_value((*server)->address());  // publishes the three above
    loop.Run();  // until Close ends the listener and the calls
    scope.Clear();
    server->reset();
  }

  std::thread thread_;
  Address address_;
  // Set on the server thread before the constructor returns (the promise
  // orders them); used from the client thread only through
  // PostFromAnyThread.
  UvLoop* loop_ = nullptr;
  ServerTransport* server_ = nullptr;
  TaskScope* scope_ = nullptr;
  // Written and read on the server thread; read by main after the join.
  uint64_t allocs_begin_ = 0;
  uint64_t allocs_end_ = 0;
  uint64_t cpu_begin_ = 0;
  uint64_t cpu_end_ = 0;
  uint64_t items_written_ = 0;
};

// ---------------------------------------------------------------------------
// Client: one thread, one UvLoop, one ClientTransport, one stream consumed
// by one coroutine; the measurement window.

class Client {
 public:
  Client(const Options& options, Server& server)
      : options_(options),
        payload_(options.workload.payload_size),
        server_(server) {}

  // Runs the workload to its end on the calling thread.
  void Run() {
    UvLoop loop;
    loop_ = &loop;
    ClientOptions client_options;
    client_options.expected_peers = 1;
    auto client = std::make_unique<ClientTransport>(loop, client_options);
    {
      TaskScope scope(loop, [](absl::Status s) {
        Die("client: a task failed: " + s.ToString());
      });
      scope.Spawn(Consume(*client));
      scope.Spawn(Controller());
      const absl::Time give_up =
          loop.Now() + absl::FromChrono(options_.warmup + options_.duration) +
          kSlack;
      if (!loop.RunUntil([this] { return stopping_ && consumer_done_; },
                         give_up)) {
        Die("client: the stream stalled (no item, no end)");
      }
    }
    client->Close();
    client.reset();  // the Peer's stream and timers go before the loop
  }

  uint64_t items() const { return items_; }
  double seconds() const {
    return std::chrono::duration<double>(measure_end_ - measure_begin_).count();
  }
  uint64_t measured_allocations() const {
    return allocs_end_ - allocs_begin_ - latencies_.growth_allocations();
  }
  uint64_t measured_cpu_nanos() const { return cpu_end_ - cpu_begin_; }
  LatencyRecorder& latencies() { return latencies_; }
  const moonpool::transport::ReplyStreamStats& stream_stats() const {
    return stats_;
  }

 private:
  // Calls the stream and takes its items until stopping_, then destroys it
  // (a cancel).
  Task<void> Consume(ClientTransport& client) {
    StreamOptions stream_options;
    stream_options.timeout =
        absl::FromChrono(options_.warmup + options_.duration) + kSlack;
    stream_options.window_bytes = options_.workload.window_bytes;
    absl::StatusOr<ReplyStream<Bytes>> stream = client.CallStream(
        server_.address(), kItems,
        EncodeRequest(options_.workload.payload_size, /*count=*/0),
        stream_options);
    if (!stream.ok()) {
      Die("client: CallStream failed: " + stream.status().ToString());
    }
    uint64_t seq = 0;
    Clock::time_point last = Clock::now();
    while (!stopping_) {
      absl::StatusOr<std::optional<Bytes>> next = co_await stream->Next();
      const Clock::time_point now = Clock::now();
      if (!next.ok()) {
        Die("client: the stream failed after " + std::to_string(seq) +
            " items: " + next.status().ToString());
      }
      if (!next->has_value()) {
        Die("client: the stream ended after " + std::to_string(seq) +
            " items; it was asked for items until cancelled");
      }
      const Bytes& item = **next;
      if (!payload_.Matches(seq, std::span<const char>(
                                     reinterpret_cast<const char*>(item.data()),
                                     item.size()))) {
        peers::DieMismatch(seq, "stream item of " +
                                    std::to_string(item.size()) +
                                    " bytes differs from the expected one");
      }
      ++seq;
      if (measuring_) {
        ++items_;
        latencies_.Record(now - last);
      } else if (!stopping_) {
        ++warmup_items_;
      }
      last = now;
    }
    stats_ = stream->stats();
    consumer_done_ = true;
    // `stream` goes here, before its end: the call is cancelled.
  }

  // Until `t` by the steady clock (see transport_benchmark's SleepUntil).
  Task<void> SleepUntil(Clock::time_point t) {
    for (Clock::time_point now = Clock::now(); now < t; now = Clock::now()) {
      co_await driver::Sleep(*loop_, absl::FromChrono(t - now));
    }
  }

  // The warm-up, then the measured window; then tells the consumer to stop.
  Task<void> Controller() {
    const Clock::time_point warmup_begin = Clock::now();
    co_await SleepUntil(warmup_begin + options_.warmup);
    latencies_.Reserve(peers::EstimateSamples(
        warmup_items_, Clock::now() - warmup_begin, options_.duration));
    server_.RequestBeginSnapshot();
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
    server_.RequestEndSnapshot();
  }

  const Options options_;
  const Payload payload_;
  Server& server_;
  UvLoop* loop_ = nullptr;

  bool measuring_ = false;
  bool stopping_ = false;
  bool consumer_done_ = false;
  uint64_t warmup_items_ = 0;
  uint64_t items_ = 0;
  Clock::time_point measure_begin_;
  Clock::time_point measure_end_;
  uint64_t allocs_begin_ = 0;
  uint64_t allocs_end_ = 0;
  uint64_t cpu_begin_ = 0;
  uint64_t cpu_end_ = 0;
  LatencyRecorder latencies_;
  moonpool::transport::ReplyStreamStats stats_;
};

// JSON numbers as peer_harness.cc writes them.
std::string Number(double value, int digits) {
  if (!std::isfinite(value)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

// The contract's object (peers::PrintReport: same keys, order and number
// formats) with this program's keys appended.
void PrintStreamReport(const Report& report, LatencyRecorder& latencies,
                       std::optional<double> client_allocs,
                       std::optional<double> server_allocs,
                       double cpu_us_per_item,
                       const moonpool::transport::ReplyStreamStats& stats) {
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
  json += ", \"cpu_us_per_request\": " + Number(cpu_us_per_item, 3);
  json += ", \"window_bytes\": " + std::to_string(report.workload.window_bytes);
  json += ", \"grants\": " + std::to_string(stats.grants);
  json +=
      ", \"max_buffered_bytes\": " + std::to_string(stats.max_buffered_bytes);
  json += "}\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace
}  // namespace moonpool::bench::stream_benchmark

int main(int argc, char** argv) {
  using namespace moonpool::bench::stream_benchmark;  // NOLINT: main
  using namespace moonpool::bench::peers;             // NOLINT: main
  const Options options = ParseOptionsOrDie(argc, argv, WorkloadKinds::kStream);
  ConfigureMalloc();

  Server server;
  Client client(options, server);
  std::thread client_thread([&client] { client.Run(); });
  client_thread.join();
  server.StopAndJoin();

  Report report;
  report.peer = "moonpool";
  report.workload = options.workload;
  report.requests = client.items();
  report.seconds = client.seconds();
  std::optional<double> client_allocs;
  std::optional<double> server_allocs;
  if (moonpool::bench::CountsMallocCalls() && report.requests > 0) {
    const double n = static_cast<double>(report.requests);
    client_allocs = static_cast<double>(client.measured_allocations()) / n;
    server_allocs = static_cast<double>(server.measured_allocations()) / n;
    report.allocs_per_request = *client_allocs + *server_allocs;
  }
  double cpu_us_per_item = 0;
  if (report.requests > 0) {
    cpu_us_per_item = static_cast<double>(client.measured_cpu_nanos() +
                                          server.measured_cpu_nanos()) /
                      1000.0 / static_cast<double>(report.requests);
  }
  PrintStreamReport(report, client.latencies(), client_allocs, server_allocs,
                    cpu_us_per_item, client.stream_stats());
  return 0;
}
