// ServerTransport::Connection, one accepted connection of a ServerTransport
// (server_transport.h). Private to the transport's sources.
#ifndef MOONPOOL_TRANSPORT_SRC_SERVER_CONNECTION_H_
#define MOONPOOL_TRANSPORT_SRC_SERVER_CONNECTION_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/connection_driver.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/promise.h"
#include "moonpool/transport/buggify_sites.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::transport {

// One accepted connection: a ConnectionDriver (the same driver a client's
// Peer uses) and what the server keeps per connection: the bound check that
// pauses reading, its requests' entry into the one queue, and the requests
// the server itself sent on it.
class ServerTransport::Connection final : private driver::ConnectionHandler {
 public:
  Connection(ServerTransport& server, uint64_t id,
             std::unique_ptr<driver::Stream> stream)
      : server_(server),
        id_(id),
        peer_identity_(stream->peer_identity()),
        bound_(server.loop_.Buggify(buggify_sites::kBoundOfOne)
                   ? 1
                   : server.options_.max_requests_in_flight_per_connection),
        driver_(server.loop_, std::move(stream),
                DriverOptions(server.loop_, server.options_), *this) {}

  ~Connection() { FailCalls(); }

  void Start() { driver_.Start(/*pump_now=*/false); }

  uint64_t id() const { return id_; }
  bool dead() const { return dead_; }
  driver::ConnectionDriver& driver() { return driver_; }
  const driver::ConnectionDriver& driver() const { return driver_; }
  size_t in_flight() const { return driver_.requests_being_served(); }
  // The client's verified TLS certificate, or nullptr.
  const std::shared_ptr<const driver::PeerIdentity>& peer_identity() const {
    return peer_identity_;
  }
  // The client's Hello incarnation (0 before the handshake).
  uint64_t peer_incarnation() const { return peer_incarnation_; }
  // Requests in flight it may have before reading pauses.
  size_t bound() const { return bound_; }

  // Closes the socket at once; the caller removes the connection.
  void Kill() {
    if (dead_) return;
    dead_ = true;
    driver_.Close();
    WakeRoomWaiters();
    FailCalls();
  }

