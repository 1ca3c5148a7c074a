// UvLoop's TCP streams: Connect, and the Stream both Connect and accept give.
//
// Reads go straight into the span StreamHandler::ReadBuffer returns (libuv's
// alloc callback asks for it), so a read copies nothing and allocates
// nothing. Writes first offer the bytes to the kernel with uv_try_write; only
// what it does not take is copied, into a buffer the stream keeps and
// reuses, and sent with one uv_write. While that write is in flight, further
// writes append to a second buffer, sent as one write when the first
// completes. So a write the kernel takes at once allocates nothing, and a
// burst of small writes into a slow link costs one system call per round
// trip of the buffers, not one per write. A gathered write (WriteGathered)
// offers all its pieces in one writev, from where they are, and copies only
// what the kernel does not take, as Write does.
//
// A connecting stream holds what it is given (writes, StartReading,
// Shutdown) until the connect completes. If the connect fails, the connect
// callback is the only news: the queued bytes are dropped, no StreamHandler
// method is called, and Write / StartReading return the connect's error.
//
// TCP_NODELAY is on for every stream: this is a request/response transport,
// and the write coalescing above does Nagle's job without its delay.
#include <algorithm>
#include <cassert>
#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "uv_internal.h"

namespace moonpool::driver {
namespace internal {
namespace {

// One uv_write carries at most this much (uv_buf_t lengths are 32-bit).
constexpr size_t kMaxWriteChunk = size_t{1} << 30;
// Buffers one gathered write offers the kernel (writev); uv_try_write
// keeps up to this many on its stack.
constexpr unsigned kMaxGatheredPieces = 16;
// Write queue storage kept by an idle stream; above this it is freed.
constexpr size_t kRetainedWriteBytes = size_t{64} << 10;

void ReleaseIfLarge(std::string& buffer) {
  if (buffer.capacity() > kRetainedWriteBytes) std::string().swap(buffer);
}

void OnAlloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  auto* s = static_cast<StreamState*>(handle->data);
  buf->base = nullptr;
  buf->len = 0;
  if (s->closed || s->handler == nullptr) return;  // read_cb gets UV_ENOBUFS
  absl::Span<char> span = s->handler->ReadBuffer(s->loop->read_buffer_bytes());
  assert(!span.empty() && "StreamHandler::ReadBuffer returned an empty span");
  buf->base = span.data();
  buf->len = std::min<size_t>(span.size(), UINT_MAX);
}

void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* /*buf*/) {
  auto* s = static_cast<StreamState*>(stream->data);
  if (s->closed) return;
  if (nread > 0) {
    if (s->handler != nullptr) s->handler->OnRead(static_cast<size_t>(nread));
    return;
  }
  if (nread == 0) return;  // EAGAIN: nothing this time
  if (nread == UV_ENOBUFS) {
    // No handler or no buffer: stop, or libuv would spin on the readable fd.
    uv_read_stop(stream);
    s->reading = false;
    return;
  }
  uv_read_stop(stream);
  s->reading = false;
  s->want_reading = false;
  s->read_ended = true;
  absl::Status status =
      nread == UV_EOF
          ? absl::OkStatus()
          : UvStatus(static_cast<int>(nread),
                     absl::StrCat("read from ", s->peer.ToString()));
  if (s->handler != nullptr) s->handler->OnReadEnd(std::move(status));
}

}  // namespace

StreamState::StreamState(UvLoop::Impl* loop_in, Phase phase_in, Address peer_in)
    : loop(loop_in), peer(peer_in), phase(phase_in) {
  tcp.data = this;
  connect_req.data = this;
  write_req.data = this;
  shutdown_req.data = this;
}

void StreamState::SetHandler(StreamHandler* h) {
  handler = h;
  if (handler == nullptr) StopReading();
}

absl::Status StreamState::StartReading() {
  if (phase == Phase::kFailed) return broken;
  if (handler == nullptr) {
    return absl::FailedPreconditionError("StartReading before SetHandler");
  }
  want_reading = true;
  if (phase == Phase::kConnecting || read_ended || reading) {
    return absl::OkStatus();
  }
  return StartUvRead();
}

