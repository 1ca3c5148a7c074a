// grpc_echo: the gRPC C++ baseline of transport_benchmark, a unary echo
// (echo.proto) over insecure HTTP/2 on loopback (or HTTP/2 over mutual TLS:
// NAME_tls); and of stream_benchmark, a
// server stream (Echo.Stream) of generated items consumed as they come.
//
// One loop thread per side maps onto gRPC's completion-queue API:
//   - server: the async service (Echo::AsyncService) with one
//     ServerCompletionQueue, drained by the server thread alone. With only
//     async methods registered, the server has no synchronous thread pool;
//     the thread that calls Next() is the one that polls the sockets and runs
//     the calls. Enough Echo requests are posted up front (one per request in
//     flight) that an arriving call never waits for a handler to be posted.
//   - client: one channel per connection (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
//     so that channels do not share one TCP connection), an async stub each,
//     and one CompletionQueue drained by the client thread, with K calls in
//     flight per channel; each completion starts the next call on the same
//     channel.
//   - stream workloads (peer_harness.h: Workload::is_stream): one Stream
//     call per channel, asking for items until the client cancels. The
//     server writes one item at a time (an async writer allows one Write in
//     flight), each completion writing the next; the client keeps one Read
//     in flight, each completion checking the item and reading the next. The
//     workload's window is the client's HTTP/2 receive window: the channel's
//     GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, with BDP probing off so that
//     gRPC does not grow it behind the workload's back. At the end the
//     client cancels (TryCancel) and collects the CANCELLED status.
//   - TLS (a workload NAME_tls, peer_harness.h): the same, with gRPC's SSL
//     credentials instead of insecure ones: the server presents server.pem
//     and requires and verifies a client certificate
//     (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY), the
//     client presents client.pem, both trust ca.pem; the client dials
//     127.0.0.1 and checks it against the server certificate's IP SAN, as
//     moonpool's client does. The protocol version is gRPC's (and OpenSSL's)
//     choice: TLS 1.3 on Debian 12's gRPC 1.51 with OpenSSL 3.0, checked
//     with `openssl s_client` (benchmarks/README.md, TLS).
// gRPC core still owns a few threads of its own (timers, an executor for
// resolution and some callbacks), so allocations cannot all be counted on
// the two loop threads: allocs_per_request is null here.
//
// Usage and output: peer_harness.h and README.md in this directory.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "echo.grpc.pb.h"
#include "peer_harness.h"

namespace moonpool::bench::peers {
namespace {

using Clock = std::chrono::steady_clock;
using grpc_echo::Echo;
using grpc_echo::EchoMessage;
using grpc_echo::StreamRequest;

constexpr int kMaxMessage = 64 << 20;

// What the server's completion queue hands back: each call is its own tag.
class ServerTag {
 public:
  virtual void Proceed(bool ok) = 0;

