// UvLoop::Resolve: uv_getaddrinfo on libuv's thread pool.
//
// Ownership. The user's UvResolution and libuv's request share one
// ResolveState; whichever lets go last deletes it. libuv always calls the
// request's callback once (UV_EAI_CANCELED when uv_cancel got it before a
// thread did). So:
//   - handle destroyed first: the state is marked abandoned, its callback
//     dropped, uv_cancel tried (it fails for a lookup already running on a
//     thread: that thread is inside getaddrinfo and cannot be stopped); the
//     libuv callback later finds it abandoned, frees the answer and the
//     state, and calls nothing;
//   - libuv's callback first: it marks the state finished, then runs the
//     user's callback (which may destroy the handle: it then deletes the
//     state, which is why nothing touches the state after that call); a
//     handle destroyed later deletes it.
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "moonpool/driver/address.h"
#include "uv_internal.h"

namespace moonpool::driver {
namespace {

struct ResolveState {
  uv_getaddrinfo_t req;
  std::string host;
  uint16_t port = 0;
  ResolveCallback done;
  bool abandoned = false;  // the handle is gone
  bool finished = false;   // libuv's callback ran
};

absl::Status GaiStatus(int status, absl::string_view host) {
  const std::string message =
      absl::StrCat("resolving ", host, ": ", uv_strerror(status), " (",
                   uv_err_name(status), ")");
  switch (status) {
    case UV_EAI_NONAME:
    case UV_EAI_NODATA:
    case UV_EAI_ADDRFAMILY:
      return absl::NotFoundError(message);
    case UV_EAI_MEMORY:
    case UV_ENOMEM:
      return absl::ResourceExhaustedError(message);
    default:
      // EAI_AGAIN (no answer from the name server), EAI_FAIL and the rest:
      // asking again later may work.
      return absl::UnavailableError(message);
  }
}

absl::StatusOr<std::vector<Address>> Addresses(const ResolveState& state,
                                               const addrinfo* list) {
  std::vector<Address> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    sockaddr_storage storage{};
    std::memcpy(&storage, ai->ai_addr,
                std::min<size_t>(ai->ai_addrlen, sizeof(storage)));
    const Address a = internal::FromSockaddr(storage).WithPort(state.port);
    bool seen = false;
    for (const Address& b : out) seen |= a == b;
    if (!seen) out.push_back(a);
  }
  if (out.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "resolving ", state.host, ": no IPv4 or IPv6 address for it"));
  }
  return out;
}

void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* state = static_cast<ResolveState*>(req->data);
  if (state->abandoned) {
    if (res != nullptr) uv_freeaddrinfo(res);
    delete state;
    return;
  }
  absl::StatusOr<std::vector<Address>> result =
      status == 0 ? Addresses(*state, res) : GaiStatus(status, state->host);
  if (res != nullptr) uv_freeaddrinfo(res);
  state->finished = true;
  ResolveCallback done = std::move(state->done);
  // May destroy the handle, and with it the state: nothing after this.
  if (done) done(std::move(result));
}

class UvResolution final : public Resolution {
 public:
  UvResolution(UvLoop::Impl* loop, ResolveState* state)
      : loop_(loop), state_(state) {
    ++loop_->live_objects;
  }
  ~UvResolution() override {
    --loop_->live_objects;
    if (state_->finished) {
      delete state_;
      return;
    }
    state_->abandoned = true;
    state_->done = nullptr;
    // Fails (EBUSY) when a thread is already inside getaddrinfo; either way
    // OnResolved runs once more, finds it abandoned and frees it.
    (void)uv_cancel(reinterpret_cast<uv_req_t*>(&state_->req));
  }

 private:
  UvLoop::Impl* const loop_;
  ResolveState* const state_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Resolution>> UvLoop::Impl::Resolve(
    absl::string_view host, uint16_t port, ResolveCallback done) {
  if (host.empty()) {
    return absl::InvalidArgumentError("resolving: empty host name");
  }
  auto state = std::make_unique<ResolveState>();
  state->host = std::string(host);
  state->port = port;
  state->done = std::move(done);
  state->req.data = state.get();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const bool v6 = host.find(':') != absl::string_view::npos;
  const bool literal = Address::Parse(v6 ? absl::StrCat("[", host, "]:0")
                                         : absl::StrCat(host, ":0"))
                           .ok() &&
                       host != "localhost";
  // A literal never consults a name server; AI_ADDRCONFIG would also hide
  // ::1 from a host without IPv6 routes, which a literal asked for.
  hints.ai_flags = literal ? AI_NUMERICHOST : AI_ADDRCONFIG;
  if (int r = uv_getaddrinfo(uv(), &state->req, &OnResolved,
                             state->host.c_str(), nullptr, &hints);
      r != 0) {
    // Not started: the state is freed here and nothing calls back.
    return internal::UvStatus(r, absl::StrCat("resolving ", host));
  }
  return std::unique_ptr<Resolution>(
      std::make_unique<UvResolution>(this, state.release()));
}

}  // namespace moonpool::driver
