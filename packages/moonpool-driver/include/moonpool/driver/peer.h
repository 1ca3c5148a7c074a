// Peer drives one protocol Connection toward one server over a Loop:
// resolve its name, connect, handshake, a read pump into the protocol, a write
// pump out of it, the protocol's timer armed on the loop, reconnection with
// exponential backoff and jitter, and the request queue kept across a stall and
// across a reconnect. It is moonpool's FlowTransport "Peer": the client side of
// one link.
//
// What it guarantees (DESIGN.md section 6), for every Request accepted:
// `done` runs exactly once, on the loop's thread, never inside Request, with
//   - the reply's payload, or the handler's error Status;
//   - DeadlineExceeded when its deadline passes (once written, or queued
//     while connected but unable to write);
//   - Unavailable when it was never written and the peer stayed unreachable
//     until its deadline;
//   - Aborted ("maybe delivered") when it was written on a connection that
//     then died, unless it is idempotent: then it is sent again on the next
//     connection. A request the peer said it did not process (Goodbye) or
//     whose bytes never left is always sent again;
//   - for an exactly-once request (PeerRequestOptions::exactly_once,
//     protocol version 2, DESIGN.md section 5) maybe delivered: it is sent
//     again with the same correlation id on the next connection whose
//     server Hello shows the incarnation it was written to, and the server
//     answers it from its record (the handler runs at most once); Aborted
//     ("maybe delivered") only when that server restarted (another
//     incarnation) or speaks version 1, or when the server says it forgot
//     the record ("outcome forgotten, maybe delivered");
//   - FailedPrecondition when the peer speaks another protocol version;
//   - Unavailable at once, for a request that does not wait for ready
//     (PeerRequestOptions::wait_for_ready = false), when a connect attempt
//     fails while it waits for a connection;
//   - Cancelled when the Peer is closed or destroyed.
// or never, when its sender gives it up with Cancel: then `done` is
// destroyed without being called (whoever waited for it is gone).
// A stall (no bytes move) is not a close: requests wait in bounded queues
// until their deadline or until the keepalive declares the peer gone.
//
// The connection itself is a ConnectionDriver (connection_driver.h), as each
// of a server's connections is; the protocol is symmetric, so the server may
// send requests on it too: they go to the PeerRequestHandler set with
// SetRequestHandler (answered Unimplemented while there is none).
//
// The server is a HostPort (host_port.h): an IP literal is connected to as
// it is; a name is resolved through Loop::Resolve on every connect attempt
// (so a name that moves is followed on the next reconnect), the lookup
// bounded by the connect timeout and by the earliest queued request's
// deadline, and then every address it gave is tried in order until one
// connects (each try is a connect attempt of its own, with its own connect
// timeout). A failed or timed-out lookup is a failed attempt: backoff as
// for a refused connect, last_error() "resolving db1: ...".
//
// What it is not: a listener (ServerTransport accepts), or thread-safe.
// Lifetime: owned by its creator; must be destroyed before its Loop.
// Destroying it closes it (Cancelled to everything pending).
#ifndef MOONPOOL_DRIVER_PEER_H_
#define MOONPOOL_DRIVER_PEER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/buffer_pool.h"
#include "moonpool/driver/client_request_ids.h"
#include "moonpool/driver/connection_driver.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::driver {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(50);
  double multiplier = 2.0;
  absl::Duration max = absl::Seconds(5);
  // Each delay is scaled by a factor drawn uniformly in [1 - jitter,
  // 1 + jitter] from the loop's seeded random source.
  double jitter = 0.2;
  // A connection that lived this long resets the delay to `initial`.
  absl::Duration reset_after = absl::Seconds(5);
};

