// ServerTransport listens on one address, accepts many connections, runs the
// protocol (server role) on each, and hands every request and one-way
// message, from whichever connection, to the application through one queue:
//
//   auto server = ServerTransport::Bind(loop, Address::Loopback(0), {});
//   while (std::optional<IncomingMessage> msg = co_await
//   (*server)->NextMessage()) {
//     (void)(*server)->Reply(*msg, Handle(msg->envelope.payload));
//   }
//
// Replies go back on the connection the request came on. The queue is
// bounded (ServerOptions): past a bound the server stops reading the
// connections concerned (backpressure) instead of queueing more. A request
// whose deadline passed while it waited is dropped when NextMessage reaches
// it: its sender has already given up. Close(/*drain=*/true) is the graceful
// end: it stops accepting, says Goodbye on every connection (the clients send
// their later requests elsewhere, or again after reconnecting) and waits,
// up to ServerOptions::drain_timeout, until everything accepted is answered.
//
// The protocol is symmetric: a server may also send a request to a client on
// the connection that client opened (Request(connection_id, ...)), and the
// client serves it (ClientTransport::Serve). Each connection is a
// driver::ConnectionDriver, the same one a client's Peer uses.
//
// What it is not: a reconnecting client (a request to a client whose
// connection is gone fails, it is not sent elsewhere), or thread-safe (one
// ServerTransport per loop; run one per thread on the same port with
// ListenOptions::reuse_port).
//
// Ownership and lifetime: made by Bind, owned by the caller through
// std::unique_ptr; it owns its listener and connections, and borrows the
// Loop, which must outlive it. Tasks returned by NextMessage and Close borrow
// it: finish or destroy them before destroying it. Destroying it closes
// everything at once (no Goodbye).
#ifndef MOONPOOL_TRANSPORT_SERVER_TRANSPORT_H_
#define MOONPOOL_TRANSPORT_SERVER_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/timer.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/incoming_message.h"
#include "moonpool/transport/internal/call.h"
#include "moonpool/transport/internal/message_queue.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_stats.h"

namespace moonpool::transport {

class ServerTransport {
 public:
  // Binds and listens on `address` (port 0: any free port; address() tells
  // which). InvalidArgument for a bad address or options, the OS error
  // otherwise (AlreadyExists when the port is taken).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ServerTransport>> Bind(
      driver::Loop& loop, const driver::Address& address,
      ServerOptions options = {});

  ServerTransport(const ServerTransport&) = delete;
  ServerTransport& operator=(const ServerTransport&) = delete;
  ~ServerTransport();

  // The bound address, with the real port.
  const driver::Address& address() const { return address_; }

  // The next message from any connection, oldest first; std::nullopt once
  // the transport is closed (after Close, or while no connection is left
  // during a drain). Several tasks may wait at once (a pool of handlers);
  // each message goes to exactly one.
  driver::Task<std::optional<IncomingMessage>> NextMessage();

  // Answers `request` on the connection it came on.
  //   InvalidArgument: it is a one-way message;
  //   NotFound: its connection is gone (closed or reset before the answer:
  //     its client got Aborted, or sent it again elsewhere), or it was
  //     already answered;
  //   FailedPrecondition: the transport is closed;
  //   ResourceExhausted: the connection's output is full (the client does
  //     not read); the request still awaits an answer.
  [[nodiscard]] absl::Status Reply(const IncomingMessage& request,
                                   absl::string_view payload);
  // The same through Codec<T> (or as bytes, for string-like values).
  template <Payload T>
  [[nodiscard]] absl::Status Reply(const IncomingMessage& request,
                                   const T& reply) {
    if constexpr (std::convertible_to<const T&, absl::string_view>) {
      return Reply(request, absl::string_view(reply));
    } else {
      if (absl::Status s = EncodePayload(reply, scratch_); !s.ok()) {
        return s;
      }
      return Reply(request, absl::string_view(scratch_));
    }
  }
  // Answers `request` with an error: its client receives `status` (code and
  // message). Errors as Reply's; InvalidArgument for an OK `status`.
  [[nodiscard]] absl::Status ReplyError(const IncomingMessage& request,
                                        const absl::Status& status);

