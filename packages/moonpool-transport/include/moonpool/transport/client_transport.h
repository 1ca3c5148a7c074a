// ClientTransport sends typed requests to any number of servers over one
// Loop: one driver::Peer per server (made on first use, kept until Close),
// each with its own connection, reconnection and queue. A server is a
// driver::HostPort: an Address converts to one, and a host name
// (HostPort::Parse("db1.example:4500")) is resolved through the Loop on
// every connect attempt, every address it gives tried in order (peer.h).
// A name and the literal it resolves to are two servers, two Peers. Requests
// are self-driving coroutines: nothing to tick or poll.
//
//   ClientTransport client(loop);
//   absl::StatusOr<std::string> reply =
//       co_await client.Request<std::string>(addr, std::string("hello"),
//                                            RequestOptions::Timeout(
//                                                absl::Seconds(1)));
//
// Outcomes (DESIGN.md section 6), exactly one per request: the decoded reply;
// the handler's Status (code and message) for an error reply; DeadlineExceeded
// when the deadline passes; Unavailable when it was never written and the
// server stayed unreachable; Aborted ("maybe delivered") when the connection
// died after writing it (idempotent requests are sent again instead;
// exactly-once ones, RequestOptions::exactly_once, are sent again with the
// same id to the same server process, which answers from its record);
// Cancelled when the transport closes; InvalidArgument when the reply does not
// decode as Reply. Failing up front: FailedPrecondition after Close,
// ResourceExhausted when the peer's queue is full, and whatever Codec::Encode
// returns.
//
// Laziness: Request encodes `req` at once (so it may be a temporary), and
// sends it when the returned Task starts (is awaited, spawned or selected).
// Destroying the Task before that sends nothing; destroying it after, and
// before its outcome (losing a Select, WithCancellation, a TaskScope
// cleared), cancels the request (driver::Peer::Cancel): one still queued is
// never sent; one already written is forgotten, and on a version 2
// connection the server is told (`cancel`, DESIGN.md section 5), so it can
// drop it or signal its handler. On a version 1 connection the server may
// still process it, and its reply is dropped.
//
// Reply streams: CallStream(to, stream_method, request, options) sends at
// once and returns a ReplyStream to read the items from (reply_stream.h);
// destroying it before its end cancels the call.
//
// Ownership and lifetime: the transport owns its Peers; it borrows the Loop,
// and must be destroyed before it. Tasks returned by Request borrow the
// transport: destroy (or finish) them before it. Loop's thread only.
#ifndef MOONPOOL_TRANSPORT_CLIENT_TRANSPORT_H_
#define MOONPOOL_TRANSPORT_CLIENT_TRANSPORT_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/buffer_pool.h"
#include "moonpool/driver/client_request_ids.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/task.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/transport/client_options.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/incoming_message.h"
#include "moonpool/transport/internal/call.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/reply_stream.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/stream_method.h"

namespace moonpool::transport {

// What ClientTransport::Serve runs for each message a server sends: the
// reply bytes, or the error to answer with.
using ClientRequestHandler =
    absl::AnyInvocable<driver::Task<absl::StatusOr<std::string>>(
        IncomingMessage)>;

class ClientTransport {
 public:
  explicit ClientTransport(driver::Loop& loop, ClientOptions options = {});
  ClientTransport(const ClientTransport&) = delete;
  ClientTransport& operator=(const ClientTransport&) = delete;
  // Closes (Cancelled to everything pending) and destroys the Peers.
  ~ClientTransport();

  // Sends `req` to `address` and yields the decoded reply or why there is
  // none (see the class comment).
  template <Decodable Reply, Payload Req>
  driver::Task<absl::StatusOr<Reply>> Request(const driver::HostPort& address,
                                              const Req& req,
                                              RequestOptions options = {}) {
    return internal::CancellableCall<Reply>(
        loop_, EncodeToString(req, buffers_.Take()),
        Sender{this, address, options});
  }

  // The same with payload bytes the caller gives away: the string is sent
  // as it is, not copied (a large payload's copy is a real share of its
  // round trip), and its storage is the transport's afterwards.
  template <Decodable Reply>
  driver::Task<absl::StatusOr<Reply>> Request(const driver::HostPort& address,
                                              std::string&& req,
                                              RequestOptions options = {}) {
    return internal::CancellableCall<Reply>(
        loop_, absl::StatusOr<std::string>(std::move(req)),
        Sender{this, address, options});
  }

  // Calls `method` at `to` (DESIGN.md section 5, "Named endpoints"): sends
  // `request` to the method's token and yields its reply, typed by the
  // method (Method::ReplyIn: a CapnpReader<T>, std::string or Bytes), so
  // awaiting it as any other type does not compile. Outcomes as Request's,
  // plus Unimplemented when the server does not serve the method. It is
  // sent again after a connection died when the method or `options` says
  // idempotent; `options.endpoint` is ignored. Fails with InvalidArgument,
  // sending nothing, when the method's name is not a valid method name or
  // its token is 0.
  template <MethodMessage Req, MethodMessage Rep>
  driver::Task<absl::StatusOr<typename Method<Req, Rep>::ReplyIn>> Call(
      const driver::HostPort& to, const Method<Req, Rep>& method,
      const typename Method<Req, Rep>::RequestOut& request,
      RequestOptions options = {}) {
    using ReplyIn = typename Method<Req, Rep>::ReplyIn;
    options.endpoint = method.token();
    options.idempotent = options.idempotent || method.options().idempotent;
    options.exactly_once =
        options.exactly_once || method.options().exactly_once;
    absl::StatusOr<std::string> payload =
        method.status().ok() ? EncodeToString(request, buffers_.Take())
                             : absl::StatusOr<std::string>(method.status());
    return internal::CancellableCall<ReplyIn>(loop_, std::move(payload),
                                              Sender{this, to, options});
  }

