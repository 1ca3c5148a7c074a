// raw_uv_echo: the raw libuv baseline of transport_benchmark, "the practical
// limit of this stack". Frames are a little-endian u32 length and the payload;
// the server echoes each complete frame, the client keeps K frames in flight
// per connection. Nothing else: no checksum, no envelope, no correlation ids
// (replies come back in order on each stream), no timeouts.
//
// What makes it fast, so that it stays a limit rather than a straw man:
//   - every write is first tried with uv_try_write, straight from where the
//     bytes already are; only the part the socket did not take goes through
//     uv_write (and libuv's write queue);
//   - the server echoes complete frames from its read buffer without copying
//     them; while an echo waits for the socket it keeps reading into the
//     free tail of that buffer (which then neither moves nor grows), and
//     pauses reading only when the tail is full: that is the backpressure;
//   - the client sends small frames as one contiguous batch per read
//     callback, and large frames as two buffers (length + sequence stamp, then
//     the constant rest of the payload), so it never copies a large payload;
//   - the client checks each reply as it streams in, into one reused 256 KiB
//     read buffer, so a 1 MiB reply is never assembled;
//   - all buffers are reused: no heap allocation per request after warm-up.
//
// A workload NAME_tN (peer_harness.h) runs N servers, each a loop of its own
// on its own thread with its own listener on the one port (SO_REUSEPORT),
// and N clients, each a loop of its own on its own thread with its share of
// NAME's connections: the kernel spreads the connections over the
// listeners. requests is the clients' sum, seconds their windows' mean, the
// percentiles over every client's samples.
//
// Usage and output: peer_harness.h and README.md in this directory.
#include <sys/socket.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.h"
#include "peer_harness.h"

namespace moonpool::bench::peers {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kHeaderSize = 4;
constexpr uint32_t kMaxFrame = 64u << 20;
// The least free space the server offers a read, and its first buffer.
constexpr size_t kMinRead = 64 << 10;
constexpr size_t kServerInitialBuffer = 256 << 10;
constexpr size_t kClientReadBuffer = 256 << 10;
// Payloads up to this size are copied into one contiguous batch; larger ones
// are sent from the constant payload tail without a copy.
constexpr size_t kCopyLimit = 16 << 10;
// At most this many large frames go into one writev.
constexpr uint64_t kMaxBatch = 32;

void CheckUv(int rc, const char* what) {
  if (rc < 0) Die(std::string(what) + ": " + uv_strerror(rc));
}

void StoreLe32(uint32_t value, char* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(value >> (8 * i));
}

uint32_t LoadLe32(const char* p) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    value |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return value;
}

// ---------------------------------------------------------------------------
// Server: one loop, one listener, every accepted connection.

class Server;

struct ServerConnection {
  uv_tcp_t tcp;
  uv_write_t write_req;
  Server* server = nullptr;
  // Bytes [begin, end) are read and not yet echoed. With no write in flight
  // they are at most one partial frame; while write_req runs, it writes
  // [begin, write_end), and the buffer neither moves nor grows.
  std::vector<char> buffer;
  size_t begin = 0;
  size_t end = 0;
  size_t write_end = 0;
  bool write_pending = false;
  bool reading = false;
  bool closing = false;
};