struct PeerOptions {
  // Settings of each connection (keepalive, bounds, peer name,
  // incarnation). The role is always client; `ids` is the Peer's own.
  protocol::ConnectionOptions connection;
  BackoffOptions backoff;
  // A connect that has not completed by then counts as failed.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Requests (and one-way messages) waiting for a connection, and their
  // payload bytes. Past either, Request returns ResourceExhausted.
  size_t max_queued_requests = 4096;
  size_t max_queued_bytes = size_t{64} << 20;
  // Largest slice of output handed to the stream at once, and only when
  // it has nothing queued (driver/output_handoff.h): the stream copies what
  // the kernel does not take, so this bounds that copy; the rest waits in
  // the protocol's bounded output.
  size_t stream_high_water_bytes = size_t{1} << 20;
  // Requests the server sends this Peer being served at once; past it the
  // next is answered ResourceExhausted at once (never by stopping to read:
  // that would hold up the replies to this Peer's own requests).
  size_t max_requests_served = 1024;
  // The ids of this client incarnation, shared by its Peers (a
  // ClientTransport's); borrowed, must outlive the Peer. nullptr: the Peer
  // keeps its own.
  ClientRequestIds* ids = nullptr;
  // Where a request's payload string goes once its outcome is delivered
  // (or it is cancelled), for the next request's encoding
  // (buffer_pool.h); borrowed, must outlive the Peer. nullptr: freed.
  BufferPool* buffers = nullptr;
  // Set: every connection is TLS (tls_context.h), made with this client
  // context, and a connection counts as connected once its TLS handshake
  // has succeeded. A handshake that fails is a failed connect (the Status
  // says why: Unauthenticated for a certificate that fails verification).
  // The expected server name is the context's, else the host of the
  // Peer's address. Requests wait for the server's Hello before they are
  // first written on a connection (one round trip per connection): in TLS
  // 1.3 a server refuses a client certificate (or its absence) only after
  // the client's handshake has ended, and a request written before that
  // would end "maybe delivered" instead of failing with the reason.
  std::shared_ptr<const TlsContext> tls = nullptr;
};

struct PeerRequestOptions {
  // On the loop's clock. InfiniteFuture(): now + the connection's
  // default_request_timeout.
  absl::Time deadline = absl::InfiniteFuture();
  bool idempotent = false;
  Endpoint endpoint = kDefaultEndpoint;
  // false: fail fast (Unavailable) while the peer is unreachable instead of
  // waiting for its deadline; see Peer::Request.
  bool wait_for_ready = true;
  // RequestStream only: the stream's credit in bytes (its window). Must be
  // positive there; ignored by Request.
  uint64_t stream_credit = 0;
  // Ask the server to keep the outcome, and send it again with the same id
  // after a connection loss (see the class comment). It waits for the
  // server's Hello before it is first written. Request only: RequestStream
  // refuses it.
  bool exactly_once = false;
};

// Names one request accepted by Peer::Request, for Peer::Cancel. A Peer
// never names two requests alike (the id is not its correlation id, which
// changes when a request is sent again on a new connection).
class PeerRequestId {
 public:
  constexpr PeerRequestId() = default;
  constexpr explicit PeerRequestId(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  friend constexpr bool operator==(PeerRequestId, PeerRequestId) = default;

 private:
  uint64_t value_ = 0;
};

// The outcome of one request: the reply payload (valid only during the
// call) or why there is none.
using ReplyCallback =
    absl::AnyInvocable<void(absl::StatusOr<absl::string_view>)>;

// One item of a reply stream (Peer::RequestStream), valid only during the
// call.
using StreamItemCallback = absl::AnyInvocable<void(absl::string_view)>;

// Requests and one-way messages that the server side sends on a Peer's
// connection. Calls come from the Peer's pump on the loop's thread; views
// are valid only during the call.
class PeerRequestHandler {
 public:
  // Answer with Peer::Reply or Peer::ReplyError, now or later, naming
  // `connection`: an answer reaches only the connection the request came
  // on. `deadline` is the sender's budget on this side's clock.
  virtual void OnPeerRequest(uint64_t connection, const EnvelopeView& request,
                             absl::Time deadline) = 0;
  virtual void OnPeerOneWay(const EnvelopeView& message) = 0;

