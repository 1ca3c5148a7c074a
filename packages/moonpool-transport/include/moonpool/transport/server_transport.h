// ServerTransport listens on one address, accepts many connections, runs the
// protocol (server role) on each, and hands every request and one-way
// message, from whichever connection, to the application through one queue:
//
//   auto server = ServerTransport::Bind(loop, Address::Loopback(0), {});
//   while (std::optional<IncomingMessage> msg = co_await
//   (*server)->NextMessage()) {
//     (void)(*server)->Reply(*msg, Answer(msg->envelope.payload));
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
// Named methods (protocol version 2's endpoints, served on version 1
// connections too): Handle(method, handler) runs `handler` for each request
// whose envelope names the method's token, as a task the server owns, with
// its own concurrency limit and counters (method_stats). Token 0 (the
// default endpoint) still goes to NextMessage; a request for a token nothing
// serves is answered Unimplemented at once, and a one-way message for one is
// counted and dropped (it takes no answer). HandleStream(method, handler)
// serves a StreamMethod the same way: the handler writes any number of
// items through a StreamWriter, which waits for the client's credit (flow
// control, version 2), and its returned Status ends the stream.
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
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/buffer_pool.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/timer.h"
#include "moonpool/driver/tls_stream.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/incoming_message.h"
#include "moonpool/transport/internal/call.h"
#include "moonpool/transport/internal/message_queue.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/method_handler.h"
#include "moonpool/transport/method_stats.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_stats.h"
#include "moonpool/transport/stream_method.h"
#include "moonpool/transport/stream_writer.h"

namespace moonpool::transport {

class ServerTransport final : private internal::StreamSink {
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
  // As Reply and ReplyError, and the message's storage comes back to the
  // transport for a later message (`request` is left without its
  // payload): pass `std::move(*msg)` so that a steady flow of requests
  // allocates no payload copies. `reply` may view the request's own bytes
  // (an echo): it is encoded before they go.
  template <Payload T>
  [[nodiscard]] absl::Status Reply(IncomingMessage&& request, const T& reply) {
    absl::Status s = Reply(std::as_const(request), reply);
    GiveBack(request);
    return s;
  }
  [[nodiscard]] absl::Status ReplyError(IncomingMessage&& request,
                                        const absl::Status& status) {
    absl::Status s = ReplyError(std::as_const(request), status);
    GiveBack(request);
    return s;
  }

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

  // Serves `method`: each request (or one-way message) whose envelope names
  // method.token() runs `handler` as a task the server owns, started on a
  // later loop turn, never inside the read that brought it. The handler's
  // result is the answer: the reply encoded through Codec, or its Status
  // as an error reply (an answer that finds the output full waits for room
  // as ReplyWhenWritable does). A request whose payload does not decode as
  // the method's request type is answered InvalidArgument without running
  // the handler. At most options.max_concurrent handlers of the method run
  // at once; up to options.max_queued more calls wait (FIFO; one whose
  // deadline passed while it waited is dropped, as NextMessage drops it);
  // past that a request is answered ResourceExhausted at once. A one-way
  // message runs the handler the same way and its answer is dropped. Calls
  // count as in flight for ServerOptions' bounds until answered.
  // May be called before or after requests arrive; never undone.
  //   InvalidArgument: a bad method name (CheckMethodName), a token of 0,
  //     max_concurrent 0, or an empty handler;
  //   AlreadyExists: the token is served already (the same method, or a
  //     name with the same hash);
  //   FailedPrecondition: the transport is closed.
  template <MethodMessage Req, MethodMessage Rep>
  [[nodiscard]] absl::Status Handle(const Method<Req, Rep>& method,
                                    MethodHandler<Req, Rep> handler,
                                    HandlerOptions options = {}) {
    if (!method.status().ok()) return method.status();
    if (!handler) {
      return absl::InvalidArgumentError("Handle needs a handler");
    }
    return Register(method.name(), method.token(), options,
                    [this, handler = std::move(handler)](
                        RequestContext& ctx) mutable -> driver::Task<void> {
                      return RunMethod<Method<Req, Rep>>(handler, ctx);
                    });
  }