class Server {
 public:
  // Binds 127.0.0.1 on `port` (0: an ephemeral one) and listens; with
  // `reuse_port`, with SO_REUSEPORT, so that other servers can bind the
  // port too. Call Run on the thread that is to be the server's loop thread.
  explicit Server(int port = 0, bool reuse_port = false) {
    CheckUv(uv_loop_init(&loop_), "server uv_loop_init");
    CheckUv(uv_tcp_init_ex(&loop_, &listener_, AF_INET), "uv_tcp_init_ex");
    listener_.data = this;
    if (reuse_port) {
      uv_os_fd_t fd;
      CheckUv(uv_fileno(reinterpret_cast<uv_handle_t*>(&listener_), &fd),
              "uv_fileno");
      const int one = 1;
      if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        Die("setsockopt(SO_REUSEPORT) failed");
      }
    }
    sockaddr_in addr;
    CheckUv(uv_ip4_addr("127.0.0.1", port, &addr), "uv_ip4_addr");
    CheckUv(
        uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0),
        "uv_tcp_bind");
    CheckUv(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 256,
                      &Server::OnConnection),
            "uv_listen");
    sockaddr_storage bound;
    int len = sizeof(bound);
    CheckUv(uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound),
                               &len),
            "uv_tcp_getsockname");
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    // libuv runs pending async callbacks in the order the handles were
    // initialised: a snapshot sent before the stop is taken before it.
    for (uv_async_t* async : {&begin_async_, &end_async_, &stop_async_}) {
      CheckUv(uv_async_init(&loop_, async, &Server::OnAsync), "uv_async_init");
      async->data = this;
    }
  }

  int port() const { return port_; }

  // Runs the loop until RequestStop, then closes everything.
  void Run() {
    CheckUv(uv_run(&loop_, UV_RUN_DEFAULT), "server uv_run");
    CheckUv(uv_loop_close(&loop_), "server uv_loop_close");
  }

  // Thread-safe. The loop records its thread's allocation count at once.
  void RequestBeginSnapshot() { uv_async_send(&begin_async_); }
  void RequestEndSnapshot() { uv_async_send(&end_async_); }
  void RequestStop() { uv_async_send(&stop_async_); }

  // Valid after Run returns.
  uint64_t measured_allocations() const { return allocs_end_ - allocs_begin_; }

 private:
  static void OnAsync(uv_async_t* async) {
    auto* self = static_cast<Server*>(async->data);
    if (async == &self->begin_async_) {
      self->allocs_begin_ = ThreadAllocations();
    } else if (async == &self->end_async_) {
      self->allocs_end_ = ThreadAllocations();
    } else {
      self->Stop();
    }
  }

  void Stop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    for (uv_async_t* async : {&begin_async_, &end_async_, &stop_async_}) {
      uv_close(reinterpret_cast<uv_handle_t*>(async), nullptr);
    }
    for (ServerConnection* c : connections_) Close(c);
  }

  static void OnConnection(uv_stream_t* listener, int status) {
    CheckUv(status, "server listen callback");
    auto* self = static_cast<Server*>(listener->data);
    auto* c = new ServerConnection;
    c->server = self;
    c->tcp.data = c;
    c->write_req.data = c;
    CheckUv(uv_tcp_init(&self->loop_, &c->tcp), "uv_tcp_init");
    CheckUv(uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)),
            "uv_accept");
    CheckUv(uv_tcp_nodelay(&c->tcp, 1), "uv_tcp_nodelay");
    c->buffer.resize(kServerInitialBuffer);
    self->connections_.push_back(c);
    StartReading(c);
  }

  static void StartReading(ServerConnection* c) {
    CheckUv(uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp),
                          &Server::OnAlloc, &Server::OnRead),
            "uv_read_start");
    c->reading = true;
  }

  // Offers the free tail of the buffer. With no write in flight it first
  // makes room: the frame being received must fit from `begin`, and a read
  // gets at least kMinRead bytes unless the frame needs fewer. While write_req
  // holds a pointer into the buffer nothing moves: a read gets the tail if it
  // has kMinRead bytes, else reading pauses until the write is done.
  static void OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* out) {
    auto* c = static_cast<ServerConnection*>(handle->data);
    if (c->write_pending) {
      if (c->buffer.size() - c->end < kMinRead) {
        *out = uv_buf_init(nullptr, 0);  // OnRead gets UV_ENOBUFS
        return;
      }
    } else {
      MakeRoom(c);
    }
    *out = uv_buf_init(c->buffer.data() + c->end,
                       static_cast<unsigned>(c->buffer.size() - c->end));
  }

  // REQUIRES: no write in flight, so [begin, end) is one partial frame.
  static void MakeRoom(ServerConnection* c) {
    if (c->begin == c->end) c->begin = c->end = 0;
    const size_t have = c->end - c->begin;
    size_t frame = 0;  // the size of the partial frame, when known
    if (have >= kHeaderSize) {
      frame = kHeaderSize + std::min(LoadLe32(&c->buffer[c->begin]), kMaxFrame);
    }
    const size_t still_needed =
        frame > 0 ? frame - have : kHeaderSize - have;  // > 0: it is partial
    const size_t free_bytes = c->buffer.size() - c->end;
    if (free_bytes >= kMinRead || free_bytes >= still_needed) return;
    if (c->begin > 0) {
      std::memmove(c->buffer.data(), c->buffer.data() + c->begin, have);
      c->end = have;
      c->begin = 0;
    }
    const size_t wanted = std::max(frame, have) + kMinRead;
    if (c->buffer.size() < wanted) {
      c->buffer.resize(std::max(c->buffer.size() * 2, 4 * wanted));
    }
  }

  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
    auto* c = static_cast<ServerConnection*>(stream->data);
    if (nread == UV_ENOBUFS) {  // full while a write is in flight
      CheckUv(uv_read_stop(stream), "uv_read_stop");
      c->reading = false;
      return;
    }
    if (nread < 0) {
      if (nread != UV_EOF && nread != UV_ECONNRESET) {
        CheckUv(static_cast<int>(nread), "server read");
      }
      Close(c);
      return;
    }
    c->end += static_cast<size_t>(nread);
    // Replies leave in request order: what arrives during a write waits for
    // it to finish.
    if (!c->write_pending) Echo(c);
  }

  // Echoes every complete frame in [begin, end) straight from the buffer.
  // REQUIRES: no write in flight.
  static void Echo(ServerConnection* c) {
    size_t frames_end = c->begin;
    while (c->end - frames_end >= kHeaderSize) {
      const uint32_t size = LoadLe32(&c->buffer[frames_end]);
      if (size > kMaxFrame) Die("server: frame larger than 64 MiB");
      if (c->end - frames_end - kHeaderSize < size) break;
      frames_end += kHeaderSize + size;
    }
    if (frames_end == c->begin) return;

    auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
    uv_buf_t out = uv_buf_init(c->buffer.data() + c->begin,
                               static_cast<unsigned>(frames_end - c->begin));
    int written = uv_try_write(stream, &out, 1);
    if (written == UV_EAGAIN) written = 0;
    CheckUv(written, "server uv_try_write");
    c->begin += static_cast<size_t>(written);
    if (c->begin == frames_end) {
      if (c->begin == c->end) c->begin = c->end = 0;
      return;
    }
    // The socket is full: the rest goes from the buffer itself.
    c->write_end = frames_end;
    c->write_pending = true;
    out = uv_buf_init(c->buffer.data() + c->begin,
                      static_cast<unsigned>(frames_end - c->begin));
    CheckUv(uv_write(&c->write_req, stream, &out, 1, &Server::OnWrite),
            "server uv_write");
  }

  static void OnWrite(uv_write_t* req, int status) {
    auto* c = static_cast<ServerConnection*>(req->data);
    c->write_pending = false;
    if (c->closing) return;
    if (status < 0) {
      Close(c);
      return;
    }
    c->begin = c->write_end;
    if (c->begin == c->end) c->begin = c->end = 0;
    Echo(c);
    if (!c->reading) StartReading(c);
  }

  static void Close(ServerConnection* c) {
    if (c->closing) return;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
      auto* closed = static_cast<ServerConnection*>(h->data);
      auto& all = closed->server->connections_;
      all.erase(std::find(all.begin(), all.end(), closed));
      delete closed;
    });
  }

  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_async_t stop_async_;
  uv_async_t begin_async_;
  uv_async_t end_async_;
  int port_ = 0;
  std::vector<ServerConnection*> connections_;
  uint64_t allocs_begin_ = 0;
  uint64_t allocs_end_ = 0;
};

