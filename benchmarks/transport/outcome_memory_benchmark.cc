// outcome_memory_benchmark: the server's memory per unsettled exactly-once
// record (issue 15), measured three ways over N records left by a client
// that never settles.
//
//   outcome_memory_benchmark [--records 100000] [--reply_bytes 64]
//                            [--in_flight 256] [--settle_ms 300]
//
// The server is a ServerTransport on a thread of its own (its own UvLoop),
// echo handlers on its default queue, its exactly-once bounds raised above
// N (per client and in total) and a record lifetime of an hour, so that
// nothing but a settle drops a record during the run. The client is not a
// ClientTransport (whose Peer settles every answered id on its next
// request) but a bare protocol::Connection over a blocking socket on a
// second thread: one client incarnation, `--in_flight` requests outstanding.
//
//   1. Warm-up: 10,000 exactly-once requests, each with answered_below = the
//      lowest id still awaiting its reply, so the server settles as it goes:
//      its buffers, maps and the client's entry reach working size and few
//      records remain.
//   2. Snapshot: the process's VmRSS (/proc/self/status), the heap in use
//      (glibc mallinfo2: uordblks + hblkhd, every arena) and the server's
//      OutcomeTableStats (records, bytes), read on the server's thread.
//   3. N exactly-once requests of `--reply_bytes` bytes (the echo replies the
//      same bytes), answered_below invalid (nothing settled): each leaves a
//      completed record holding its reply.
//   4. After --settle_ms, the same snapshot; the growth divided by the
//      records added, times 1,000.
//
// The client's own memory does not grow with N (a request is forgotten
// once answered), so the process's growth is the server's. Prints one JSON
// object:
//
//   {"benchmark": "outcome_memory", "records": N, "reply_bytes": 64,
//    "rss_bytes_per_1000": ..., "heap_bytes_per_1000": ...,
//    "table_bytes_per_1000": ..., plus the raw snapshots}
//
// benchmarks/alloc_counter is not used: it counts the bytes a thread
// allocates, never those it frees, so it cannot tell what stays.
//
// Exits 1 when a request fails or the server did not keep N more records.
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/protocol/connection_event.h"
#include "moonpool/protocol/connection_options.h"
#include "moonpool/protocol/outcome_table.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::bench::outcome_memory {
namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::IncomingMessage;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;

[[noreturn]] void Die(std::string_view message) {
  std::fprintf(stderr, "outcome_memory_benchmark: %.*s\n",
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::_Exit(1);
}

struct Flags {
  size_t records = 100000;
  size_t reply_bytes = 64;
  size_t in_flight = 256;
  int settle_ms = 300;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string value;
    const size_t eq = arg.find('=');
    std::string_view name = arg.substr(0, eq);
    if (eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Die("missing value for " + std::string(arg));
    }
    const long long n = std::atoll(value.c_str());
    if (n <= 0) Die("bad value for " + std::string(name) + ": " + value);
    if (name == "--records") {
      flags.records = static_cast<size_t>(n);
    } else if (name == "--reply_bytes") {
      flags.reply_bytes = static_cast<size_t>(n);
    } else if (name == "--in_flight") {
      flags.in_flight = static_cast<size_t>(n);
    } else if (name == "--settle_ms") {
      flags.settle_ms = static_cast<int>(n);
    } else {
      Die("unknown flag " + std::string(name) +
          " (--records, --reply_bytes, --in_flight, --settle_ms)");
    }
  }
  return flags;
}

// The process's resident set, from /proc/self/status (VmRSS, KiB).
uint64_t RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    }
  }
  Die("no VmRSS in /proc/self/status");
}

// Bytes malloc has handed out and not taken back, over every arena.
uint64_t HeapInUseBytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// ---------------------------------------------------------------------------
// Server: one thread, one UvLoop, one ServerTransport, echo handlers.

class Server {
 public:
  explicit Server(const Flags& flags) {
    std::promise<Address> bound;
    std::future<Address> address = bound.get_future();
    thread_ = std::thread([this, &flags, bound = std::move(bound)]() mutable {
      Run(flags, bound);
    });
    address_ = address.get();
  }

  const Address& address() const { return address_; }

  // The table's stats, read on the server's thread.
  protocol::OutcomeTableStats OutcomeStats() {
    std::promise<protocol::OutcomeTableStats> stats;
    std::future<protocol::OutcomeTableStats> result = stats.get_future();
    loop_->PostFromAnyThread(
        [this, &stats] { stats.set_value(server_->stats().exactly_once); });
    return result.get();
  }

