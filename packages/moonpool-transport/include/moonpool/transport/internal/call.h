// internal::Call is the one await of a request's outcome, shared by
// ClientTransport::Request (to a server) and ServerTransport::Request (to a
// client on one of its connections): the payload encoded up front, sent
// when the task starts, and the reply decoded through Codec<Reply>.
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

// `send(payload, done)` hands the request to a Peer or a connection and
// returns its up-front failure; `done` then gets the outcome exactly once.
template <typename Reply, typename Send>
driver::Task<absl::StatusOr<Reply>> Call(driver::Loop& loop,
                                         absl::StatusOr<std::string> payload,
                                         Send send) {
  if (!payload.ok()) co_return payload.status();
  std::pair<driver::Promise<Reply>, driver::Future<Reply>> channel =
      driver::MakePromise<Reply>(loop);
  // The callback holds one pointer (the promise): AnyInvocable keeps it
  // inline, so a request allocates nothing beyond its payload.
  absl::Status sent =
      send(std::move(*payload),
           driver::ReplyCallback(
               [promise = std::move(channel.first)](
                   absl::StatusOr<absl::string_view> reply) mutable {
                 if (!reply.ok()) {
                   promise.Set(reply.status());
                 } else {
                   promise.Set(Codec<Reply>::Decode(*reply));
                 }
               }));
  if (!sent.ok()) co_return sent;
  co_return co_await std::move(channel.second);
}

}  // namespace internal
}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_INTERNAL_CALL_H_