// ---------------------------------------------------------------------------
// Client: one loop, every connection, the measurement window.

class Client;

struct Outstanding {
  uint64_t seq;
  Clock::time_point sent_at;
};

struct ClientConnection {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  Client* client = nullptr;
  bool write_pending = false;
  bool closing = false;

  // Requests sent and not answered, oldest first: a ring of K.
  std::vector<Outstanding> ring;
  size_t ring_head = 0;
  size_t ring_count = 0;

  // The reply being received.
  char header[kHeaderSize];
  size_t header_have = 0;
  size_t body_size = 0;
  size_t body_have = 0;

  // Small payloads: frames are appended to `pending` and go out together;
  // `writing` is what write_req owns while it runs.
  std::vector<char> pending;
  std::vector<char> writing;

  // Large payloads: frame i goes out as headers[i % headers.size()] (length
  // and stamp) then the payload tail. Frames [written, issued) are unsent;
  // the first `front_offset` bytes of frame `written` are out.
  std::vector<std::array<char, kHeaderSize + 8>> headers;
  uint64_t issued = 0;
  uint64_t written = 0;
  size_t front_offset = 0;
};

class Client {
 public:
  Client(const Options& options, Server& server)
      : options_(options),
        payload_(options.workload.payload_size),
        copy_mode_(options.workload.payload_size <= kCopyLimit),
        server_(server),
        read_buffer_(kClientReadBuffer) {}