  // Serves `method`, a reply stream (DESIGN.md section 5): `handler` runs
  // for each call as Handle's handlers do (context, decoded request, the
  // same limits and counters), writes the items with the StreamWriter it is
  // given (which waits while the client's credit is used up: flow control),
  // and returns the stream's end: OK, or the Status the client receives
  // after the items. The context's cancellation fires as for Handle (the
  // client's cancel, the deadline, which bounds the whole stream, the
  // connection or the server closing), and a Write then yields Cancelled.
  // A call of the method that does not accept a stream (a version 1 client,
  // or a unary call of this name) is answered FailedPrecondition without
  // running the handler; a one-way message to it is dropped (counted as
  // rejected). A handler waiting for credit does not count against the
  // per-connection and server-wide in-flight bounds that pause reading (the
  // client's credit frames must still be read); the method's own
  // HandlerOptions bound how many run. Errors as Handle's.
  template <MethodMessage Req, MethodMessage Item>
  [[nodiscard]] absl::Status HandleStream(
      const StreamMethod<Req, Item>& method,
      // Not deduced from: the method fixes the types; any callable converts.
      std::type_identity_t<StreamHandler<Req, Item>> handler,
      HandlerOptions options = {}) {
    if (!method.status().ok()) return method.status();
    if (!handler) {
      return absl::InvalidArgumentError("HandleStream needs a handler");
    }
    return Register(
        method.name(), method.token(), options,
        [this, handler = std::move(handler)](
            RequestContext& ctx) mutable -> driver::Task<void> {
          return RunStreamMethod<StreamMethod<Req, Item>, Item>(handler, ctx);
        },
        /*streaming=*/true);
  }

  // The counters of the method served at `token`, or nullopt if none is.
  std::optional<MethodStats> method_stats(Endpoint token) const;
  template <MethodMessage Req, MethodMessage Rep>
  std::optional<MethodStats> method_stats(
      const Method<Req, Rep>& method) const {
    return method_stats(method.token());
  }
  template <MethodMessage Req, MethodMessage Item>
  std::optional<MethodStats> method_stats(
      const StreamMethod<Req, Item>& method) const {
    return method_stats(method.token());
  }
  // Every served method's counters, in the order they were registered.
  std::vector<MethodStats> all_method_stats() const;

  // Guards every method of `service` (the part of a method's name before
  // its '/': "kv.KeyValue"), registered before or after: `authorize` runs
  // before each call, after ServerOptions::authorize and before the
  // method's own HandlerOptions::authorize; a non-OK Status is the call's
  // answer and its handler does not run. A second call for the same service
  // replaces the first; an empty `authorize` removes it. InvalidArgument
  // for an empty service name or one with a '/'.
  [[nodiscard]] absl::Status Authorize(absl::string_view service,
                                       Authorizer authorize);