  // Calls `method`, a reply stream, at `to` (DESIGN.md section 5, "Reply
  // streams"): sends `request` at once, with `options.window_bytes` of
  // credit, and returns the stream to read the items and the end from
  // (reply_stream.h has the outcomes and the flow control). Unlike Call it
  // is not lazy: the request is on its way when this returns. Fails up
  // front, sending nothing: InvalidArgument for a bad method or a window of
  // 0, FailedPrecondition after Close, ResourceExhausted when the peer's
  // queue is full, DeadlineExceeded for a deadline already past, Unavailable
  // for a fail-fast call while the server is unreachable, and whatever the
  // codec says. `options.endpoint` is ignored; idempotent as for Call (it
  // matters only before the first item).
  template <MethodMessage Req, MethodMessage Item>
  [[nodiscard]] absl::StatusOr<ReplyStream<Item>> CallStream(
      const driver::HostPort& to, const StreamMethod<Req, Item>& method,
      const typename StreamMethod<Req, Item>::RequestOut& request,
      StreamOptions options = {}) {
    if (!method.status().ok()) return method.status();
    if (options.exactly_once || method.options().exactly_once) {
      return absl::InvalidArgumentError(absl::StrCat(
          method.name(),
          ": a reply stream cannot be exactly-once (the server records one "
          "outcome, not a stream of items)"));
    }
    absl::StatusOr<std::string> payload = EncodeToString(request);
    if (!payload.ok()) return payload.status();
    options.endpoint = method.token();
    options.idempotent = options.idempotent || method.options().idempotent;
    absl::StatusOr<std::unique_ptr<internal::StreamState>> state =
        StartStream(to, std::move(*payload), options);
    if (!state.ok()) return state.status();
    return ReplyStream<Item>(std::move(*state));
  }

  // Sends a one-way message (no reply) to `address`'s `endpoint`, queued
  // behind the requests to it. At most once: lost if the connection dies
  // before it is written. FailedPrecondition after Close, ResourceExhausted
  // when the peer's queue is full.
  template <Payload T>
  [[nodiscard]] absl::Status Send(const driver::HostPort& address,
                                  const T& message,
                                  Endpoint endpoint = kDefaultEndpoint) {
    std::string payload;
    if (absl::Status s = EncodePayload(message, payload); !s.ok()) return s;
    return SendEncoded(address, std::move(payload), endpoint);
  }
  // The same with the payload bytes as they are.
  [[nodiscard]] absl::Status SendEncoded(const driver::HostPort& address,
                                         std::string payload,
                                         Endpoint endpoint = kDefaultEndpoint);

  // Serves the requests (and one-way messages) that servers send this
  // client on the connections it opened to them, as FoundationDB's peers
  // serve each other: `handler` runs as a task per message, on the loop's
  // thread, and its result is the reply (a Status: the error reply; ignored
  // for a one-way message). Without a handler they are answered
  // Unimplemented. The answer goes back on the connection the request came
  // on; if that connection is gone by then, the answer is dropped (the
  // server got its outcome already). Handlers still running when the
  // transport closes are destroyed at their suspension point.
  void Serve(ClientRequestHandler handler);

  // Fails everything pending with Cancelled, closes every connection (with a
  // Goodbye where open) and makes every later call fail with
  // FailedPrecondition. Idempotent.
  void Close();
  bool closed() const { return closed_; }

  // The Peer for `address`, or nullptr if none was made yet. For stats and
  // diagnostics; do not Close it behind the transport's back.
  const driver::Peer* peer(const driver::HostPort& address) const;
  size_t peer_count() const { return peers_.size(); }

 private:
  // A request sent to a Peer, to cancel when its task goes first. The
  // Peer outlives the task: the transport keeps its Peers until destroyed,
  // and tasks must go before it.
  struct SentRequest {
    driver::Peer* peer;
    driver::PeerRequestId id;
    void Cancel() const { peer->Cancel(id); }
  };
  // How internal::CancellableCall hands a request to the Peer for `address`.
  struct Sender {
    ClientTransport* transport;
    driver::HostPort address;
    RequestOptions options;
    [[nodiscard]] absl::StatusOr<SentRequest> operator()(
        std::string payload, driver::ReplyCallback done) const {
      absl::StatusOr<driver::Peer*> peer = transport->PeerFor(address);
      if (!peer.ok()) return peer.status();
      absl::StatusOr<driver::PeerRequestId> id =
          (*peer)->Request(std::move(payload),
                           transport->ToPeerOptions(options), std::move(done));
      if (!id.ok()) return id.status();
      return SentRequest{*peer, *id};
    }
  };

  [[nodiscard]] absl::StatusOr<driver::Peer*> PeerFor(
      const driver::HostPort& address);
  // CallStream's untyped part: the stream's state, its request sent.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<internal::StreamState>>
  StartStream(const driver::HostPort& to, std::string payload,
              const StreamOptions& options);
  driver::PeerRequestOptions ToPeerOptions(const RequestOptions& o) const;

  driver::Loop& loop_;
  ClientOptions options_;
  bool closed_ = false;
  // One incarnation's ids, shared by every Peer (client_request_ids.h).
  driver::ClientRequestIds ids_;
  // Request payload strings, encoded into here and given back by the
  // Peers when a request ends (buffer_pool.h).
  driver::BufferPool buffers_;
  absl::flat_hash_map<driver::HostPort, std::unique_ptr<driver::Peer>> peers_;
  // Serve: the handler, the adapters the Peers call, and the handler tasks.
  class Server;
  std::unique_ptr<Server> server_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_CLIENT_TRANSPORT_H_