  // Connects, runs the workload, drains and closes; on the calling thread.
  void Run(int port) {
    CheckUv(uv_loop_init(&loop_), "client uv_loop_init");
    CheckUv(uv_timer_init(&loop_, &timer_), "uv_timer_init");
    timer_.data = this;
    sockaddr_in addr;
    CheckUv(uv_ip4_addr("127.0.0.1", port, &addr), "uv_ip4_addr");
    const size_t k = static_cast<size_t>(options_.workload.in_flight);
    for (int i = 0; i < options_.workload.connections; ++i) {
      auto* c = new ClientConnection;
      c->client = this;
      c->tcp.data = c;
      c->write_req.data = c;
      c->connect_req.data = c;
      c->ring.resize(k);
      if (copy_mode_) {
        c->pending.reserve(k * (kHeaderSize + payload_.size()));
        c->writing.reserve(k * (kHeaderSize + payload_.size()));
      } else {
        c->headers.resize(2 * k);
      }
      connections_.push_back(c);
      CheckUv(uv_tcp_init(&loop_, &c->tcp), "uv_tcp_init");
      CheckUv(uv_tcp_connect(&c->connect_req, &c->tcp,
                             reinterpret_cast<const sockaddr*>(&addr),
                             &Client::OnConnect),
              "uv_tcp_connect");
    }
    CheckUv(uv_run(&loop_, UV_RUN_DEFAULT), "client uv_run");
    CheckUv(uv_loop_close(&loop_), "client uv_loop_close");
  }

  uint64_t requests() const { return requests_; }
  double seconds() const {
    return std::chrono::duration<double>(measure_end_ - measure_begin_).count();
  }
  uint64_t measured_allocations() const {
    return allocs_end_ - allocs_begin_ - latencies_.growth_allocations();
  }
  LatencyRecorder& latencies() { return latencies_; }