  // Sends a request to the client on connection `connection_id` (as
  // IncomingMessage::connection_id names it) and yields its decoded reply,
  // or why there is none: the client's error Status (Unimplemented when it
  // serves nothing), DeadlineExceeded, Aborted ("maybe delivered") or
  // Unavailable when the connection ends first (nothing is sent again: a
  // server cannot reconnect to a client), Cancelled when the server closes.
  // Fails up front with NotFound when there is no such open connection.
  // Destroying the task before its outcome cancels the request (a `cancel`
  // to the client on a version 2 connection), as ClientTransport's does.
  template <Decodable Reply, Payload Req>
  driver::Task<absl::StatusOr<Reply>> Request(uint64_t connection_id,
                                              const Req& req,
                                              RequestOptions options = {}) {
    return internal::CancellableCall<Reply>(
        loop_, EncodeToString(req),
        [this, connection_id, options](
            std::string payload,
            driver::ReplyCallback done) -> absl::StatusOr<SentRequest> {
          absl::StatusOr<CorrelationId> id = SendRequestOn(
              connection_id, std::move(payload), options, std::move(done));
          if (!id.ok()) return id.status();
          return SentRequest{this, connection_id, *id};
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
  // Method handlers: a drain lets the running ones finish and starts the
  // queued ones (all were accepted); whatever still runs when it ends, or
  // at once without `drain`, is destroyed at its suspension point and its
  // call goes unanswered (its client sees the connection close).
  // REQUIRES: not awaited inside a method handler (it would destroy the
  // handler's own task); spawn it elsewhere.
  driver::Task<void> Close(bool drain);

  bool closed() const { return state_ == State::kClosed; }
  ServerStats stats() const;

 private:
  class Connection;
  friend class Connection;
  // The methods' registry, their calls, and the deadline timer
  // (server_services.cc).
  class Services;
  friend class Services;
  // Runs one call of a method: erased by Handle, it decodes, runs the
  // handler and hands the outcome to Finish.
  using CallRunner = absl::AnyInvocable<driver::Task<void>(RequestContext&)>;
  enum class State { kOpen, kDraining, kClosed };

  ServerTransport(driver::Loop& loop, ServerOptions options);
  // An owning copy of a received envelope, its payload in a pooled string.
  Envelope CopyEnvelope(const EnvelopeView& view);
  void GiveBack(IncomingMessage& message) {
    buffers_.Give(std::move(message.envelope.payload));
  }

  void OnAccept(absl::StatusOr<std::unique_ptr<driver::Stream>> stream);
  void AddConnection(std::unique_ptr<driver::Stream> stream);
  // Wraps an accepted stream in TLS (ServerOptions::tls); it becomes a
  // connection once its handshake succeeds.
  void StartTls(std::unique_ptr<driver::Stream> stream);
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
  // ReplyWhenWritable's loop; `error` OK for a reply (or, with
  // `stream_end`, a reply stream's OK end).
  driver::Task<absl::Status> AnswerWhenWritable(IncomingMessage request,
                                                std::string payload,
                                                absl::Status error,
                                                bool stream_end = false);
  // Ends the reply stream answering `request`, OK (as Reply, otherwise).
  [[nodiscard]] absl::Status EndStream(const IncomingMessage& request);
  [[nodiscard]] absl::StatusOr<CorrelationId> SendRequestOn(
      uint64_t connection_id, std::string payload,
      const RequestOptions& options, driver::ReplyCallback done);
  // A request Request sent, to cancel when its task goes first. The
  // connection is looked up again then: it may be gone (nothing to do).
  struct SentRequest {
    ServerTransport* server;
    uint64_t connection_id;
    CorrelationId id;
    void Cancel() const { server->CancelRequestOn(connection_id, id); }
  };
  void CancelRequestOn(uint64_t connection_id, CorrelationId id);
  void CloseNow();
  // ---- Exactly-once (server_exactly_once.cc) ----
  // A request from `c` carried answeredBelow, and maybe exactly-once: the
  // settled records go; true when it is to be served (a new request, or
  // not exactly-once), false when it was a duplicate (it waits for the
  // running original, or was answered from the record) or was answered
  // Aborted ("outcome forgotten") or ResourceExhausted.
  bool AdmitRequest(Connection& c, IncomingMessage& message,
                    CorrelationId answered_below);
  // An exactly-once request is being answered: its outcome is recorded
  // and the duplicates that waited for it are answered too. The first
  // outcome of a request is the one kept.
  void RecordOutcome(const IncomingMessage& request, absl::StatusCode code,
                     absl::string_view bytes);
  // An exactly-once request is dropped before any handler ran (cancelled
  // while queued, expired in a queue): its record goes, so that a resend
  // runs it.
  void AbandonRecord(const IncomingMessage& request);
  // Answers a duplicate from the record, waiting for output room when
  // full; never records anything.
  void AnswerFromRecord(IncomingMessage request, absl::StatusCode code,
                        absl::string_view bytes);
  void ArmOutcomeTimer();
  // REQUIRES: a valid method (Method::status() OK).
  [[nodiscard]] absl::Status Register(absl::string_view name, Endpoint token,
                                      HandlerOptions options, CallRunner runner,
                                      bool streaming = false);
  // StreamSink: a stream handler's Write (server_services.cc).
  driver::Task<absl::Status> WriteItem(RequestContext& ctx,
                                       absl::string_view payload,
                                       absl::Status encoded) override;
  // The client granted credit back to stream `id` of connection `c`.
  void OnCredit(Connection& c, CorrelationId id);
  // A request or one-way message for a non-zero token, from `c`.
  void Dispatch(Connection& c, IncomingMessage message);
  // The client gave up on request `id` of connection `c` (a cancel frame).
  void OnCancel(Connection& c, CorrelationId id);
  // The call's answer: `outcome` is an error, or OK with the reply encoded
  // in the call's reply buffer. Ends the call.
  void Finish(RequestContext& ctx, absl::Status outcome);
  // The request's payload, and the buffer a reply is encoded into.
  static absl::string_view PayloadOf(const RequestContext& ctx) {
    return ctx.message_.envelope.payload;
  }
  static std::string& ReplyBufferOf(RequestContext& ctx);

  // The call's request decoded, or nullopt after answering InvalidArgument
  // (the handler is not run).
  template <typename RequestIn>
  std::optional<RequestIn> DecodeRequest(RequestContext& ctx) {
    absl::StatusOr<RequestIn> request =
        Codec<RequestIn>::Decode(PayloadOf(ctx));
    if (!request.ok()) {
      Finish(ctx, absl::InvalidArgumentError(absl::StrCat(
                      "the request to ", ctx.method_name(),
                      " does not decode: ", request.status().message())));
      return std::nullopt;
    }
    return std::move(*request);
  }

  template <typename M, typename H>
  driver::Task<void> RunMethod(H& handler, RequestContext& ctx) {
    std::optional<typename M::RequestIn> request =
        DecodeRequest<typename M::RequestIn>(ctx);
    if (!request.has_value()) co_return;
    absl::StatusOr<typename M::ReplyOut> reply =
        co_await handler(ctx, std::move(*request));
    if (!reply.ok()) {
      Finish(ctx, reply.status());
      co_return;
    }
    if (ctx.one_way()) {
      Finish(ctx, absl::OkStatus());
      co_return;
    }
    Finish(ctx, EncodePayload(*reply, ReplyBufferOf(ctx)));
  }

  template <typename M, MethodMessage Item, typename H>
  driver::Task<void> RunStreamMethod(H& handler, RequestContext& ctx) {
    std::optional<typename M::RequestIn> request =
        DecodeRequest<typename M::RequestIn>(ctx);
    if (!request.has_value()) co_return;
    StreamWriter<Item> writer(*this, ctx);
    absl::Status end = co_await handler(ctx, std::move(*request), writer);
    Finish(ctx, std::move(end));
  }

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
  // TLS streams whose handshake failed, destroyed from reap_timer_ too.
  std::vector<std::unique_ptr<driver::TlsStream>> graveyard_streams_;
  // Accepted TLS connections whose handshake has not finished.
  absl::flat_hash_map<uint64_t, std::unique_ptr<driver::TlsStream>>
      handshaking_;
  uint64_t next_handshake_id_ = 1;
  std::unique_ptr<driver::Timer> reap_timer_;
  // Connections stopped by a bound (ids; entries of dead ones are skipped).
  std::vector<uint64_t> paused_;

  // The default queue. A request its client cancelled while it waited is
  // marked here (and abandoned at once), then skipped.
  struct Queued {
    IncomingMessage message;
    bool cancelled = false;
  };
  internal::MessageQueue<Queued> queue_;
  size_t cancelled_in_queue_ = 0;  // marked entries still in queue_
  size_t queued_bytes_ = 0;
  size_t in_flight_ = 0;  // requests received, not answered, live conns only
  // Tasks waiting in NextMessage, and in Close for a drain to end.
  std::vector<driver::Promise<void>> message_waiters_;
  std::vector<driver::Promise<void>> close_waiters_;
  std::string scratch_;  // typed replies are encoded here (reused)
  // Received payloads are copied into strings from here; a message given
  // back (Reply(IncomingMessage&&), a finished method call) returns its.
  driver::BufferPool buffers_;
  // The outcomes of exactly-once requests, across connections, and the
  // timer of their lifetimes.
  protocol::OutcomeTable outcomes_;
  std::unique_ptr<driver::Timer> outcome_timer_;
  absl::Time outcome_timer_at_ = absl::InfiniteFuture();

  ServerStats stats_;  // counters; gauges and closed connections' sums added
  std::unique_ptr<Services> services_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SERVER_TRANSPORT_H_