absl::Status StreamState::StartUvRead() {
  const int r = uv_read_start(stream(), OnAlloc, OnRead);
  if (r < 0) {
    want_reading = false;
    return UvStatus(r, absl::StrCat("read from ", peer.ToString()));
  }
  reading = true;
  return absl::OkStatus();
}

void StreamState::StopReading() {
  want_reading = false;
  if (!reading) return;
  uv_read_stop(stream());
  reading = false;
}

absl::StatusOr<size_t> StreamState::Write(absl::Span<const char> bytes) {
  if (shutdown_requested) {
    return absl::FailedPreconditionError("write after Shutdown");
  }
  if (!broken.ok()) return broken;
  if (bytes.empty()) return size_t{0};
  if (phase == Phase::kConnecting || write_in_flight) {
    pending.append(bytes.data(), bytes.size());
    return size_t{0};
  }
  // Nothing queued: the kernel may take it all, with no copy.
  uv_buf_t buf = uv_buf_init(
      const_cast<char*>(bytes.data()),
      static_cast<unsigned int>(std::min<size_t>(bytes.size(), UINT_MAX)));
  const int r = uv_try_write(stream(), &buf, 1);
  size_t taken = 0;
  if (r >= 0) {
    taken = static_cast<size_t>(r);
  } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
    broken = UvStatus(r, absl::StrCat("write to ", peer.ToString()));
    return broken;
  }
  if (taken == bytes.size()) return taken;
  in_flight.assign(bytes.data() + taken, bytes.size() - taken);
  in_flight_offset = 0;
  if (absl::Status st = StartWrite(); !st.ok()) {
    broken = st;
    in_flight.clear();
    return st;
  }
  return taken;
}

absl::StatusOr<size_t> StreamState::WriteGathered(
    absl::Span<const absl::Span<const char>> pieces) {
  if (shutdown_requested) {
    return absl::FailedPreconditionError("write after Shutdown");
  }
  if (!broken.ok()) return broken;
  size_t total = 0;
  for (absl::Span<const char> piece : pieces) total += piece.size();
  if (total == 0) return size_t{0};
  if (phase == Phase::kConnecting || write_in_flight) {
    for (absl::Span<const char> piece : pieces) {
      pending.append(piece.data(), piece.size());
    }
    return size_t{0};
  }
  // Nothing queued: one writev offers every piece where it is. Pieces past
  // the array, or past a uv_buf_t's 32-bit length, are not offered now:
  // they are copied with the rest the kernel does not take.
  uv_buf_t bufs[kMaxGatheredPieces];
  unsigned count = 0;
  for (absl::Span<const char> piece : pieces) {
    if (piece.empty()) continue;
    if (count == kMaxGatheredPieces) break;
    const size_t len = std::min<size_t>(piece.size(), UINT_MAX);
    bufs[count++] = uv_buf_init(const_cast<char*>(piece.data()),
                                static_cast<unsigned int>(len));
    if (len < piece.size()) break;
  }
  const int r = uv_try_write(stream(), bufs, count);
  size_t taken = 0;
  if (r >= 0) {
    taken = static_cast<size_t>(r);
  } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
    broken = UvStatus(r, absl::StrCat("write to ", peer.ToString()));
    return broken;
  }
  if (taken == total) return taken;
  // in_flight is empty with no write in flight (OnWriteDone swaps it out).
  in_flight.clear();
  in_flight.reserve(total - taken);
  size_t skip = taken;
  for (absl::Span<const char> piece : pieces) {
    if (skip >= piece.size()) {
      skip -= piece.size();
      continue;
    }
    in_flight.append(piece.data() + skip, piece.size() - skip);
    skip = 0;
  }
  in_flight_offset = 0;
  if (absl::Status st = StartWrite(); !st.ok()) {
    broken = st;
    in_flight.clear();
    return st;
  }
  return taken;
}