 private:
  static void OnConnect(uv_connect_t* req, int status) {
    CheckUv(status, "connect to the server");
    auto* c = static_cast<ClientConnection*>(req->data);
    CheckUv(uv_tcp_nodelay(&c->tcp, 1), "uv_tcp_nodelay");
    CheckUv(uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp),
                          &Client::OnAlloc, &Client::OnRead),
            "uv_read_start");
    Client* self = c->client;
    if (++self->connected_ == self->connections_.size()) self->StartLoad();
  }

  // Every connection is up: K requests on each, and the warm-up begins.
  void StartLoad() {
    warmup_begin_ = Clock::now();
    for (ClientConnection* c : connections_) {
      for (int i = 0; i < options_.workload.in_flight; ++i) {
        Issue(c, warmup_begin_);
      }
      Flush(c);
    }
    CheckUv(uv_timer_start(&timer_, &Client::OnWarmupEnd,
                           static_cast<uint64_t>(options_.warmup.count()), 0),
            "uv_timer_start");
  }

  static void OnWarmupEnd(uv_timer_t* timer) {
    auto* self = static_cast<Client*>(timer->data);
    const Clock::time_point now = Clock::now();
    self->latencies_.Reserve(EstimateSamples(self->warmup_requests_,
                                             now - self->warmup_begin_,
                                             self->options_.duration));
    self->server_.RequestBeginSnapshot();
    self->allocs_begin_ = ThreadAllocations();
    self->measuring_ = true;
    self->measure_begin_ = Clock::now();
    CheckUv(uv_timer_start(
                timer, &Client::OnMeasureEnd,
                static_cast<uint64_t>(self->options_.duration.count()), 0),
            "uv_timer_start");
  }

  static void OnMeasureEnd(uv_timer_t* timer) {
    auto* self = static_cast<Client*>(timer->data);
    self->measure_end_ = Clock::now();
    self->measuring_ = false;
    self->stopping_ = true;
    self->allocs_end_ = ThreadAllocations();
    self->server_.RequestEndSnapshot();
    uv_close(reinterpret_cast<uv_handle_t*>(timer), nullptr);
    for (ClientConnection* c : self->connections_) {
      if (c->ring_count == 0) self->CloseConnection(c);
    }
  }

  // Queues the next request on `c` (sent by the next Flush).
  void Issue(ClientConnection* c, Clock::time_point now) {
    const uint64_t seq = next_seq_++;
    c->ring[(c->ring_head + c->ring_count) % c->ring.size()] = {seq, now};
    ++c->ring_count;
    const size_t size = payload_.size();
    if (copy_mode_) {
      const size_t at = c->pending.size();
      c->pending.resize(at + kHeaderSize + size);
      StoreLe32(static_cast<uint32_t>(size), &c->pending[at]);
      payload_.Fill(seq, &c->pending[at + kHeaderSize]);
    } else {
      auto& header = c->headers[c->issued % c->headers.size()];
      StoreLe32(static_cast<uint32_t>(size), header.data());
      payload_.Stamp(seq, header.data() + kHeaderSize);
      ++c->issued;
    }
  }

  void Flush(ClientConnection* c) {
    if (c->write_pending || c->closing) return;
    auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
    if (copy_mode_) {
      if (c->pending.empty()) return;
      uv_buf_t buf = uv_buf_init(c->pending.data(),
                                 static_cast<unsigned>(c->pending.size()));
      int n = uv_try_write(stream, &buf, 1);
      if (n == UV_EAGAIN) n = 0;
      CheckUv(n, "client uv_try_write");
      if (static_cast<size_t>(n) == c->pending.size()) {
        c->pending.clear();
        return;
      }
      c->writing.assign(c->pending.begin() + n, c->pending.end());
      c->pending.clear();
      buf = uv_buf_init(c->writing.data(),
                        static_cast<unsigned>(c->writing.size()));
      CheckUv(uv_write(&c->write_req, stream, &buf, 1, &Client::OnWrite),
              "client uv_write");
      c->write_pending = true;
      return;
    }
    const size_t header_size = kHeaderSize + payload_.stamp_size();
    const std::span<const char> tail = payload_.tail();
    const size_t frame_size = header_size + tail.size();
    while (c->written < c->issued) {
      // Every unsent frame (up to kMaxBatch) in one writev.
      uv_buf_t bufs[2 * kMaxBatch];
      unsigned count =
          FrameBuffers(c, c->written, header_size, tail, c->front_offset, bufs);
      for (uint64_t f = c->written + 1;
           f < c->issued && f < c->written + kMaxBatch; ++f) {
        count += FrameBuffers(c, f, header_size, tail, 0, bufs + count);
      }
      int n = uv_try_write(stream, bufs, count);
      if (n == UV_EAGAIN) n = 0;
      CheckUv(n, "client uv_try_write");
      size_t sent = c->front_offset + static_cast<size_t>(n);
      while (sent >= frame_size && c->written < c->issued) {
        sent -= frame_size;
        ++c->written;
      }
      c->front_offset = sent;
      if (c->written == c->issued) return;
      if (static_cast<size_t>(n) > 0 && c->front_offset == 0) continue;
      // The socket is full: the rest of this one frame through uv_write
      // (two buffers fit in uv_write_t's inline array: no allocation); the
      // frames after it wait for OnWrite.
      const unsigned rest =
          FrameBuffers(c, c->written, header_size, tail, c->front_offset, bufs);
      CheckUv(uv_write(&c->write_req, stream, bufs, rest, &Client::OnWrite),
              "client uv_write");
      c->write_pending = true;
      return;
    }
  }

  // The buffers of frame `frame` from byte `offset` on; returns how many.
  static unsigned FrameBuffers(ClientConnection* c, uint64_t frame,
                               size_t header_size, std::span<const char> tail,
                               size_t offset, uv_buf_t* bufs) {
    char* header = c->headers[frame % c->headers.size()].data();
    char* tail_data = const_cast<char*>(tail.data());
    if (offset < header_size) {
      bufs[0] = uv_buf_init(header + offset,
                            static_cast<unsigned>(header_size - offset));
      bufs[1] = uv_buf_init(tail_data, static_cast<unsigned>(tail.size()));
      return tail.empty() ? 1 : 2;
    }
    offset -= header_size;
    bufs[0] = uv_buf_init(tail_data + offset,
                          static_cast<unsigned>(tail.size() - offset));
    return 1;
  }

  static void OnWrite(uv_write_t* req, int status) {
    auto* c = static_cast<ClientConnection*>(req->data);
    c->write_pending = false;
    if (c->closing) return;
    CheckUv(status, "client write");
    Client* self = c->client;
    if (self->copy_mode_) {
      c->writing.clear();
    } else {
      ++c->written;
      c->front_offset = 0;
    }
    self->Flush(c);
  }

  static void OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* out) {
    auto* self = static_cast<ClientConnection*>(handle->data)->client;
    *out = uv_buf_init(self->read_buffer_.data(),
                       static_cast<unsigned>(self->read_buffer_.size()));
  }

  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<ClientConnection*>(stream->data);
    if (nread < 0) Die("client: the server closed a connection");
    c->client->Receive(c, buf->base, static_cast<size_t>(nread));
  }

  // Parses and checks replies as their bytes arrive; each complete one lets
  // the next request go.
  void Receive(ClientConnection* c, const char* data, size_t size) {
    while (size > 0) {
      if (c->header_have < kHeaderSize) {
        const size_t take = std::min(kHeaderSize - c->header_have, size);
        std::memcpy(c->header + c->header_have, data, take);
        c->header_have += take;
        data += take;
        size -= take;
        if (c->header_have < kHeaderSize) break;
        c->body_size = LoadLe32(c->header);
        c->body_have = 0;
        if (c->ring_count == 0) Die("client: a reply with no request");
        if (c->body_size != payload_.size()) {
          DieMismatch(c->ring[c->ring_head].seq,
                      "reply of " + std::to_string(c->body_size) +
                          " bytes, expected " +
                          std::to_string(payload_.size()));
        }
      }
      const size_t take = std::min(c->body_size - c->body_have, size);
      const uint64_t seq = c->ring[c->ring_head].seq;
      if (!payload_.MatchesAt(seq, c->body_have, {data, take})) {
        DieMismatch(seq, "bytes differ in [" + std::to_string(c->body_have) +
                             ", " + std::to_string(c->body_have + take) + ")");
      }
      c->body_have += take;
      data += take;
      size -= take;
      if (c->body_have == c->body_size) {
        c->header_have = 0;
        Complete(c);
      }
    }
    Flush(c);
  }

  void Complete(ClientConnection* c) {
    const Clock::time_point now = Clock::now();
    const Outstanding done = c->ring[c->ring_head];
    c->ring_head = (c->ring_head + 1) % c->ring.size();
    --c->ring_count;
    if (measuring_) {
      ++requests_;
      latencies_.Record(now - done.sent_at);
    } else if (!stopping_) {
      ++warmup_requests_;
    }
    if (!stopping_) {
      Issue(c, now);
    } else if (c->ring_count == 0) {
      CloseConnection(c);
    }
  }

  void CloseConnection(ClientConnection* c) {
    if (c->closing) return;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
      delete static_cast<ClientConnection*>(h->data);
    });
  }

  const Options options_;
  const Payload payload_;
  const bool copy_mode_;
  Server& server_;
  uv_loop_t loop_;
  uv_timer_t timer_;
  std::vector<ClientConnection*> connections_;
  size_t connected_ = 0;
  std::vector<char> read_buffer_;

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
  LatencyRecorder latencies_;
};

}  // namespace
}  // namespace moonpool::bench::peers