  // A reply (`error` null), an error reply, or with `stream_end` the OK end
  // of a reply stream (`payload` ignored).
  absl::Status Answer(const IncomingMessage& request, absl::string_view payload,
                      const absl::Status* error, bool stream_end = false) {
    const CorrelationId id = request.envelope.correlation_id;
    absl::Status s = error != nullptr ? driver_.SendErrorReply(id, *error)
                     : stream_end     ? driver_.SendStreamEnd(id)
                                      : driver_.SendReply(id, payload);
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      // The protocol connection ended; the socket is on its way out.
      return absl::NotFoundError(absl::StrCat(
          "connection ", id_, " from ", driver_.peer_address().ToString(),
          " is closed; request ", id.ToString(), " cannot be answered"));
    }
    if (s.ok()) --server_.in_flight_;
    return s;
  }

  // Whether the output has drained to half its bound (see OnPumped).
  bool HasRoom() const {
    return driver_.connection().PendingOutput().size() <
           server_.options_.connection.max_output_bytes / 2;
  }
  bool HasOutput() const {
    return !driver_.connection().PendingOutput().empty();
  }
  // `room` is set once HasRoom(), or the connection ends.
  void WaitForRoom(driver::Promise<void> room) {
    room_waiters_.push_back(std::move(room));
  }

  // Forgets a request unanswered (its deadline passed while queued).
  void Abandon(const IncomingMessage& request) {
    if (driver_.AbandonRequest(request.envelope.correlation_id).ok()) {
      --server_.in_flight_;
    }
  }

  absl::StatusOr<CorrelationId> Call(absl::string_view payload,
                                     const protocol::RequestOptions& options,
                                     driver::ReplyCallback done) {
    absl::StatusOr<CorrelationId> id = driver_.SendRequest(payload, options);
    if (!id.ok()) return id.status();
    calls_.emplace(id->value(), std::move(done));
    return id;
  }

  // The server's request `id` lost its waiter: forgotten (its callback
  // destroyed uncalled) and, on version 2, cancelled on the wire. Nothing
  // when it already had its outcome.
  void CancelCall(CorrelationId id) {
    auto it = calls_.find(id.value());
    if (it == calls_.end()) return;
    driver::ReplyCallback done = std::move(it->second);
    calls_.erase(it);
    (void)driver_.CancelRequest(id);
  }

 private:
  static driver::ConnectionDriverOptions DriverOptions(driver::Loop& loop,
                                                       const ServerOptions& o) {
    driver::ConnectionDriverOptions d;
    d.connection = o.connection;
    d.stream_high_water_bytes = o.stream_high_water_bytes;
    d.read_timeout = o.read_timeout;
    d.idle_timeout = o.idle_timeout;
    return d;
  }

  // ---- ConnectionHandler ----
  bool CanTakeEvent() override {
    if (server_.CanRead(*this)) return true;
    if (!driver_.paused()) {
      server_.paused_.push_back(id_);
      ++server_.stats_.backpressure_pauses;
    }
    return false;
  }

  void OnEvent(protocol::Event& event) override {
    if (auto* r = std::get_if<protocol::RequestReceived>(&event)) {
      ++server_.stats_.requests_received;
      if (driver_.ending() || server_.state_ == State::kClosed) {
        ++server_.stats_.orphaned_dropped;  // nobody could get the answer
        (void)driver_.AbandonRequest(r->request.correlation_id);
        return;
      }
      ++server_.in_flight_;
      IncomingMessage message{server_.CopyEnvelope(r->request), id_,
                              driver_.peer_address(), r->deadline,
                              peer_incarnation_};
      // What the connection's version lets it mean (0 on version 1). A
      // reply stream is never exactly-once: its items are not recorded.
      message.envelope.stream_credit = r->stream_credit;
      message.envelope.exactly_once = r->exactly_once && r->stream_credit == 0;
      if (!server_.AdmitRequest(*this, message, r->answered_below)) return;
      if (r->request.endpoint == kDefaultEndpoint) {
        server_.Enqueue(std::move(message));
      } else {
        server_.Dispatch(*this, std::move(message));
      }
    } else if (auto* m = std::get_if<protocol::OneWayReceived>(&event)) {
      ++server_.stats_.one_way_received;
      if (server_.state_ == State::kClosed) return;
      IncomingMessage message{server_.CopyEnvelope(m->message), id_,
                              driver_.peer_address(), absl::InfiniteFuture(),
                              peer_incarnation_};
      if (m->message.endpoint == kDefaultEndpoint) {
        server_.Enqueue(std::move(message));
      } else {
        server_.Dispatch(*this, std::move(message));
      }
    } else if (auto* cancel = std::get_if<protocol::CancelReceived>(&event)) {
      server_.OnCancel(*this, cancel->id);
    } else if (auto* credit = std::get_if<protocol::CreditReceived>(&event)) {
      server_.OnCredit(*this, credit->id);
    } else if (auto* hello = std::get_if<protocol::HandshakeDone>(&event)) {
      peer_incarnation_ = hello->peer.incarnation;
    } else if (auto* reply = std::get_if<protocol::ReplyReceived>(&event)) {
      auto it = calls_.find(reply->id.value());
      if (it == calls_.end()) return;
      driver::ReplyCallback done = std::move(it->second);
      calls_.erase(it);
      if (reply->status.ok()) {
        done(reply->payload);
      } else {
        done(reply->status);
      }
    } else if (auto* failed = std::get_if<protocol::RequestFailed>(&event)) {
      // A server cannot reconnect to its client: nothing is sent again.
      auto it = calls_.find(failed->id.value());
      if (it == calls_.end()) return;
      driver::ReplyCallback done = std::move(it->second);
      calls_.erase(it);
      done(failed->status);
    }
    // GoodbyeReceived: the protocol handles it.
  }

  void OnFlushed() override {
    if (!room_waiters_.empty() && HasRoom()) WakeRoomWaiters();
  }

  void WakeRoomWaiters() {
    std::vector<driver::Promise<void>> waiters = std::move(room_waiters_);
    room_waiters_.clear();
    for (driver::Promise<void>& p : waiters) p.Set();
  }

  void OnClosed(const absl::Status& status) override {
    dead_ = true;
    WakeRoomWaiters();
    FailCalls();
    server_.Remove(*this);  // last: may schedule our destruction
  }

  // Requests the server sent that the protocol did not settle (the
  // connection was cut by Kill).
  void FailCalls() {
    std::vector<std::pair<uint64_t, driver::ReplyCallback>> calls;
    for (auto& [id, done] : calls_) calls.emplace_back(id, std::move(done));
    calls_.clear();
    std::sort(calls.begin(), calls.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [id, done] : calls) {
      done(absl::CancelledError(absl::StrCat("connection ", id_, " closed")));
    }
  }

  friend class ServerTransport;

  ServerTransport& server_;
  const uint64_t id_;
  const std::shared_ptr<const driver::PeerIdentity> peer_identity_;
  const size_t bound_;
  driver::ConnectionDriver driver_;
  absl::flat_hash_map<uint64_t, driver::ReplyCallback> calls_;
  // Answers waiting for the output to drain (ReplyWhenWritable).
  std::vector<driver::Promise<void>> room_waiters_;
  uint64_t peer_incarnation_ = 0;
  bool dead_ = false;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SRC_SERVER_CONNECTION_H_