 protected:
  ~ServerTag() = default;
};

// One server-side unary call, from RequestEcho to Finish; it posts its
// successor when its request arrives, and deletes itself at the end.
class ServerCall final : public ServerTag {
 public:
  ServerCall(Echo::AsyncService* service, grpc::ServerCompletionQueue* cq)
      : service_(service), cq_(cq), responder_(&context_) {
    service_->RequestEcho(&context_, &request_, &responder_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    if (finishing_ || !ok) {  // done, or the server is shutting down
      delete this;
      return;
    }
    new ServerCall(service_, cq_);
    // An echo may hand the request's bytes over rather than copy them.
    reply_.mutable_payload()->swap(*request_.mutable_payload());
    finishing_ = true;
    responder_.Finish(reply_, grpc::Status::OK, this);
  }

 private:
  Echo::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext context_;
  EchoMessage request_;
  EchoMessage reply_;
  grpc::ServerAsyncResponseWriter<EchoMessage> responder_;
  bool finishing_ = false;
};

// One server-side Stream call: RequestStream, then one Write per item (the
// next once the previous completed), then Finish with OK after `count`
// items; once a Write fails (the client cancelled or went away), nothing
// more. Posts its successor when its request arrives; deletes itself at the
// end.
class StreamCall final : public ServerTag {
 public:
  StreamCall(Echo::AsyncService* service, grpc::ServerCompletionQueue* cq)
      : service_(service), cq_(cq), writer_(&context_) {
    service_->RequestStream(&context_, &request_, &writer_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    switch (state_) {
      case State::kRequested:
        if (!ok) {  // the server is shutting down
          delete this;
          return;
        }
        new StreamCall(service_, cq_);
        payload_.emplace(request_.item_size());
        state_ = State::kWriting;
        WriteNext();
        return;
      case State::kWriting:
        if (!ok) {
          // The call is dead (the client cancelled, or the server is
          // shutting down): nothing more may be started on it, not even a
          // Finish, since the queue may already be shut down.
          delete this;
          return;
        }
        WriteNext();
        return;
      case State::kFinishing:
        delete this;
        return;
    }
  }

 private:
  enum class State { kRequested, kWriting, kFinishing };

  void WriteNext() {
    if (request_.count() != 0 && next_ == request_.count()) {
      state_ = State::kFinishing;
      writer_.Finish(grpc::Status::OK, this);
      return;
    }
    std::string* bytes = item_.mutable_payload();
    bytes->resize(payload_->size());
    payload_->Fill(next_++, bytes->data());
    writer_.Write(item_, this);
  }

  Echo::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext context_;
  StreamRequest request_;
  grpc::ServerAsyncWriter<EchoMessage> writer_;
  State state_ = State::kRequested;
  std::optional<Payload> payload_;  // once the request says the item size
  EchoMessage item_;                // serialized by Write: reused after it
  uint64_t next_ = 0;
};

// The server's credentials: insecure, or mutual TLS from options' certs.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const Options& options) {
  if (!options.tls) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = ReadFileOrDie(TlsFile(options, "ca.pem"));
  ssl.pem_key_cert_pairs.push_back(
      {ReadFileOrDie(TlsFile(options, "server.key")),
       ReadFileOrDie(TlsFile(options, "server.pem"))});
  return grpc::SslServerCredentials(ssl);
}

// The client's credentials: insecure, or mutual TLS from options' certs.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const Options& options) {
  if (!options.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFileOrDie(TlsFile(options, "ca.pem"));
  ssl.pem_private_key = ReadFileOrDie(TlsFile(options, "client.key"));
  ssl.pem_cert_chain = ReadFileOrDie(TlsFile(options, "client.pem"));
  return grpc::SslCredentials(ssl);
}

class Server {
 public:
  // Listens on 127.0.0.1 on an ephemeral port.
  explicit Server(const Options& options) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", ServerCredentials(options), &port_);
    builder.RegisterService(&service_);
    builder.SetMaxReceiveMessageSize(kMaxMessage);
    builder.SetMaxSendMessageSize(kMaxMessage);
    cq_ = builder.AddCompletionQueue();
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) Die("server: BuildAndStart failed");
  }

  int port() const { return port_; }

  // Serves on the calling thread until Stop, with `posted` unary calls and
  // `posted_streams` Stream calls waiting for requests.
  void Run(int posted, int posted_streams) {
    for (int i = 0; i < posted; ++i) new ServerCall(&service_, cq_.get());
    for (int i = 0; i < posted_streams; ++i) {
      new StreamCall(&service_, cq_.get());
    }
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
      // Once Stop has begun, a completion starts nothing more (ok = false
      // makes every call delete itself): an operation started on a queue
      // that Stop has shut down is a fatal error in gRPC, and a stream's
      // Write may complete OK after the server's Shutdown returned.
      std::lock_guard<std::mutex> lock(mu_);
      static_cast<ServerTag*>(tag)->Proceed(ok && !stopping_);
    }
  }

  // From another thread while Run runs: ends the calls, then the queue.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    server_->Shutdown();
    cq_->Shutdown();
  }

 private:
  Echo::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex mu_;          // orders Run's Proceed calls against Stop
  bool stopping_ = false;  // guarded by mu_
};

class Client {
 public:
  explicit Client(const Options& options)
      : options_(options), payload_(options.workload.payload_size) {}