 private:
  static Task<void> Echo(ServerTransport& server) {
    while (std::optional<IncomingMessage> msg = co_await server.NextMessage()) {
      if (!msg->is_request()) continue;
      absl::Status s =
          server.Reply(*msg, absl::string_view(msg->envelope.payload));
      if (!s.ok()) Die("server: Reply failed: " + s.ToString());
    }
  }

  void Run(const Flags& flags, std::promise<Address>& bound) {
    UvLoop loop;
    ServerOptions options;
    // Room for every record of the run, so that no bound forgets one, and
    // a lifetime longer than the run.
    const size_t records = flags.records + 4 * flags.in_flight + 20000;
    const size_t bytes =
        records *
        (flags.reply_bytes + protocol::OutcomeTable::kRecordOverheadBytes) * 2;
    options.exactly_once.max_records_per_client = records;
    options.exactly_once.max_records = records;
    options.exactly_once.max_bytes_per_client = bytes;
    options.exactly_once.max_bytes = bytes;
    options.exactly_once.min_lifetime = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<ServerTransport>> server =
        ServerTransport::Bind(loop, Address::Loopback(0), options);
    if (!server.ok()) Die("server: Bind failed: " + server.status().ToString());
    TaskScope scope(loop, [](absl::Status s) {
      Die("server: a task failed: " + s.ToString());
    });
    for (int i = 0; i < 4; ++i) scope.Spawn(Echo(**server));
    loop_ = &loop;
    server_ = server->get();
    bound.set_value((*server)->address());  // publishes the two above
    loop.Run();
    scope.Clear();
    server->reset();
  }

  std::thread thread_;
  Address address_;
  UvLoop* loop_ = nullptr;
  ServerTransport* server_ = nullptr;
};

// ---------------------------------------------------------------------------
// Client: a protocol::Connection over a blocking TCP socket.

class Client {
 public:
  Client(const Address& server, const Flags& flags)
      : flags_(flags),
        payload_(flags.reply_bytes, 'r'),
        connection_(Options(), absl::Now()) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) Die("socket: " + std::string(std::strerror(errno)));
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server.port());
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      Die("connect: " + std::string(std::strerror(errno)));
    }
    while (connection_.version() == 0) Pump();
    if (connection_.version() != 2) {
      Die("the server speaks version " + std::to_string(connection_.version()) +
          ", not 2");
    }
  }
  ~Client() { close(fd_); }

  // `n` exactly-once requests, `in_flight` at a time. settle: each says
  // answered_below = the lowest id still awaiting its reply; otherwise
  // none says anything.
  void Run(size_t n, bool settle) {
    size_t sent = 0;
    while (sent < n || !outstanding_.empty()) {
      while (sent < n && outstanding_.size() < flags_.in_flight) {
        protocol::RequestOptions options;
        options.exactly_once = true;
        options.deadline = absl::Now() + absl::Seconds(60);
        if (settle) {
          options.answered_below = outstanding_.empty()
                                       ? CorrelationId(ids_.last().value() + 1)
                                       : outstanding_.front();
        }
        absl::StatusOr<CorrelationId> id =
            connection_.SendRequest(payload_, options, absl::Now());
        if (!id.ok()) Die("SendRequest: " + id.status().ToString());
        outstanding_.push_back(*id);
        ++sent;
      }
      Pump();
    }
  }

 private:
  protocol::ConnectionOptions Options() {
    protocol::ConnectionOptions o;
    o.role = protocol::Role::kClient;
    o.peer_name = "outcome_memory_benchmark";
    o.incarnation = 0x6f75746d656d0001;  // any nonzero, fixed
    o.ids = &ids_;
    return o;
  }

  // Writes what is pending, reads what arrives (blocking), handles events.
  void Pump() {
    for (absl::Span<const char> out = connection_.PendingOutput(); !out.empty();
         out = connection_.PendingOutput()) {
      const ssize_t w = send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
      if (w < 0) Die("send: " + std::string(std::strerror(errno)));
      connection_.ConsumeOutput(static_cast<size_t>(w));
    }
    absl::Span<char> room = connection_.PrepareReceive(64 << 10);
    const ssize_t r = recv(fd_, room.data(), room.size(), 0);
    if (r <= 0) Die("recv: the server closed the connection");
    connection_.CommitReceive(static_cast<size_t>(r), absl::Now());
    connection_.AdvanceTime(absl::Now());
    while (std::optional<protocol::Event> e = connection_.NextEvent()) {
      std::visit(
          [this](const auto& event) {
            using T = std::decay_t<decltype(event)>;
            if constexpr (std::is_same_v<T, protocol::ReplyReceived>) {
              if (!event.status.ok()) {
                Die("request failed: " + event.status.ToString());
              }
              if (event.payload != payload_) Die("reply differs from request");
              Answered(event.id);
            } else if constexpr (std::is_same_v<T, protocol::RequestFailed>) {
              Die("request failed: " + event.status.ToString());
            } else if constexpr (std::is_same_v<T, protocol::Closed>) {
              Die("connection closed: " + event.status.ToString());
            }
          },
          *e);
    }
  }

  void Answered(CorrelationId id) {
    auto it = std::find(outstanding_.begin(), outstanding_.end(), id);
    if (it == outstanding_.end()) Die("a reply for an unknown id");
    outstanding_.erase(it);
  }

  const Flags flags_;
  const std::string payload_;
  CorrelationIdGenerator ids_;
  protocol::Connection connection_;
  std::deque<CorrelationId> outstanding_;  // ids in order sent
  int fd_ = -1;
};