int main(int argc, char** argv) {
  using namespace moonpool::bench::peers;
  const Options options = ParseOptionsOrDie(argc, argv, WorkloadKinds::kUnary,
                                            /*accepts_threads=*/true);
  ConfigureMalloc();
  const int n = options.threads;
  if (options.workload.connections < n) {
    Die("a workload of " + std::to_string(options.workload.connections) +
        " connection(s) cannot be shared by " + std::to_string(n) +
        " client threads");
  }

  // Server 0 picks the port; the others bind it too (SO_REUSEPORT).
  std::vector<std::unique_ptr<Server>> servers;
  servers.push_back(std::make_unique<Server>(0, n > 1));
  for (int t = 1; t < n; ++t) {
    servers.push_back(std::make_unique<Server>(servers[0]->port(), true));
  }
  // Client t takes connections t, t + n, ...: its share of them, and the
  // allocation snapshots of server t.
  std::vector<std::unique_ptr<Client>> clients;
  for (int t = 0; t < n; ++t) {
    Options share = options;
    share.workload.connections = (options.workload.connections - t + n - 1) / n;
    clients.push_back(std::make_unique<Client>(share, *servers[t]));
  }
  std::vector<std::thread> server_threads;
  for (auto& s : servers) {
    server_threads.emplace_back([s = s.get()] { s->Run(); });
  }
  std::vector<std::thread> client_threads;
  const int port = servers[0]->port();
  for (auto& c : clients) {
    client_threads.emplace_back([c = c.get(), port] { c->Run(port); });
  }
  for (std::thread& t : client_threads) t.join();
  for (auto& s : servers) s->RequestStop();
  for (std::thread& t : server_threads) t.join();

  Report report;
  report.peer = "raw_uv";
  report.workload = options.workload;
  uint64_t allocations = 0;
  for (auto& c : clients) {
    report.requests += c->requests();
    report.seconds += c->seconds() / n;
    allocations += c->measured_allocations();
  }
  for (auto& s : servers) allocations += s->measured_allocations();
  if (moonpool::bench::CountsMallocCalls() && report.requests > 0) {
    report.allocs_per_request =
        static_cast<double>(allocations) / static_cast<double>(report.requests);
  }
  LatencyRecorder& latencies = clients[0]->latencies();
  for (int t = 1; t < n; ++t) latencies.Append(clients[t]->latencies());
  PrintReport(report, latencies);
  return 0;
}