 protected:
  ~PeerRequestHandler() = default;
};

struct PeerStats {
  uint64_t resolutions = 0;       // name lookups started (none for a literal)
  uint64_t resolve_failures = 0;  // lookups failed or timed out
  uint64_t connect_attempts = 0;  // TCP connects, one per address tried
  // TLS handshakes that failed after a TCP connect (PeerOptions::tls).
  uint64_t tls_handshake_failures = 0;
  uint64_t connections = 0;  // established (TCP connected)
  uint64_t handshakes = 0;
  uint64_t requests = 0;  // accepted by Request
  uint64_t retries = 0;   // sent again after a connection ended
  uint64_t replies = 0;   // outcomes that were replies or error replies
  uint64_t failures = 0;  // outcomes that were not
  // Given up by their sender (Cancel) before an outcome: while still queued
  // (never sent), or in flight (the protocol sends `cancel` on version 2).
  uint64_t cancelled_queued = 0;
  uint64_t cancelled_in_flight = 0;
  uint64_t keepalive_timeouts = 0;
  uint64_t protocol_errors = 0;  // connections closed for the peer's fault
  uint64_t requests_served = 0;  // the server's requests answered here
  uint64_t stream_items = 0;     // reply stream items delivered (on_item)
  // Exactly-once requests sent again with the same id after a connection
  // loss, and those failed Aborted instead (the server restarted or speaks
  // version 1).
  uint64_t resent_exactly_once = 0;
  uint64_t exactly_once_aborted = 0;
};

enum class PeerState { kConnecting, kConnected, kBackingOff, kClosed };

class Peer final : private ConnectionHandler {
 public:
  // Starts connecting (or resolving) at once. An Address converts to a
  // HostPort, so Peer(loop, address) is the literal case.
  Peer(Loop& loop, HostPort target, PeerOptions options = {});
  ~Peer();

  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Sends a request; see the class comment for the outcomes `done` gets.
  // Returns its id, for Cancel. Fails up front, without calling `done`:
  // FailedPrecondition when closed, ResourceExhausted when the queue is
  // full, DeadlineExceeded when the deadline has passed, and Unavailable
  // (with the last error) for a request that does not wait for ready while
  // the peer is unreachable: the last connect attempt failed (the TCP
  // connect, or the connection ended before its handshake) and none has
  // succeeded since. A first connect still in progress, or a reconnect
  // after a handshaken connection ended, is waited for (gRPC's fail-fast
  // rule); such a request fails Unavailable as soon as that attempt fails.
  [[nodiscard]] absl::StatusOr<PeerRequestId> Request(
      std::string payload, const PeerRequestOptions& options,
      ReplyCallback done);
  // The sender gives up on request `id`: no outcome follows, and its `done`
  // is destroyed here without being called. A request still queued is
  // removed and never sent; one in flight is forgotten, and on a version 2
  // connection the protocol sends `cancel` for it (on version 1, nothing:
  // the server answers, and the reply is dropped as unknown). Does nothing
  // when the request has had its outcome (or is not this Peer's), so it is
  // safe to call whenever the waiter goes away. Never calls back.
  void Cancel(PeerRequestId id);
  // Sends a request that accepts a reply stream (protocol version 2, DESIGN.md
  // section 5) with `options.stream_credit` bytes of credit: `on_item` gets
  // each item in order (a plain reply's payload, and a streamEnd's when not
  // empty, are items too), then `done` gets the end: OK (with an empty
  // view) or the Status that ended it; both on the loop's thread, never
  // inside this call. Grant consumed bytes back with GrantCredit. Outcomes
  // and up-front failures as Request's, but once an item has arrived the
  // stream is never sent again: a connection lost after that ends it
  // (Aborted). Before its first item it is sent again as a request is
  // (idempotent, or not delivered). Cancel gives it up like a request
  // (`cancel` on version 2); neither callback is called afterwards.
  // InvalidArgument when stream_credit is 0.
  [[nodiscard]] absl::StatusOr<PeerRequestId> RequestStream(
      std::string payload, const PeerRequestOptions& options,
      StreamItemCallback on_item, ReplyCallback done);
  // The application consumed `bytes` of the items of stream `id`: credit
  // for the server, on the connection the stream is on. Does nothing when
  // the stream has ended or is waiting to be sent again (its credit starts
  // afresh there).
  void GrantCredit(PeerRequestId id, uint64_t bytes);
  // Sends a message that expects no answer, queued like a request. It is
  // sent at most once: lost if the connection dies before it is written.
  [[nodiscard]] absl::Status SendOneWay(Endpoint endpoint, std::string payload);