  // As Reply and ReplyError, but a full output (its client reads slower
  // than the handlers answer) is waited out instead of returned: the answer
  // is sent once the connection's output has drained to half its bound.
  // The wait ends with DeadlineExceeded, and the request is forgotten
  // unanswered, when the request's deadline passes first (its client has
  // given up); with NotFound when the connection goes. An answer larger
  // than the output bound fails at once with ResourceExhausted. Takes
  // copies, so neither argument needs to outlive the call; spawn it (a
  // TaskScope) so that one slow client does not hold up a handler.
  driver::Task<absl::Status> ReplyWhenWritable(IncomingMessage request,
                                               std::string payload);
  driver::Task<absl::Status> ReplyErrorWhenWritable(IncomingMessage request,
                                                    absl::Status status);

  // Sends a request to the client on connection `connection_id` (as
  // IncomingMessage::connection_id names it) and yields its decoded reply,
  // or why there is none: the client's error Status (Unimplemented when it
  // serves nothing), DeadlineExceeded, Aborted ("maybe delivered") or
  // Unavailable when the connection ends first (nothing is sent again: a
  // server cannot reconnect to a client), Cancelled when the server closes.
  // Fails up front with NotFound when there is no such open connection.
  template <Decodable Reply, Payload Req>
  driver::Task<absl::StatusOr<Reply>> Request(uint64_t connection_id,
                                              const Req& req,
                                              RequestOptions options = {}) {
    return internal::Call<Reply>(
        loop_, EncodeToString(req),
        [this, connection_id, options](std::string payload,
                                       driver::ReplyCallback done) {
          return SendRequestOn(connection_id, std::move(payload), options,
                               std::move(done));
        });
  }

  // Stops accepting and ends the transport. With `drain`: sends Goodbye on
  // every connection (requests above the last one received are refused, and
  // their clients may send them again elsewhere), keeps serving until every
  // request received is answered and every connection has closed, or
  // ServerOptions::drain_timeout passes; then closes what is left. Without:
  // closes everything at once. Either way NextMessage yields std::nullopt
  // afterwards, and messages still queued are dropped. A second call while a
  // drain runs waits for it (or, without `drain`, cuts it short).
  driver::Task<void> Close(bool drain);

  bool closed() const { return state_ == State::kClosed; }
  ServerStats stats() const;

 private:
  class Connection;
  friend class Connection;
  enum class State { kOpen, kDraining, kClosed };

  ServerTransport(driver::Loop& loop, ServerOptions options);

  void OnAccept(absl::StatusOr<std::unique_ptr<driver::Stream>> stream);
  void Enqueue(IncomingMessage message);
  // Pops the next message to hand out, dropping expired and orphaned
  // requests on the way.
  std::optional<IncomingMessage> TakeMessage();
  // Whether `c` may read another frame under the bounds.
  bool CanRead(const Connection& c) const;
  // Resumes paused connections that are now under the bounds.
  void ResumePaused();
  // Moves a dead connection out of the table (destroyed on a later turn).
  void Remove(Connection& c);
  // Adds a connection's counters to the totals as it goes.
  void AddClosed(Connection& c);
  // ReplyWhenWritable's loop; `error` OK for a reply.
  driver::Task<absl::Status> AnswerWhenWritable(IncomingMessage request,
                                                std::string payload,
                                                absl::Status error);
  [[nodiscard]] absl::Status SendRequestOn(uint64_t connection_id,
                                           std::string payload,
                                           const RequestOptions& options,
                                           driver::ReplyCallback done);
  void CloseNow();
  Connection* Find(uint64_t connection_id) const;
  [[nodiscard]] absl::StatusOr<Connection*> ConnectionFor(
      const IncomingMessage& request);
  static void WakeAll(std::vector<driver::Promise<void>>& waiters);

  driver::Loop& loop_;
  ServerOptions options_;
  driver::Address address_;
  State state_ = State::kOpen;
  std::unique_ptr<driver::Listener> listener_;
  uint64_t next_connection_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> connections_;
  // Dead connections, destroyed from reap_timer_ (never inside their own
  // callbacks).
  std::vector<std::unique_ptr<Connection>> graveyard_;
  std::unique_ptr<driver::Timer> reap_timer_;
  // Connections stopped by a bound (ids; entries of dead ones are skipped).
  std::vector<uint64_t> paused_;

  internal::MessageQueue<IncomingMessage> queue_;
  size_t queued_bytes_ = 0;
  size_t in_flight_ = 0;  // requests received, not answered, live conns only
  // Tasks waiting in NextMessage, and in Close for a drain to end.
  std::vector<driver::Promise<void>> message_waiters_;
  std::vector<driver::Promise<void>> close_waiters_;
  std::string scratch_;  // typed replies are encoded here (reused)

  ServerStats stats_;  // counters; gauges and closed connections' sums added
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SERVER_TRANSPORT_H_