struct Snapshot {
  uint64_t rss = 0;
  uint64_t heap = 0;
  uint64_t records = 0;
  uint64_t table_bytes = 0;
};

Snapshot Take(Server& server) {
  const protocol::OutcomeTableStats stats = server.OutcomeStats();
  return Snapshot{RssBytes(), HeapInUseBytes(), stats.records, stats.bytes};
}

}  // namespace
}  // namespace moonpool::bench::outcome_memory

int main(int argc, char** argv) {
  using namespace moonpool::bench::outcome_memory;  // NOLINT: main
  const Flags flags = ParseFlags(argc, argv);
  // The same malloc policy as the other benchmarks (peer_harness.cc): no
  // trimming, no mmap below 32 MiB, so that the heap only grows by what is
  // kept.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  Server server(flags);
  Snapshot before, after;
  {
    Client client(server.address(), flags);
    client.Run(10000, /*settle=*/true);
    std::this_thread::sleep_for(std::chrono::milliseconds(flags.settle_ms));
    before = Take(server);
    client.Run(flags.records, /*settle=*/false);
    std::this_thread::sleep_for(std::chrono::milliseconds(flags.settle_ms));
    after = Take(server);
  }
  const uint64_t added = after.records - before.records;
  if (after.records < before.records + flags.records) {
    Die("the server kept " + std::to_string(added) + " more records, not " +
        std::to_string(flags.records));
  }
  auto per_1000 = [added](uint64_t a, uint64_t b) {
    return (static_cast<double>(a) - static_cast<double>(b)) * 1000.0 /
           static_cast<double>(added);
  };
  std::printf(
      "{\"benchmark\": \"outcome_memory\", \"records\": %llu, "
      "\"reply_bytes\": %zu, \"rss_before_bytes\": %llu, "
      "\"rss_after_bytes\": %llu, \"heap_before_bytes\": %llu, "
      "\"heap_after_bytes\": %llu, \"table_records_before\": %llu, "
      "\"table_records_after\": %llu, \"table_bytes_before\": %llu, "
      "\"table_bytes_after\": %llu, \"rss_bytes_per_1000\": %.1f, "
      "\"heap_bytes_per_1000\": %.1f, \"table_bytes_per_1000\": %.1f}\n",
      static_cast<unsigned long long>(added), flags.reply_bytes,
      static_cast<unsigned long long>(before.rss),
      static_cast<unsigned long long>(after.rss),
      static_cast<unsigned long long>(before.heap),
      static_cast<unsigned long long>(after.heap),
      static_cast<unsigned long long>(before.records),
      static_cast<unsigned long long>(after.records),
      static_cast<unsigned long long>(before.table_bytes),
      static_cast<unsigned long long>(after.table_bytes),
      per_1000(after.rss, before.rss), per_1000(after.heap, before.heap),
      per_1000(after.table_bytes, before.table_bytes));
  // No Close and join: the server thread has no way out of its loop here,
  // and nothing is left to flush but stdout.
  std::fflush(stdout);
  std::_Exit(0);
}