  // Serves the requests the server sends on this Peer's connections;
  // nullptr (the default) answers them Unimplemented. Borrowed: it must
  // outlive the Peer or be replaced.
  void SetRequestHandler(PeerRequestHandler* handler) { serve_ = handler; }
  // Answers request `id` that arrived on `connection` (OnPeerRequest).
  // NotFound when that connection is gone (the server got Aborted or
  // Unavailable), or the request was already answered; ResourceExhausted
  // when the output is full.
  [[nodiscard]] absl::Status Reply(uint64_t connection, CorrelationId id,
                                   absl::string_view payload);
  [[nodiscard]] absl::Status ReplyError(uint64_t connection, CorrelationId id,
                                        const absl::Status& status);

  // Fails everything pending with Cancelled, closes the connection (with a
  // Goodbye if it is open) and stops reconnecting. Idempotent.
  void Close();

  PeerState state() const { return state_; }
  // The server as given.
  const HostPort& target() const { return address_; }
  // The address connected to, or being tried, or tried last: the literal
  // from the start for a literal target, Address() for a name before its
  // first lookup answered.
  const Address& address() const { return current_; }
  const PeerStats& stats() const { return stats_; }
  // The last reason a connection attempt or connection ended.
  const absl::Status& last_error() const { return last_error_; }
  // Requests accepted and without an outcome yet.
  size_t pending_requests() const {
    return queue_.size() + in_flight_.size() + resend_.size();
  }
  // The server's Hello incarnation on the current connection; 0 before its
  // handshake.
  uint64_t server_incarnation() const { return server_incarnation_; }

 private:
  struct Pending {
    std::string payload;
    PeerRequestOptions options;
    ReplyCallback done;          // empty for one-way messages
    bool written = false;        // was written on some connection
    uint64_t id = 0;             // the PeerRequestId's value; 0 for one-way
    StreamItemCallback on_item;  // reply streams only
    bool item_received = false;  // a stream item arrived: never resent
    // Exactly-once, written on a version 2 connection: the id it was
    // written with (kept for resends) and the server incarnation that keeps
    // its record.
    CorrelationId correlation = CorrelationId();
    uint64_t server_incarnation = 0;
  };

  // ConnectionHandler.
  void OnEvent(protocol::Event& event) override;
  void OnPumped() override;
  void OnClosed(const absl::Status& status) override;