absl::Status StreamState::StartWrite() {
  write_chunk = std::min(in_flight.size() - in_flight_offset, kMaxWriteChunk);
  uv_buf_t buf = uv_buf_init(in_flight.data() + in_flight_offset,
                             static_cast<unsigned int>(write_chunk));
  const int r =
      uv_write(&write_req, stream(), &buf, 1, [](uv_write_t* req, int status) {
        static_cast<StreamState*>(req->data)->OnWriteDone(status);
      });
  if (r < 0) {
    write_chunk = 0;
    return UvStatus(r, absl::StrCat("write to ", peer.ToString()));
  }
  write_in_flight = true;
  return absl::OkStatus();
}

void StreamState::OnWriteDone(int status) {
  write_in_flight = false;
  if (closed) return;  // UV_ECANCELED from Close; the buffers go with us
  if (status < 0) {
    ReportWriteError(
        UvStatus(status, absl::StrCat("write to ", peer.ToString())));
    return;
  }
  const size_t n = write_chunk;
  write_chunk = 0;
  in_flight_offset += n;
  if (in_flight_offset == in_flight.size()) {
    // Keep both buffers' capacity: clear, then swap in what piled up.
    in_flight.clear();
    in_flight_offset = 0;
    in_flight.swap(pending);
    if (in_flight.empty()) {
      // All written: keep small buffers for the next burst, but give back
      // what a large one took, so an idle connection stays small.
      ReleaseIfLarge(in_flight);
      ReleaseIfLarge(pending);
    }
  }
  if (!in_flight.empty()) {
    if (absl::Status st = StartWrite(); !st.ok()) {
      ReportWriteError(std::move(st));
      return;
    }
  }
  MaybeShutdown();
  // Last: the handler may write more, close, or destroy the Stream.
  if (handler != nullptr) handler->OnWritten(n);
}

void StreamState::ReportWriteError(absl::Status status) {
  broken = std::move(status);
  in_flight.clear();
  in_flight_offset = 0;
  pending.clear();
  if (handler != nullptr) handler->OnWriteError(broken);
}

size_t StreamState::QueuedBytes() const {
  size_t n = pending.size();
  if (write_in_flight) {
    // The part of the current uv_write the kernel has not taken yet, and
    // the chunks after it.
    n += uv_stream_get_write_queue_size(
        reinterpret_cast<const uv_stream_t*>(&tcp));
    n += in_flight.size() - in_flight_offset - write_chunk;
  }
  return n;
}

void StreamState::Shutdown() {
  if (shutdown_requested) return;
  shutdown_requested = true;
  MaybeShutdown();
}

void StreamState::MaybeShutdown() {
  if (!shutdown_requested || shutdown_sent || phase != Phase::kConnected ||
      !broken.ok() || !pending.empty()) {
    return;
  }
  // libuv sends the FIN after the write in flight, but no later write may
  // be issued after uv_shutdown: wait for the last chunk to be in flight.
  if (write_in_flight && in_flight_offset + write_chunk < in_flight.size()) {
    return;
  }
  shutdown_sent = true;
  const int r =
      uv_shutdown(&shutdown_req, stream(), [](uv_shutdown_t* req, int status) {
        auto* s = static_cast<StreamState*>(req->data);
        if (s->closed || status == 0 || !s->broken.ok()) return;
        s->ReportWriteError(
            UvStatus(status, absl::StrCat("shutdown to ", s->peer.ToString())));
      });
  // Failing at once (the connection already reset, say): nothing may be
  // called back from here; Write reports it from now on.
  if (r < 0) {
    broken = UvStatus(r, absl::StrCat("shutdown to ", peer.ToString()));
  }
}

void StreamState::OnConnected(int status) {
  if (closed) return;  // UV_ECANCELED from Close
  ConnectCallback cb = std::move(on_connected);
  on_connected = nullptr;
  if (status < 0) {
    phase = Phase::kFailed;
    broken = UvStatus(status, absl::StrCat("connect to ", peer.ToString()));
    pending.clear();
    want_reading = false;
    if (cb) cb(broken);
    return;
  }
  phase = Phase::kConnected;
  absl::Status write_error;
  absl::Status read_error;
  if (!pending.empty()) {
    in_flight.swap(pending);
    in_flight_offset = 0;
    write_error = StartWrite();
  }
  if (want_reading) read_error = StartUvRead();
  if (write_error.ok()) MaybeShutdown();
  if (cb) cb(absl::OkStatus());
  // Failures of what the connect released are reported after the connect
  // itself, to a handler that is still there.
  if (!write_error.ok() && !closed) ReportWriteError(std::move(write_error));
  if (!read_error.ok() && !closed && !read_ended) {
    read_ended = true;
    if (handler != nullptr) handler->OnReadEnd(std::move(read_error));
  }
}

