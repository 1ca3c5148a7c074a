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
template <Payload T>
[[nodiscard]] absl::StatusOr<std::string> EncodeToString(const T& value) {
  std::string out;
  if (absl::Status s = EncodePayload(value, out); !s.ok()) return s;
  return out;
}

namespace internal {

// The callback that fulfils `promise` with the decoded reply. It holds one
// pointer (the promise): AnyInvocable keeps it inline, so a request
// allocates nothing beyond its payload.
template <typename Reply>
driver::ReplyCallback Fulfil(driver::Promise<Reply> promise) {
  return driver::ReplyCallback(
      [promise = std::move(promise)](
          absl::StatusOr<absl::string_view> reply) mutable {
        if (!reply.ok()) {
          promise.Set(reply.status());
        } else {
          promise.Set(Codec<Reply>::Decode(*reply));
        }
      });
}

// Cancels a sent request when the task that awaits it is destroyed first.
template <typename Handle>
class CancelOnDestroy {
 public:
  explicit CancelOnDestroy(Handle handle) : handle_(std::move(handle)) {}
  CancelOnDestroy(const CancelOnDestroy&) = delete;
  CancelOnDestroy& operator=(const CancelOnDestroy&) = delete;
  ~CancelOnDestroy() {
    if (armed_) handle_.Cancel();
  }
  void Disarm() { armed_ = false; }

 private:
  Handle handle_;
  bool armed_ = true;
};

// `send(payload, done)` hands the request to a Peer or a connection and
// returns its up-front failure, or a handle; `done` then gets the outcome
// exactly once, unless `handle.Cancel()` gives the request up. Cancel is
// called when the task is destroyed after sending and before resuming with
// the outcome; it must then destroy `done` uncalled, or do nothing if the
// outcome was delivered already (the task may be destroyed between the
// outcome and its resumption).
template <typename Reply, typename Send>
driver::Task<absl::StatusOr<Reply>> CancellableCall(
    driver::Loop& loop, absl::StatusOr<std::string> payload, Send send) {
  if (!payload.ok()) co_return payload.status();
  std::pair<driver::Promise<Reply>, driver::Future<Reply>> channel =
      driver::MakePromise<Reply>(loop);
  auto handle =
      send(std::move(*payload), Fulfil<Reply>(std::move(channel.first)));
  if (!handle.ok()) co_return handle.status();
  CancelOnDestroy<typename decltype(handle)::value_type> cancel(
      std::move(*handle));
  absl::StatusOr<Reply> outcome = co_await std::move(channel.second);
  cancel.Disarm();
  co_return outcome;
}

}  // namespace internal
}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_INTERNAL_CALL_H_