  void StartConnect();
  // Tries candidates_[next_candidate_], the next address of the last lookup.
  void ConnectNext();
  void OnResolved(absl::StatusOr<std::vector<Address>> addresses);
  // A connect to `current_` failed: the next address, or a backoff.
  void ConnectFailed(const absl::Status& why);
  void OnConnected(absl::Status status);
  // The connection is up (and, with TLS, handshaken): start its driver.
  void StartConnection();
  void ScheduleReconnect(const absl::Status& why);
  void OnReply(protocol::ReplyReceived& reply);
  void OnStreamItem(const protocol::StreamItemReceived& item);
  // Request and RequestStream: checks, then queues or sends `p`.
  [[nodiscard]] absl::StatusOr<PeerRequestId> Enqueue(Pending p);
  void OnFailed(protocol::RequestFailed& failed);
  void OnRequest(const protocol::RequestReceived& request);
  void SubmitQueued();
  // Sends the exactly-once requests that wait to be sent again (resend_),
  // in id order, or fails those whose server changed. False while they
  // must wait (no handshaken connection, or no room): nothing else may go
  // before them, since their ids are lower.
  [[nodiscard]] bool SubmitResends();
  void OnTimer();
  void ArmTimer();
  void ExpireQueued(absl::Time now);
  // A connect attempt failed: fails the queued requests that do not wait
  // for ready.
  void FailFast();
  void Complete(Pending& p, absl::StatusOr<absl::string_view> outcome);
  // `p` is over (answered, failed or cancelled): its exactly-once id is
  // settled and its payload string goes to options_.buffers, if any. Its
  // callback is the caller's to call or drop.
  void EndRequest(Pending& p);
  // Sends `p` on the connection; on failure `p` is left intact.
  [[nodiscard]] absl::Status Submit(Pending& p);
  // Runs SubmitQueued on the next turn.
  void SchedulePump();
  // Moves the driver out; destroyed on a later turn (never inside its own
  // call back).
  void RetireDriver();
  [[nodiscard]] absl::StatusOr<ConnectionDriver*> DriverFor(
      uint64_t connection);
  absl::Time ResolveDeadline(absl::Time deadline) const;

  Loop& loop_;
  // The target (named address_ for the messages that print it).
  const HostPort address_;
  Address current_;
  // The lookup in progress, and the addresses of the last one still to try.
  std::unique_ptr<Resolution> resolving_;
  std::vector<Address> candidates_;
  size_t next_candidate_ = 0;
  PeerOptions options_;
  ClientRequestIds own_ids_;
  ClientRequestIds* ids_ = nullptr;
  PeerState state_ = PeerState::kConnecting;
  absl::Status last_error_;
  PeerStats stats_;

  // The stream of a connect in progress; the driver owns it once connected.
  std::unique_ptr<Stream> connecting_;
  std::unique_ptr<ConnectionDriver> driver_;
  std::unique_ptr<ConnectionDriver> retired_;
  std::unique_ptr<Timer> reap_timer_;
  // Numbers the connections (stats_.connections), for Reply.
  uint64_t connection_number_ = 0;
  absl::Time connected_at_;
  int backoff_attempts_ = 0;
  absl::Time reconnect_at_ = absl::InfiniteFuture();
  absl::Time connect_deadline_ = absl::InfiniteFuture();
  std::unique_ptr<Timer> timer_;
  // Runs SubmitQueued on the next turn (see SchedulePump).
  std::unique_ptr<Timer> pump_timer_;
  PeerRequestHandler* serve_ = nullptr;
  // Where the next retried request goes in queue_: retries keep their order
  // and go before requests that were never sent.
  size_t retry_position_ = 0;

  // Fail fast: the last connect attempt failed and none succeeded since.
  bool unreachable_ = false;
  // The current connection completed its handshake.
  bool handshaken_ = false;
  // The current connection's server incarnation and version (0 before its
  // handshake).
  uint64_t server_incarnation_ = 0;
  uint32_t version_ = 0;
  uint64_t last_request_id_ = 0;

  std::deque<Pending> queue_;
  // Exactly-once requests maybe delivered on a connection that died, by
  // their correlation id: sent again first on the next connection.
  absl::btree_map<uint64_t, Pending> resend_;
  size_t queued_bytes_ = 0;
  // By correlation id (the current connection's).
  absl::flat_hash_map<uint64_t, Pending> in_flight_;
  // PeerRequestId value -> correlation id, of the requests in in_flight_,
  // for Cancel.
  absl::flat_hash_map<uint64_t, uint64_t> in_flight_ids_;
};

absl::string_view PeerStateName(PeerState state);

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_PEER_H_