void StreamState::Close() {
  if (closed) return;
  closed = true;
  handler = nullptr;
  // Safe even when called from on_connected: OnConnected moved it out.
  on_connected = nullptr;
  pending.clear();
  reading = false;
  // in_flight stays: libuv owns it until the write completes (cancelled).
  CloseAndDelete<StreamState>(reinterpret_cast<uv_handle_t*>(&tcp));
}

namespace {

class UvStream final : public Stream {
 public:
  UvStream(StreamState* state, Address local)
      : loop_(state->loop), state_(state), local_(local), peer_(state->peer) {
    ++loop_->live_objects;
  }
  ~UvStream() override {
    Close();
    --loop_->live_objects;
  }

  void SetHandler(StreamHandler* handler) override {
    if (state_ != nullptr) state_->SetHandler(handler);
  }
  absl::Status StartReading() override {
    if (state_ == nullptr) {
      return absl::FailedPreconditionError("StartReading on a closed stream");
    }
    return state_->StartReading();
  }
  void StopReading() override {
    if (state_ != nullptr) state_->StopReading();
  }
  absl::StatusOr<size_t> Write(absl::Span<const char> bytes) override {
    if (state_ == nullptr) {
      return absl::FailedPreconditionError("write on a closed stream");
    }
    return state_->Write(bytes);
  }
  absl::StatusOr<size_t> WriteGathered(
      absl::Span<const absl::Span<const char>> pieces) override {
    if (state_ == nullptr) {
      return absl::FailedPreconditionError("write on a closed stream");
    }
    return state_->WriteGathered(pieces);
  }
  size_t queued_write_bytes() const override {
    return state_ != nullptr ? state_->QueuedBytes() : 0;
  }
  void Shutdown() override {
    if (state_ != nullptr) state_->Shutdown();
  }
  void Close() override {
    if (state_ == nullptr) return;
    state_->Close();
    state_ = nullptr;
  }
  const Address& local_address() const override { return local_; }
  const Address& peer_address() const override { return peer_; }

 private:
  UvLoop::Impl* const loop_;
  StreamState* state_;  // null once closed; it deletes itself
  const Address local_;
  const Address peer_;
};

}  // namespace

std::unique_ptr<Stream> MakeUvStream(StreamState* state, Address local) {
  return std::make_unique<UvStream>(state, local);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Stream>> UvLoop::Impl::Connect(
    const Address& address, ConnectCallback on_connected) {
  using internal::StreamState;
  auto* s = new StreamState(this, StreamState::Phase::kConnecting, address);
  if (int r = uv_tcp_init(&loop_, &s->tcp); r < 0) {
    delete s;  // not registered with the loop
    return internal::UvStatus(r, "tcp init");
  }
  uv_tcp_nodelay(&s->tcp, 1);  // applied when the socket is made
  sockaddr_storage storage;
  internal::ToSockaddr(address, &storage);
  const int r = uv_tcp_connect(
      &s->connect_req, &s->tcp, reinterpret_cast<const sockaddr*>(&storage),
      [](uv_connect_t* req, int status) {
        static_cast<StreamState*>(req->data)->OnConnected(status);
      });
  if (r < 0) {
    // Failed up front (unreachable network, say): no callback, ever.
    s->closed = true;
    internal::CloseAndDelete<StreamState>(
        reinterpret_cast<uv_handle_t*>(&s->tcp));
    return internal::UvStatus(r,
                              absl::StrCat("connect to ", address.ToString()));
  }
  s->on_connected = std::move(on_connected);
  // connect(2) has bound the socket already, so the local address is known.
  return internal::MakeUvStream(s, internal::LocalAddressOf(&s->tcp));
}

}  // namespace moonpool::driver
