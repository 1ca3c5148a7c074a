// internal::CancellableCall is the one await of a request's outcome, shared
// by ClientTransport::Request and Call (to a server) and
// ServerTransport::Request (to a client on one of its connections): the
// payload encoded up front, sent when the task starts, and the reply decoded
// through Codec<Reply>. Destroying the task after it sent and before its
// outcome cancels the request (ClientTransport: Peer::Cancel; the server: its
// connection's CancelRequest), which sends `cancel` on a version 2
// connection.
//
// Not API: the transports' Request templates are.
#ifndef MOONPOOL_TRANSPORT_INTERNAL_CALL_H_
#define MOONPOOL_TRANSPORT_INTERNAL_CALL_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/codec.h"

namespace moonpool::transport {

// `value` encoded through its Codec (or as its bytes), or why it cannot be.
// `out` is where to write (a pooled string, say: its capacity is reused).
template <Payload T>
[[nodiscard]] absl::StatusOr<std::string> EncodeToString(
    const T& value, std::string out = std::string()) {
  if (absl::Status s = EncodePayload(value, out); !s.ok()) return s;
  return out;
}

namespace internal {

// The callback that fulfils `promise` with the decoded reply and sets
// `*delivered`. It holds two pointers (the promise's state and the flag):
// AnyInvocable keeps that inline, so a request allocates nothing beyond its
// payload. `delivered` lives in the awaiting coroutine's frame; the frame
// outlives the callback or cancels it (CancelOnDestroy), which destroys it
// uncalled.
template <typename Reply>
driver::ReplyCallback Fulfil(driver::Promise<Reply> promise, bool* delivered) {
  return driver::ReplyCallback(
      [promise = std::move(promise),
       delivered](absl::StatusOr<absl::string_view> reply) mutable {
        *delivered = true;
        if (!reply.ok()) {
          promise.Set(reply.status());
        } else {
          promise.Set(Codec<Reply>::Decode(*reply));
        }
      });
}

// Cancels a sent request when the task that awaits it is destroyed before
// its outcome was delivered. Once it was (the reply, or any failure,
// Cancelled from a closing transport included), the sender is not touched
// again: so a task destroyed after its transport closed and went does not
// reach into it.
template <typename Handle>
class CancelOnDestroy {
 public:
  CancelOnDestroy(Handle handle, const bool& delivered)
      : handle_(std::move(handle)), delivered_(delivered) {}
  CancelOnDestroy(const CancelOnDestroy&) = delete;
  CancelOnDestroy& operator=(const CancelOnDestroy&) = delete;
  ~CancelOnDestroy() {
    if (!delivered_) handle_.Cancel();
  }

 private:
  Handle handle_;
  const bool& delivered_;
};

// `send(payload, done)` hands the request to a Peer or a connection and
// returns its up-front failure, or a handle; `done` then gets the outcome
// exactly once, unless `handle.Cancel()` gives the request up. Cancel is
// called when the task is destroyed after sending and before `done` was
// called; it must then destroy `done` uncalled.
template <typename Reply, typename Send>
driver::Task<absl::StatusOr<Reply>> CancellableCall(
    driver::Loop& loop, absl::StatusOr<std::string> payload, Send send) {
  if (!payload.ok()) co_return payload.status();
  std::pair<driver::Promise<Reply>, driver::Future<Reply>> channel =
      driver::MakePromise<Reply>(loop);
  bool delivered = false;
  auto handle = send(std::move(*payload),
                     Fulfil<Reply>(std::move(channel.first), &delivered));
  if (!handle.ok()) co_return handle.status();
  const CancelOnDestroy<typename decltype(handle)::value_type> cancel(
      std::move(*handle), delivered);
  co_return co_await std::move(channel.second);
}

}  // namespace internal
}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_INTERNAL_CALL_H_
