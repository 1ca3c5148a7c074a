// RequestContext is what a method handler (ServerTransport::Handle) knows
// about the call it serves, besides the request itself: until when the
// client waits, whether it has given up, and who it is.
//
//   server.Handle(kGet,
//       [&](RequestContext& ctx, CapnpReader<kv::GetRequest> r)
//           -> Task<absl::StatusOr<CapnpMessage<kv::GetReply>>> {
//     // store.Read returns Task<absl::StatusOr<Row>>.
//     absl::StatusOr<Row> row = co_await driver::WithCancellation(
//         ctx.cancellation(), store.Read(r.get().getKey()));
//     if (!row.ok()) co_return row.status();   // Cancelled when it fired
//     co_return MakeReply(*row);
//   });
//
// The cancellation token fires when the client sends `cancel` for this call
// (protocol version 2: its caller gave up or destroyed its wait), when the
// request's deadline passes, when the connection it came on closes (nobody
// could receive the answer), when the server closes, and, last, when the call
// has been answered (so work the handler left running with the token does
// not outlive the call's interest in it). Firing asks; it destroys nothing:
// the handler decides what to stop, and whatever it returns is still sent
// (the client drops an answer it no longer waits for).
//
// What it is not: a way to answer (the handler's return value is the
// answer), or a copyable value. Ownership: the server owns it for the call's
// lifetime, from just before the handler starts until the handler's task
// ends; the handler borrows it. Do not keep a pointer to it past the
// handler's end (copy the values you need; a copy of the token stays valid).
// Loop's thread only.
#ifndef MOONPOOL_TRANSPORT_REQUEST_CONTEXT_H_
#define MOONPOOL_TRANSPORT_REQUEST_CONTEXT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/cancellation.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer_identity.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/transport/incoming_message.h"

namespace moonpool::transport {

class ServerTransport;
namespace internal {
class ServerCall;
}  // namespace internal

class RequestContext {
 public:
  RequestContext(const RequestContext&) = delete;
  RequestContext& operator=(const RequestContext&) = delete;
  ~RequestContext() = default;

  // The request's deadline on the server's clock (the client's budget when
  // it was received); InfiniteFuture() for a one-way message or a request
  // that carried none.
  absl::Time deadline() const { return message_.deadline; }

  // Fires on the client's cancel (version 2), at the deadline, when the
  // connection or the server closes, and once the call is answered (see the
  // file comment). Its status() names which. Made on first use: a handler
  // that never asks costs no allocation for it.
  const driver::CancellationToken& cancellation() const;
  // Whether the token has fired (or would have, had it been made).
  bool cancelled() const { return cancelled_; }

  const driver::Address& peer_address() const { return message_.peer_address; }
  // The client's verified TLS certificate (subject, SANs); nullptr on a
  // plaintext connection, or when the client presented no certificate (a
  // server that does not require one). The pointer stays valid for the
  // whole call, even after its connection closes.
  const driver::PeerIdentity* peer_identity() const {
    return peer_identity_.get();
  }
  // The incarnation of the client's transport, from its Hello: with
  // correlation_id() it names this request uniquely, even across the
  // client's reconnects. 0 only while unknown (it never is once a request
  // has arrived).
  uint64_t peer_incarnation() const { return peer_incarnation_; }
  // The connection it came on (as IncomingMessage::connection_id).
  uint64_t connection_id() const { return message_.connection_id; }
  // The client's id of this request; CorrelationId() for a one-way message.
  CorrelationId correlation_id() const {
    return message_.envelope.correlation_id;
  }
  // "Service/Method", as registered.
  absl::string_view method_name() const { return method_name_; }
  // A one-way message: there is no client waiting, and the handler's
  // answer is dropped.
  bool one_way() const { return !message_.is_request(); }
  // The client asked for exactly-once (DESIGN.md section 5): the handler's
  // outcome is recorded and sent again to a resend, and this call goes on
  // when its connection closes (it is not cancelled for that).
  bool exactly_once() const { return message_.envelope.exactly_once; }

 private:
  friend class ServerTransport;
  friend class internal::ServerCall;

  explicit RequestContext(driver::Loop& loop) : loop_(&loop) {}

  // Fires the token (or marks it fired, if no one has asked for it yet).
  // `reason` must be a string literal: it is kept as a view until used.
  void Cancel(absl::string_view reason);

  driver::Loop* loop_;
  internal::ServerCall* call_ = nullptr;  // the server's record of the call
  IncomingMessage message_;               // owns the request's payload
  absl::string_view method_name_;
  uint64_t peer_incarnation_ = 0;
  std::shared_ptr<const driver::PeerIdentity> peer_identity_;
  bool cancelled_ = false;
  absl::string_view cancel_reason_;
  mutable std::optional<driver::CancellationSource> source_;
  mutable driver::CancellationToken token_;
};

inline const driver::CancellationToken& RequestContext::cancellation() const {
  if (!source_.has_value()) {
    source_.emplace(*loop_);
    token_ = source_->token();
    if (cancelled_) source_->Cancel(cancel_reason_);
  }
  return token_;
}

inline void RequestContext::Cancel(absl::string_view reason) {
  if (cancelled_) return;
  cancelled_ = true;
  cancel_reason_ = reason;
  if (source_.has_value()) source_->Cancel(reason);
}

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_REQUEST_CONTEXT_H_
