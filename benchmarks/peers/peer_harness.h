// The command-line and output contract shared by every transport benchmark
// program: the three baselines in this directory (raw libuv, Cap'n Proto RPC,
// gRPC) and moonpool's own benchmarks/transport_benchmark. Each program is
//
//   <program> --workload NAME [--duration_ms 2000] [--warmup_ms 300]
//
// runs one in-process server thread and one client thread on 127.0.0.1, keeps
// the workload's requests in flight for the duration after the warm-up,
// byte-compares every reply with the payload it sent, and prints exactly one
// JSON object on stdout (PrintReport). README.md in this directory states the
// contract in full; this header is its code.
//
// Example (a client loop, schematically):
//
//   const Options options = ParseOptionsOrDie(argc, argv);
//   ConfigureMalloc();
//   const Payload payload(options.workload.payload_size);
//   LatencyRecorder latencies;
//   ...
//   payload.Fill(seq, request_bytes);                    // sending
//   if (!payload.Matches(seq, reply)) DieMismatch(...);  // receiving
//   if (measuring) latencies.Record(now - sent_at);
//   ...
//   PrintReport(report);
//
// What it is not: a benchmark framework. It owns no threads, loops or
// sockets; each program drives its own stack its own way.
#ifndef MOONPOOL_BENCHMARKS_PEERS_PEER_HARNESS_H_
#define MOONPOOL_BENCHMARKS_PEERS_PEER_HARNESS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moonpool::bench::peers {

// One workload: `connections` client connections, each keeping `in_flight`
// requests of `payload_size` bytes outstanding (a closed loop: a reply lets
// the next request go).
//
// A stream workload (window_bytes > 0) is instead one server stream per
// connection (`in_flight` is 1): the client asks for items of `payload_size`
// bytes until it cancels, consumes them as fast as they come with a receive
// window of `window_bytes`, and each item counts as one "request" of the
// report. Only the programs that serve streams (grpc_echo and moonpool's
// stream_benchmark) accept these.
struct Workload {
  std::string_view name;
  size_t payload_size;
  int in_flight;    // per connection
  int connections;  // all from the one client thread to the one server thread
  size_t window_bytes = 0;  // > 0: a stream workload, with this window

  bool is_stream() const { return window_bytes > 0; }
};

// Every workload, in the order ci/bench prints them.
inline constexpr Workload kWorkloads[] = {
    {"64B_x1", 64, 1, 1},
    {"64B_x16", 64, 16, 1},
    {"64B_x256", 64, 256, 1},
    {"64KiB_x16", 64 << 10, 16, 1},
    {"1MiB_x16", 1 << 20, 16, 1},
    // 100 connections, one request in flight on each: what it costs to serve
    // many quiet clients, not how well one connection batches.
    {"100conn", 64, 1, 100},
    // One server stream, items of 64 B or 64 KiB, a 64 KiB or 1 MiB window.
    {"stream_64B_w64KiB", 64, 1, 1, 64 << 10},
    {"stream_64B_w1MiB", 64, 1, 1, 1 << 20},
    {"stream_64KiB_w64KiB", 64 << 10, 1, 1, 64 << 10},
    {"stream_64KiB_w1MiB", 64 << 10, 1, 1, 1 << 20},
};

// Which workloads a program runs.
enum class WorkloadKinds { kUnary, kStream, kBoth };

// The parsed command line.
struct Options {
  Workload workload;
  // Server loops, and client threads, for a workload named NAME_tN (see
  // ParseOptionsOrDie); 1 otherwise.
  int threads = 1;
  // A workload named NAME_tls (see ParseOptionsOrDie): every connection is
  // mutual TLS 1.3 with the certificates of `certs_dir`.
  bool tls = false;
  // --certs DIR: the directory moonpool-make-test-certs wrote (TlsFile).
  std::string certs_dir;
  std::chrono::milliseconds duration{2000};  // measured, after the warm-up
  std::chrono::milliseconds warmup{300};     // run, then discarded
};

// Parses `--workload NAME [--duration_ms N] [--warmup_ms N]` (also the
// `--flag=value` form), NAME one of the workloads of `kinds`. Prints the
// usage on stderr and exits with status 2 on anything else (a stream
// workload given to a unary-only program is an unknown workload); `--help`
// prints it on stdout and exits 0.
//
// A program that can run its server on several loops and its client on
// several threads (raw_uv_echo, transport_benchmark) passes
// `accepts_threads`: then a unary workload NAME_tN (N from 1 to
// kMaxThreads; 100conn_t2, say) is NAME on N server loops (one port,
// SO_REUSEPORT) and N client threads sharing its connections (connection c
// on thread c mod N, so NAME must have at least N). Options::threads is N,
// and Options::workload is NAME's with the name NAME_tN, which the report
// carries. ci/bench's "threads" table runs these.
//
// A program that can run over TLS (grpc_echo, transport_benchmark) passes
// `accepts_tls`: then a unary workload NAME_tls (NAME possibly NAME_tN:
// 100conn_t2_tls) is NAME with every connection mutual TLS, the server
// presenting server.pem (localhost, 127.0.0.1) and the client client.pem,
// each trusting ca.pem, from the directory given as `--certs DIR` (made by
// packages/moonpool-driver/tools/moonpool-make-test-certs DIR; required
// with such a name). Options::tls is true and the report carries the name
// with the suffix. ci/bench's "TLS" table runs these.
inline constexpr int kMaxThreads = 256;
Options ParseOptionsOrDie(int argc, char** argv,
                          WorkloadKinds kinds = WorkloadKinds::kUnary,
                          bool accepts_threads = false,
                          bool accepts_tls = false);

