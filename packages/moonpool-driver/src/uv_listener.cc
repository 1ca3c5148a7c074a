// UvLoop's listening sockets. The socket is made before the bind
// (uv_tcp_init_ex) so SO_REUSEPORT can be set on it first; libuv sets
// SO_REUSEADDR itself, so a restarted server does not wait out TIME_WAIT.
// Each accepted connection becomes a Stream (uv_stream.cc) handed to the
// accept callback; accept errors (out of descriptors, say) go to the same
// callback and the listener keeps listening.
#include <sys/socket.h>

#include <cassert>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "uv_internal.h"

namespace moonpool::driver {
namespace internal {
namespace {

void OnConnection(uv_stream_t* server, int status) {
  auto* ls = static_cast<ListenerState*>(server->data);
  if (ls->closed) return;
  const std::string where = absl::StrCat("accept on ", ls->address.ToString());
  if (status < 0) {
    ls->Deliver(UvStatus(status, where));
    return;
  }
  auto* s =
      new StreamState(ls->loop, StreamState::Phase::kConnected, Address());
  if (int r = uv_tcp_init(ls->loop->uv(), &s->tcp); r < 0) {
    delete s;  // not registered with the loop
    ls->Deliver(UvStatus(r, where));
    return;
  }
  if (int r = uv_accept(server, s->stream()); r < 0) {
    s->closed = true;
    CloseAndDelete<StreamState>(reinterpret_cast<uv_handle_t*>(&s->tcp));
    ls->Deliver(UvStatus(r, where));
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  s->peer = PeerAddressOf(&s->tcp);
  ls->Deliver(MakeUvStream(s, LocalAddressOf(&s->tcp)));
}

}  // namespace

ListenerState::ListenerState(UvLoop::Impl* loop_in, AcceptCallback on_accept_in)
    : loop(loop_in), on_accept(std::move(on_accept_in)) {
  tcp.data = this;
}

void ListenerState::Deliver(absl::StatusOr<std::unique_ptr<Stream>> stream) {
  if (!on_accept) return;
  accepting = true;
  on_accept(std::move(stream));
  accepting = false;
  // Closed from inside the callback: it can be destroyed now.
  if (closed) on_accept = nullptr;
}

void ListenerState::Close() {
  if (closed) return;
  closed = true;
  if (!accepting) on_accept = nullptr;
  CloseAndDelete<ListenerState>(reinterpret_cast<uv_handle_t*>(&tcp));
}

namespace {

class UvListener final : public Listener {
 public:
  UvListener(ListenerState* state)
      : loop_(state->loop), state_(state), address_(state->address) {
    ++loop_->live_objects;
  }
  ~UvListener() override {
    Close();
    --loop_->live_objects;
  }

  const Address& address() const override { return address_; }
  void Close() override {
    if (state_ == nullptr) return;
    state_->Close();
    state_ = nullptr;
  }

 private:
  UvLoop::Impl* const loop_;
  ListenerState* state_;  // null once closed; it deletes itself
  const Address address_;
};

}  // namespace
}  // namespace internal

absl::StatusOr<std::unique_ptr<Listener>> UvLoop::Impl::Listen(
    const Address& address, const ListenOptions& options,
    AcceptCallback on_accept) {
  using internal::ListenerState;
  const std::string where = absl::StrCat("listen on ", address.ToString());
  if (options.backlog <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": backlog must be positive"));
  }
  auto* ls = new ListenerState(this, std::move(on_accept));
  const int family =
      address.family() == Address::Family::kIpv4 ? AF_INET : AF_INET6;
  if (int r = uv_tcp_init_ex(&loop_, &ls->tcp, family); r < 0) {
    delete ls;  // not registered with the loop
    return internal::UvStatus(r, where);
  }
  auto fail = [&](int r) {
    ls->closed = true;
    ls->on_accept = nullptr;
    internal::CloseAndDelete<ListenerState>(
        reinterpret_cast<uv_handle_t*>(&ls->tcp));
    absl::Status status = internal::UvStatus(r, where);
    // A local address this host does not have is the caller's mistake,
    // not a condition to wait out.
    if (r == UV_EADDRNOTAVAIL) {
      status = absl::InvalidArgumentError(status.message());
    }
    return status;
  };
  if (options.reuse_port) {
    uv_os_fd_t fd;
    if (int r = uv_fileno(reinterpret_cast<uv_handle_t*>(&ls->tcp), &fd);
        r < 0) {
      return fail(r);
    }
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      return fail(uv_translate_sys_error(errno));
    }
  }
  sockaddr_storage storage;
  internal::ToSockaddr(address, &storage);
  if (int r =
          uv_tcp_bind(&ls->tcp, reinterpret_cast<const sockaddr*>(&storage), 0);
      r < 0) {
    return fail(r);
  }
  // libuv reports some bind errors (EADDRINUSE) only here.
  if (int r = uv_listen(reinterpret_cast<uv_stream_t*>(&ls->tcp),
                        options.backlog, internal::OnConnection);
      r < 0) {
    return fail(r);
  }
  ls->address = internal::LocalAddressOf(&ls->tcp);
  return std::unique_ptr<Listener>(std::make_unique<internal::UvListener>(ls));
}

}  // namespace moonpool::driver
