// capnp_rpc_echo: the Cap'n Proto RPC baseline of transport_benchmark. The
// server is a capnp::TwoPartyServer (one TwoPartyVatNetwork and RpcSystem per
// accepted connection) exporting echo.capnp's Echo as its bootstrap
// interface; the client opens one capnp::TwoPartyClient per connection and
// keeps K echo() calls in flight on each, every completed call starting the
// next. Each side is a kj event loop (kj::setupAsyncIo) on its own thread.
//
// Written as an ordinary Cap'n Proto user would: a request builder per call
// (the payload copied into it), a Response<> read in place, promise chains.
// TCP_NODELAY is set on both ends, as on every other peer.
//
// Usage and output: peer_harness.h and README.md in this directory.
#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/exception.h>
#include <kj/timer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.h"
#include "echo.capnp.h"
#include "peer_harness.h"

namespace moonpool::bench::peers {
namespace {

using Clock = std::chrono::steady_clock;
using capnp_echo::Echo;

void SetNoDelay(kj::AsyncIoStream& stream) {
  const int one = 1;
  stream.setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::span<const char> Bytes(capnp::Data::Reader data) {
  return {reinterpret_cast<const char*>(data.begin()), data.size()};
}

class EchoImpl final : public Echo::Server {
 protected:
  kj::Promise<void> echo(EchoContext context) override {
    const capnp::Data::Reader payload = context.getParams().getPayload();
    context
        .getResults(
            capnp::MessageSize{payload.size() / sizeof(capnp::word) + 8, 0})
        .setPayload(payload);
    return kj::READY_NOW;
  }
};

class Server {
 public:
  // Listens on 127.0.0.1:0, hands the port to `port`, and serves until Stop.
  // On the thread that is to be the server's loop thread.
  void Run(std::promise<unsigned>& port) {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    kj::Own<kj::NetworkAddress> address = io.provider->getNetwork()
                                              .parseAddress("127.0.0.1", 0)
                                              .wait(io.waitScope);
    kj::Own<kj::ConnectionReceiver> listener = address->listen();
    capnp::TwoPartyServer server(kj::heap<EchoImpl>());
    auto stop = kj::newPromiseAndFulfiller<void>();
    stop_ = stop.fulfiller.get();
    executor_ = &kj::getCurrentThreadExecutor();
    port.set_value(listener->getPort());
    AcceptLoop(*listener, server)
        .exclusiveJoin(kj::mv(stop.promise))
        .wait(io.waitScope);
  }

  // From any thread, after the port was handed out.
  void Stop() {
    executor_->executeSync([this] { stop_->fulfill(); });
  }

  // From the client's loop thread: records the server thread's allocation
  // count into `*slot` when the server loop gets to it.
  kj::Promise<void> SnapshotAllocations(uint64_t* slot) {
    return executor_->executeAsync([slot] { *slot = ThreadAllocations(); });
  }

 private:
  // Accepts by hand rather than with TwoPartyServer::listen, to set
  // TCP_NODELAY on each connection.
  static kj::Promise<void> AcceptLoop(kj::ConnectionReceiver& listener,
                                      capnp::TwoPartyServer& server) {
    return listener.accept().then(
        [&listener, &server](kj::Own<kj::AsyncIoStream>&& connection) {
          SetNoDelay(*connection);
          server.accept(kj::mv(connection));
          return AcceptLoop(listener, server);
        });
  }

  const kj::Executor* executor_ = nullptr;
  kj::PromiseFulfiller<void>* stop_ = nullptr;
};

class Client {
 public:
  Client(const Options& options, Server& server)
      : options_(options),
        payload_(options.workload.payload_size),
        request_words_(payload_.size() / sizeof(capnp::word) + 8),
        server_(server) {}

  // Connects, runs the workload and drains; on the client's loop thread.
  void Run(unsigned port) {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    kj::Network& network = io.provider->getNetwork();
    struct Connection {
      kj::Own<kj::AsyncIoStream> stream;
      kj::Own<capnp::TwoPartyClient> rpc;
      Echo::Client echo = nullptr;
    };
    std::vector<Connection> connections(
        static_cast<size_t>(options_.workload.connections));
    for (Connection& c : connections) {
      c.stream = network.parseAddress("127.0.0.1", port)
                     .wait(io.waitScope)
                     ->connect()
                     .wait(io.waitScope);
      SetNoDelay(*c.stream);
      c.rpc = kj::heap<capnp::TwoPartyClient>(*c.stream);
      c.echo = c.rpc->bootstrap().castAs<Echo>();
    }

    warmup_begin_ = Clock::now();
    kj::Vector<kj::Promise<void>> work;
    for (Connection& c : connections) {
      for (int i = 0; i < options_.workload.in_flight; ++i) {
        work.add(Lane(c.echo).eagerlyEvaluate(nullptr));
      }
    }
    kj::Timer& timer = io.provider->getTimer();
    work.add(timer.afterDelay(options_.warmup.count() * kj::MILLISECONDS)
                 .then([this, &timer] {
                   BeginWindow();
                   return timer.afterDelay(options_.duration.count() *
                                           kj::MILLISECONDS);
                 })
                 .then([this] { EndWindow(); })
                 // kj 0.9's joinPromises does not drive a branch whose
                 // continuation returned another promise (here the second
                 // timer) unless the branch is evaluated eagerly.
                 .eagerlyEvaluate(nullptr));
    kj::joinPromises(work.releaseAsArray()).wait(io.waitScope);
    KJ_IF_MAYBE (snapshot, begin_snapshot_) {
      snapshot->wait(io.waitScope);
    }
    KJ_IF_MAYBE (snapshot, end_snapshot_) {
      snapshot->wait(io.waitScope);
    }
  }

  uint64_t requests() const { return requests_; }
  double seconds() const {
    return std::chrono::duration<double>(measure_end_ - measure_begin_).count();
  }
  uint64_t measured_allocations() const {
    return (allocs_end_ - allocs_begin_ - latencies_.growth_allocations()) +
           (server_allocs_end_ - server_allocs_begin_);
  }
  LatencyRecorder& latencies() { return latencies_; }

 private:
  // One of the K calls kept in flight on a connection: sends, checks the
  // reply, and goes again until the window has closed.
  kj::Promise<void> Lane(Echo::Client& echo) {
    if (stopping_) return kj::READY_NOW;
    const uint64_t seq = next_seq_++;
    const Clock::time_point sent_at = Clock::now();
    auto request = echo.echoRequest(capnp::MessageSize{request_words_, 0});
    capnp::Data::Builder data = request.initPayload(payload_.size());
    payload_.Fill(seq, reinterpret_cast<char*>(data.begin()));
    return request.send().then(
        [this, &echo, seq,
         sent_at](capnp::Response<Echo::EchoResults>&& response) {
          const capnp::Data::Reader reply = response.getPayload();
          if (!payload_.Matches(seq, Bytes(reply))) {
            DieMismatch(seq, "reply of " + std::to_string(reply.size()) +
                                 " bytes differs from the request");
          }
          const Clock::time_point now = Clock::now();
          if (measuring_) {
            ++requests_;
            latencies_.Record(now - sent_at);
          } else if (!stopping_) {
            ++warmup_requests_;
          }
          return Lane(echo);
        });
  }

  void BeginWindow() {
    latencies_.Reserve(EstimateSamples(
        warmup_requests_, Clock::now() - warmup_begin_, options_.duration));
    // The cross-thread call allocates on this thread: outside the window.
    begin_snapshot_ = server_.SnapshotAllocations(&server_allocs_begin_);
    allocs_begin_ = ThreadAllocations();
    measuring_ = true;
    measure_begin_ = Clock::now();
  }

  void EndWindow() {
    measure_end_ = Clock::now();
    measuring_ = false;
    stopping_ = true;
    allocs_end_ = ThreadAllocations();
    end_snapshot_ = server_.SnapshotAllocations(&server_allocs_end_);
  }

  const Options options_;
  const Payload payload_;
  const uint64_t request_words_;
  Server& server_;

  uint64_t next_seq_ = 0;
  bool measuring_ = false;
  bool stopping_ = false;
  uint64_t warmup_requests_ = 0;
  uint64_t requests_ = 0;
  Clock::time_point warmup_begin_;
  Clock::time_point measure_begin_;
  Clock::time_point measure_end_;
  uint64_t allocs_begin_ = 0;
  uint64_t allocs_end_ = 0;
  uint64_t server_allocs_begin_ = 0;
  uint64_t server_allocs_end_ = 0;
  kj::Maybe<kj::Promise<void>> begin_snapshot_;
  kj::Maybe<kj::Promise<void>> end_snapshot_;
  LatencyRecorder latencies_;
};

// Runs `body`, turning a kj exception into Die.
template <typename F>
void OrDie(const char* what, F&& body) {
  try {
    body();
  } catch (const kj::Exception& e) {
    Die(std::string(what) + ": " + e.getDescription().cStr());
  }
}

}  // namespace
}  // namespace moonpool::bench::peers

int main(int argc, char** argv) {
  using namespace moonpool::bench::peers;
  const Options options = ParseOptionsOrDie(argc, argv);
  ConfigureMalloc();

  Server server;
  std::promise<unsigned> port;
  std::thread server_thread(
      [&] { OrDie("server", [&] { server.Run(port); }); });
  const unsigned server_port = port.get_future().get();
  Client client(options, server);
  std::thread client_thread(
      [&] { OrDie("client", [&] { client.Run(server_port); }); });
  client_thread.join();
  OrDie("stopping the server", [&] { server.Stop(); });
  server_thread.join();

  Report report;
  report.peer = "capnp_rpc";
  report.workload = options.workload;
  report.requests = client.requests();
  report.seconds = client.seconds();
  if (moonpool::bench::CountsMallocCalls() && report.requests > 0) {
    report.allocs_per_request =
        static_cast<double>(client.measured_allocations()) /
        static_cast<double>(report.requests);
  }
  PrintReport(report, client.latencies());
  return 0;
}