// The path of `name` ("ca.pem", "server.key", ...) in options.certs_dir.
std::string TlsFile(const Options& options, std::string_view name);

// The whole content of the file at `path`; Die when it cannot be read.
std::string ReadFileOrDie(const std::string& path);

// Fixes glibc's mmap and trim thresholds (32 MiB, 256 MiB) so that a 1 MiB
// message freed and allocated again stays in the heap instead of costing page
// faults per request, as a long-running server's allocator behaves; the same
// policy as wire_codec_benchmark. MOONPOOL_BENCH_MALLOC=default keeps glibc's
// own. Call once at the start of main, before any thread.
void ConfigureMalloc();

// Prints "<program>: <message>" on stderr and ends the process with status 1
// at once (no destructors: other threads may still be running).
[[noreturn]] void Die(std::string_view message);

// The bytes of each request. Every request carries a distinct sequence
// number in its first min(8, size) bytes (little-endian); the rest is a fixed
// pattern. So an echo that returned another request's bytes, or shifted,
// truncated or corrupted them, fails the comparison.
class Payload {
 public:
  explicit Payload(size_t size);

  size_t size() const { return pattern_.size(); }

  // Bytes [0, stamp_size()) of a payload are the sequence number.
  size_t stamp_size() const { return stamp_size_; }

  // Writes the stamp of `seq` (stamp_size() bytes) to `dst`.
  void Stamp(uint64_t seq, char* dst) const;

  // The bytes after the stamp, identical in every request: a sender may point
  // at them rather than copy them.
  std::span<const char> tail() const {
    return std::span<const char>(pattern_).subspan(stamp_size_);
  }

  // Writes the whole payload of `seq` (size() bytes) to `dst`.
  void Fill(uint64_t seq, char* dst) const;

  // True when `data` is exactly the payload of `seq`.
  bool Matches(uint64_t seq, std::span<const char> data) const;

  // True when `data` equals bytes [offset, offset + data.size()) of the
  // payload of `seq`, for a receiver that checks a reply as it streams in.
  // REQUIRES: offset + data.size() <= size().
  bool MatchesAt(uint64_t seq, size_t offset, std::span<const char> data) const;

 private:
  std::vector<char> pattern_;
  size_t stamp_size_;
};

// Ends the process (Die) with a message naming the request whose reply did
// not match.
[[noreturn]] void DieMismatch(uint64_t seq, std::string_view detail);

// Per-request latencies of the measured window, in nanoseconds. Record
// allocates only when the vector grows; growth_allocations() counts those, so
// that a program can subtract the harness's own allocations from its
// allocs_per_request.
class LatencyRecorder {
 public:
  // Room for `n` samples, so that recording does not allocate; call it
  // before the measured window starts.
  void Reserve(size_t n) { samples_.reserve(n); }

  void Record(std::chrono::steady_clock::duration latency) {
    if (samples_.size() == samples_.capacity()) ++growth_allocations_;
    samples_.push_back(static_cast<int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count()));
  }

  size_t size() const { return samples_.size(); }
  uint64_t growth_allocations() const { return growth_allocations_; }

  // Adds `other`'s samples: a program with several client threads merges
  // their recorders once the window is over.
  void Append(const LatencyRecorder& other) {
    samples_.insert(samples_.end(), other.samples_.begin(),
                    other.samples_.end());
    sorted_ = false;
  }

  // The sample at quantile `q` in [0, 1] (nearest rank), in microseconds;
  // 0 when there are none. Sorts the samples on first use.
  double PercentileMicros(double q);

 private:
  std::vector<int64_t> samples_;
  bool sorted_ = false;
  uint64_t growth_allocations_ = 0;
};

// Samples to reserve for the measured window: the warm-up's completion rate
// (`warmup_requests` in `warmup`) stretched to `duration`, with headroom.
size_t EstimateSamples(uint64_t warmup_requests,
                       std::chrono::steady_clock::duration warmup,
                       std::chrono::milliseconds duration);

// What a run measured. `requests` are the replies received (and checked)
// inside the window of `seconds`.
struct Report {
  std::string peer;  // "raw_uv", "capnp_rpc", "grpc", "moonpool"
  Workload workload;
  uint64_t requests = 0;
  double seconds = 0;
  // Heap allocations per request on the client and server loop threads
  // together, or nullopt when the program cannot count them all.
  std::optional<double> allocs_per_request;
};

// Prints the one JSON object of the contract on stdout, followed by a newline:
//   {"peer", "workload", "requests", "seconds", "requests_per_second",
//    "bytes_per_second" (payload bytes one way: requests_per_second *
//    payload_size), "latency_us": {"p50", "p99", "p999"},
//    "allocs_per_request" (a number or null)}
void PrintReport(const Report& report, LatencyRecorder& latencies);

}  // namespace moonpool::bench::peers

#endif  // MOONPOOL_BENCHMARKS_PEERS_PEER_HARNESS_H_