  // Connects every channel, runs the workload and drains; on the client's
  // loop thread.
  void Run(int port) {
    const std::string target = "127.0.0.1:" + std::to_string(port);
    const std::shared_ptr<grpc::ChannelCredentials> credentials =
        ChannelCredentials(options_);
    for (int i = 0; i < options_.workload.connections; ++i) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetMaxReceiveMessageSize(kMaxMessage);
      args.SetMaxSendMessageSize(kMaxMessage);
      if (options_.workload.is_stream()) {
        // The workload's window is what this end lets the server send ahead
        // of what it has consumed; BDP probing would grow it.
        args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                    static_cast<int>(options_.workload.window_bytes));
        args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      }
      auto channel = grpc::CreateCustomChannel(target, credentials, args);
      if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                     std::chrono::seconds(10))) {
        Die("client: channel " + std::to_string(i) + " did not connect");
      }
      stubs_.push_back(Echo::NewStub(channel));
    }
    if (options_.workload.is_stream()) {
      RunStreams();
      return;
    }
    for (size_t conn = 0; conn < stubs_.size(); ++conn) {
      for (int i = 0; i < options_.workload.in_flight; ++i) {
        calls_.push_back(std::make_unique<Call>());
        calls_.back()->stub = stubs_[conn].get();
      }
    }

    warmup_begin_ = Clock::now();
    for (auto& call : calls_) Issue(*call);
    size_t outstanding = calls_.size();
    while (outstanding > 0) {
      void* tag;
      bool ok;
      if (!cq_.Next(&tag, &ok)) Die("client: completion queue shut down");
      Call& call = *static_cast<Call*>(tag);
      if (!ok || !call.status.ok()) {
        Die("client: call failed: " + call.status.error_message());
      }
      if (!payload_.Matches(call.seq, call.reply.payload())) {
        DieMismatch(call.seq, "reply of " +
                                  std::to_string(call.reply.payload().size()) +
                                  " bytes differs from the request");
      }
      const Clock::time_point now = Clock::now();
      CountCompletion(now, now - call.sent_at);
      if (stopping_) {
        --outstanding;
      } else {
        Issue(call);
      }
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  // The stream workloads: one Stream call per channel, items counted and
  // checked as they arrive, each item's "latency" the gap since the
  // previous item on its stream; all cancelled at the end of the window.
  void RunStreams() {
    for (auto& stub : stubs_) {
      streams_.push_back(std::make_unique<Stream>());
      Stream& stream = *streams_.back();
      StreamRequest request;
      request.set_item_size(static_cast<uint32_t>(payload_.size()));
      request.set_count(0);  // until cancelled
      stream.reader = stub->PrepareAsyncStream(&stream.context, request, &cq_);
      stream.reader->StartCall(&stream);
    }
    warmup_begin_ = Clock::now();
    size_t live = streams_.size();
    while (live > 0) {
      void* tag;
      bool ok;
      if (!cq_.Next(&tag, &ok)) Die("client: completion queue shut down");
      Stream& stream = *static_cast<Stream*>(tag);
      switch (stream.state) {
        case Stream::State::kStarting:
          if (!ok) Die("client: a Stream call did not start");
          stream.state = Stream::State::kReading;
          stream.last_item_at = Clock::now();
          stream.reader->Read(&stream.item, &stream);
          break;
        case Stream::State::kReading: {
          if (!ok) {  // the stream ended: by our cancel, or a failure
            if (!stopping_) Die("client: a stream ended before the window");
            stream.state = Stream::State::kFinishing;
            stream.reader->Finish(&stream.status, &stream);
            break;
          }
          const uint64_t seq = stream.next_seq++;
          if (!payload_.Matches(seq, stream.item.payload())) {
            DieMismatch(seq, "stream item of " +
                                 std::to_string(stream.item.payload().size()) +
                                 " bytes differs from the expected one");
          }
          const Clock::time_point now = Clock::now();
          CountCompletion(now, now - stream.last_item_at);
          stream.last_item_at = now;
          if (stopping_ && !stream.cancelled) {
            stream.cancelled = true;
            stream.context.TryCancel();
          }
          stream.reader->Read(&stream.item, &stream);
          break;
        }
        case Stream::State::kFinishing:
          if (stream.status.error_code() != grpc::StatusCode::CANCELLED) {
            Die("client: a stream ended with " +
                std::to_string(stream.status.error_code()) + ": " +
                stream.status.error_message() + " rather than our cancel");
          }
          --live;
          break;
      }
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  uint64_t requests() const { return requests_; }
  double seconds() const {
    return std::chrono::duration<double>(measure_end_ - measure_begin_).count();
  }
  LatencyRecorder& latencies() { return latencies_; }

 private:
  // One of the K calls in flight on a channel, reused for the next call
  // once it completes (but for its ClientContext, which serves one call).
  struct Call {
    Echo::Stub* stub = nullptr;
    uint64_t seq = 0;
    Clock::time_point sent_at;
    std::unique_ptr<grpc::ClientContext> context;
    EchoMessage request;
    EchoMessage reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<EchoMessage>> rpc;
  };

  // One Stream call of a stream workload.
  struct Stream {
    enum class State { kStarting, kReading, kFinishing };
    State state = State::kStarting;
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReader<EchoMessage>> reader;
    EchoMessage item;
    uint64_t next_seq = 0;  // the sequence number the next item must carry
    Clock::time_point last_item_at;
    bool cancelled = false;
    grpc::Status status;
  };

  // Counts one completion (a reply, or a stream item) at `now`, with its
  // latency, in the warm-up or the window; ends the window when it is over.
  void CountCompletion(Clock::time_point now, Clock::duration latency) {
    if (!measuring_ && !stopping_) {
      if (now - warmup_begin_ >= options_.warmup) {
        latencies_.Reserve(EstimateSamples(
            warmup_requests_, now - warmup_begin_, options_.duration));
        measuring_ = true;
        measure_begin_ = now;
      } else {
        ++warmup_requests_;
      }
    }
    if (measuring_) {
      ++requests_;
      latencies_.Record(latency);
      if (now - measure_begin_ >= options_.duration) {
        measure_end_ = now;
        measuring_ = false;
        stopping_ = true;
      }
    }
  }

  void Issue(Call& call) {
    call.seq = next_seq_++;
    call.sent_at = Clock::now();
    call.context = std::make_unique<grpc::ClientContext>();
    std::string* bytes = call.request.mutable_payload();
    bytes->resize(payload_.size());
    payload_.Fill(call.seq, bytes->data());
    call.reply.Clear();
    call.rpc =
        call.stub->PrepareAsyncEcho(call.context.get(), call.request, &cq_);
    call.rpc->StartCall();
    call.rpc->Finish(&call.reply, &call.status, &call);
  }

  const Options options_;
  const Payload payload_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Echo::Stub>> stubs_;
  std::vector<std::unique_ptr<Call>> calls_;
  std::vector<std::unique_ptr<Stream>> streams_;

  uint64_t next_seq_ = 0;
  bool measuring_ = false;
  bool stopping_ = false;
  uint64_t warmup_requests_ = 0;
  uint64_t requests_ = 0;
  Clock::time_point warmup_begin_;
  Clock::time_point measure_begin_;
  Clock::time_point measure_end_;
  LatencyRecorder latencies_;
};

}  // namespace
}  // namespace moonpool::bench::peers

int main(int argc, char** argv) {
  using namespace moonpool::bench::peers;
  const Options options =
      ParseOptionsOrDie(argc, argv, WorkloadKinds::kBoth,
                        /*accepts_threads=*/false, /*accepts_tls=*/true);
  ConfigureMalloc();

  Server server(options);
  const int in_flight =
      options.workload.in_flight * options.workload.connections;
  const bool stream = options.workload.is_stream();
  std::thread server_thread([&] {
    server.Run(stream ? 0 : std::min(in_flight, 1024),
               stream ? options.workload.connections : 0);
  });
  Client client(options);
  std::thread client_thread([&] { client.Run(server.port()); });
  client_thread.join();
  server.Stop();
  server_thread.join();

  Report report;
  report.peer = "grpc";
  report.workload = options.workload;
  report.requests = client.requests();
  report.seconds = client.seconds();
  PrintReport(report, client.latencies());
  return 0;
}
