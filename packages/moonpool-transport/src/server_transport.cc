#include "moonpool/transport/server_transport.h"

#include <algorithm>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "moonpool/driver/connection_driver.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/protocol/connection.h"
#include "server_connection.h"
#include "server_services.h"

#ifdef MOONPOOL_PLANTED_BUGS
#include "moonpool_planted.h"
#endif

namespace moonpool::transport {
namespace {

// The connections of `table` in id order. Walking a hashed table directly
// would make the order of Goodbyes and closes on the wire vary between runs
// (absl salts its hashes), which breaks replay under simulation.
template <typename Table>
std::vector<typename Table::mapped_type::element_type*> InIdOrder(
    const Table& table) {
  std::vector<std::pair<uint64_t, typename Table::mapped_type::element_type*>>
      by_id;
  by_id.reserve(table.size());
  for (const auto& [id, c] : table) by_id.emplace_back(id, c.get());
  std::sort(by_id.begin(), by_id.end());
  std::vector<typename Table::mapped_type::element_type*> out;
  out.reserve(by_id.size());
  for (const auto& [id, c] : by_id) out.push_back(c);
  return out;
}

}  // namespace

// ---- ServerTransport ----

absl::StatusOr<std::unique_ptr<ServerTransport>> ServerTransport::Bind(
    driver::Loop& loop, const driver::Address& address, ServerOptions options) {
  if (options.max_connections == 0 ||
      options.max_requests_in_flight_per_connection == 0 ||
      options.max_requests_in_flight == 0 || options.max_queued_bytes == 0) {
    return absl::InvalidArgumentError(
        "ServerOptions: max_connections, max_requests_in_flight(_per_"
        "connection) and max_queued_bytes must be positive");
  }
  std::unique_ptr<ServerTransport> server(
      new ServerTransport(loop, std::move(options)));
  ServerTransport* s = server.get();
  absl::StatusOr<std::unique_ptr<driver::Listener>> listener =
      loop.Listen(address, s->options_.listen,
                  [s](absl::StatusOr<std::unique_ptr<driver::Stream>> stream) {
                    s->OnAccept(std::move(stream));
                  });
  if (!listener.ok()) return listener.status();
  s->listener_ = std::move(*listener);
  s->address_ = s->listener_->address();
  return server;
}

ServerTransport::ServerTransport(driver::Loop& loop, ServerOptions options)
    : loop_(loop),
      options_(std::move(options)),
      outcomes_(options_.exactly_once) {
  options_.connection.role = protocol::Role::kServer;
  options_.connection.ids = nullptr;
  while (options_.connection.incarnation == 0) {
    options_.connection.incarnation = loop_.Random();
  }
  connections_.reserve(std::min<size_t>(options_.max_connections, 1024));
  reap_timer_ = loop_.CreateTimer([this] {
    graveyard_.clear();
    graveyard_streams_.clear();
  });
  outcome_timer_ = loop_.CreateTimer([this] {
    outcome_timer_at_ = absl::InfiniteFuture();
    outcomes_.AdvanceTime(loop_.Now());
    ArmOutcomeTimer();
  });
  services_ = std::make_unique<Services>(*this);
}

ServerTransport::~ServerTransport() {
  CloseNow();
  graveyard_.clear();
}

void ServerTransport::OnAccept(
    absl::StatusOr<std::unique_ptr<driver::Stream>> stream) {
  if (!stream.ok()) {
    ++stats_.accept_errors;
    return;
  }
  if (state_ != State::kOpen ||
      connections_.size() + handshaking_.size() >= options_.max_connections) {
    ++stats_.connections_refused;
    (*stream)->Close();
    return;
  }
  if (options_.tls != nullptr) {
    StartTls(std::move(*stream));
    return;
  }
  AddConnection(std::move(*stream));
}

void ServerTransport::AddConnection(std::unique_ptr<driver::Stream> stream) {
  ++stats_.connections_accepted;
  const uint64_t id = next_connection_id_++;
  auto c = std::make_unique<Connection>(*this, id, std::move(stream));
  Connection& ref = *c;
  connections_.emplace(id, std::move(c));
  ref.Start();
}

void ServerTransport::StartTls(std::unique_ptr<driver::Stream> stream) {
  // Counted against max_connections from now: a client that connects and
  // never finishes its handshake holds a slot until handshake_timeout.
  const driver::Address peer = stream->peer_address();
  const uint64_t key = next_handshake_id_++;
  absl::StatusOr<std::unique_ptr<driver::TlsStream>> tls =
      driver::TlsStream::Accept(
          loop_, std::move(stream), options_.tls,
          [this, key, peer](absl::Status handshake) {
            auto it = handshaking_.find(key);
            if (it == handshaking_.end()) return;
            std::unique_ptr<driver::TlsStream> done = std::move(it->second);
            handshaking_.erase(it);
            if (!handshake.ok()) {
              ++stats_.tls_handshake_failures;
              if (options_.on_tls_handshake_failure) {
                options_.on_tls_handshake_failure(peer, handshake);
              }
              // Destroyed on a later turn, not inside its own callback's
              // caller's frames any longer than needed.
              graveyard_streams_.push_back(std::move(done));
              reap_timer_->Start(loop_.Now());
              return;
            }
            ++stats_.tls_handshakes;
            if (state_ != State::kOpen) {
              done->Close();
              return;
            }
            AddConnection(std::move(done));
          });
  if (!tls.ok()) {
    ++stats_.tls_handshake_failures;
    if (options_.on_tls_handshake_failure) {
      options_.on_tls_handshake_failure(peer, tls.status());
    }
    return;
  }
  handshaking_.emplace(key, std::move(*tls));
}

absl::Status ServerTransport::Authorize(absl::string_view service,
                                        Authorizer authorize) {
  return services_->Authorize(service, std::move(authorize));
}

ServerTransport::Connection* ServerTransport::Find(uint64_t id) const {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second->dead()) return nullptr;
  return it->second.get();
}

bool ServerTransport::CanRead(const Connection& c) const {
  // While draining no new request can arrive (the Goodbye refuses them):
  // read freely so the protocol can finish.
  if (state_ == State::kDraining) return true;
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (backpressure): the bounds are not checked, so a server
  // whose handlers are slow queues without limit instead of pausing.
  if (moonpool_planted::Active("server_ignores_bounds")) return true;
#endif
  // Stream writers waiting for their client's credit are not counted: the
  // credit arrives on this connection, behind whatever paused it. (A writer
  // of a connection that just closed is counted until it wakes: saturate.)
  auto minus = [](size_t a, size_t b) { return a > b ? a - b : 0; };
  return minus(c.in_flight(), services_->credit_waits(c.id())) < c.bound() &&
         minus(in_flight_, services_->total_credit_waits()) <
             options_.max_requests_in_flight &&
         queued_bytes_ < options_.max_queued_bytes;
}

void ServerTransport::ResumePaused() {
  if (paused_.empty()) return;
  size_t kept = 0;
  for (uint64_t id : paused_) {
    Connection* c = Find(id);
    if (c == nullptr || !c->driver().paused()) continue;
    if (CanRead(*c)) {
      c->driver().Resume();
    } else {
      paused_[kept++] = id;
    }
  }
  paused_.resize(kept);
}

void ServerTransport::Enqueue(IncomingMessage message) {
  queued_bytes_ += message.envelope.payload.size();
  queue_.Push(Queued{std::move(message)});
  WakeAll(message_waiters_);
}

void ServerTransport::WakeAll(std::vector<driver::Promise<void>>& waiters) {
  // Every waiter re-checks on waking: one whose task was cancelled meanwhile
  // cannot swallow the wake-up another needed.
  for (driver::Promise<void>& p : waiters) p.Set();
  waiters.clear();
}

std::optional<IncomingMessage> ServerTransport::TakeMessage() {
  std::optional<IncomingMessage> out;
  while (!queue_.empty()) {
    Queued q = queue_.Pop();
    if (q.cancelled) {  // abandoned and uncounted already
      --cancelled_in_queue_;
      continue;
    }
    IncomingMessage& m = q.message;
    queued_bytes_ -= m.envelope.payload.size();
    if (!m.is_request()) {
      out = std::move(m);
      break;
    }
    Connection* c = Find(m.connection_id);
    // An exactly-once request outlives its connection: its client sends it
    // again on another, where it waits for this one's answer.
    if (c == nullptr && !m.envelope.exactly_once) {
      ++stats_.orphaned_dropped;  // its in-flight count left with it
      continue;
    }
    if (m.deadline <= loop_.Now()) {
      ++stats_.expired_dropped;
      // The requester gave up already: forget it unanswered (DESIGN.md
      // section 5), which keeps the bookkeeping a drain waits on exact.
      if (c != nullptr) c->Abandon(m);
      AbandonRecord(m);
      continue;
    }
    out = std::move(m);
    break;
  }
  ResumePaused();
  return out;
}

void ServerTransport::OnCancel(Connection& c, CorrelationId id) {
  ++stats_.cancels_received;
  if (services_->Cancel(c, id)) return;
  // A request of the default queue: dropped if NextMessage has not handed
  // it out yet. Cancels are rare next to requests, so they pay for the walk
  // and the queue stays a plain ring. A request already handed out cannot
  // be reached: its answer is sent and the client drops it.
  bool found = false;
  queue_.ForEach([&](Queued& q) {
    if (found || q.cancelled || q.message.connection_id != c.id() ||
        !q.message.is_request() || q.message.envelope.correlation_id != id) {
      return;
    }
    found = true;
    q.cancelled = true;
    ++cancelled_in_queue_;
    queued_bytes_ -= q.message.envelope.payload.size();
    ++stats_.cancelled_before_handler;
    c.Abandon(q.message);
    AbandonRecord(q.message);
    q.message.envelope.payload.clear();
  });
  if (found) ResumePaused();
}

driver::Task<std::optional<IncomingMessage>> ServerTransport::NextMessage() {
  while (true) {
    if (state_ == State::kClosed) co_return std::nullopt;
    if (std::optional<IncomingMessage> m = TakeMessage()) co_return m;
    std::pair<driver::Promise<void>, driver::Future<void>> wake =
        driver::MakePromise<void>(loop_);
    message_waiters_.push_back(std::move(wake.first));
    (void)co_await std::move(wake.second);
  }
}

absl::StatusOr<ServerTransport::Connection*> ServerTransport::ConnectionFor(
    const IncomingMessage& request) {
  if (state_ == State::kClosed) {
    return absl::FailedPreconditionError(
        "server transport is closed; the request cannot be answered");
  }
  if (!request.is_request()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", EnvelopeKindName(request.envelope.kind),
                     " message takes no reply"));
  }
  Connection* c = Find(request.connection_id);
  if (c == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "connection ", request.connection_id, " from ",
        request.peer_address.ToString(),
        " is gone (closed before the reply); request ",
        request.envelope.correlation_id.ToString(), " cannot be answered"));
  }
  return c;
}

Envelope ServerTransport::CopyEnvelope(const EnvelopeView& view) {
  EnvelopeView rest = view;
  rest.payload = {};
  Envelope e = Envelope::CopyOf(rest);
  e.payload = buffers_.Take();
  e.payload.assign(view.payload.data(), view.payload.size());
  return e;
}

absl::Status ServerTransport::Reply(const IncomingMessage& request,
                                    absl::string_view payload) {
  RecordOutcome(request, absl::StatusCode::kOk, payload);
  absl::StatusOr<Connection*> c = ConnectionFor(request);
  if (!c.ok()) return c.status();
  absl::Status s = (*c)->Answer(request, payload, nullptr);
  if (s.ok()) {
    ++stats_.replies_sent;
    ResumePaused();
  }
  return s;
}

absl::Status ServerTransport::EndStream(const IncomingMessage& request) {
  absl::StatusOr<Connection*> c = ConnectionFor(request);
  if (!c.ok()) return c.status();
  absl::Status s = (*c)->Answer(request, {}, nullptr, /*stream_end=*/true);
  if (s.ok()) {
    ++stats_.replies_sent;
    ResumePaused();
  }
  return s;
}

absl::Status ServerTransport::ReplyError(const IncomingMessage& request,
                                         const absl::Status& status) {
  if (status.ok()) {
    return absl::InvalidArgumentError(
        "ReplyError needs an error status; use Reply for a success");
  }
  RecordOutcome(request, status.code(), status.message());
  absl::StatusOr<Connection*> c = ConnectionFor(request);
  if (!c.ok()) return c.status();
  absl::Status s = (*c)->Answer(request, {}, &status);
  if (s.ok()) {
    ++stats_.error_replies_sent;
    ResumePaused();
  }
  return s;
}

driver::Task<absl::Status> ServerTransport::ReplyWhenWritable(
    IncomingMessage request, std::string payload) {
  return AnswerWhenWritable(std::move(request), std::move(payload),
                            absl::OkStatus());
}

driver::Task<absl::Status> ServerTransport::ReplyErrorWhenWritable(
    IncomingMessage request, absl::Status status) {
  if (status.ok()) {
    co_return absl::InvalidArgumentError(
        "ReplyError needs an error status; use Reply for a success");
  }
  co_return co_await AnswerWhenWritable(std::move(request), {},
                                        std::move(status));
}

driver::Task<absl::Status> ServerTransport::AnswerWhenWritable(
    IncomingMessage request, std::string payload, absl::Status error,
    bool stream_end) {
  while (true) {
    absl::Status s = !error.ok()  ? ReplyError(request, error)
                     : stream_end ? EndStream(request)
                                  : Reply(request, absl::string_view(payload));
    if (s.code() != absl::StatusCode::kResourceExhausted) co_return s;
    Connection* c = Find(request.connection_id);
    // Full though nothing waits to be written: too large to ever fit.
    if (c == nullptr || !c->HasOutput()) co_return s;
    if (request.deadline <= loop_.Now()) {
      c->Abandon(request);
      ++stats_.expired_dropped;
      co_return absl::DeadlineExceededError(absl::StrCat(
          "request ", request.envelope.correlation_id.ToString(),
          " reached its deadline while its answer waited for output room"));
    }
    std::pair<driver::Promise<void>, driver::Future<void>> room =
        driver::MakePromise<void>(loop_);
    c->WaitForRoom(std::move(room.first));
    (void)co_await driver::Select(std::move(room.second),
                                  driver::SleepUntil(loop_, request.deadline));
  }
}

absl::StatusOr<CorrelationId> ServerTransport::SendRequestOn(
    uint64_t connection_id, std::string payload, const RequestOptions& options,
    driver::ReplyCallback done) {
  if (state_ == State::kClosed) {
    return absl::FailedPreconditionError("server transport is closed");
  }
  Connection* c = Find(connection_id);
  if (c == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no open connection ", connection_id));
  }
  protocol::RequestOptions o;
  o.deadline = options.deadline;
  if (options.timeout != absl::InfiniteDuration()) {
    o.deadline = std::min(o.deadline, loop_.Now() + options.timeout);
  }
  if (o.deadline == absl::InfiniteFuture()) {
    o.deadline = loop_.Now() + options_.connection.default_request_timeout;
  }
  o.idempotent = options.idempotent;
  o.endpoint = options.endpoint;
  return c->Call(payload, o, std::move(done));
}

void ServerTransport::CancelRequestOn(uint64_t connection_id,
                                      CorrelationId id) {
  if (Connection* c = Find(connection_id); c != nullptr) c->CancelCall(id);
}

void ServerTransport::AddClosed(Connection& c) {
  const driver::ConnectionDriverStats s = c.driver().stats();
  stats_.bytes_in += s.connection.bytes_in;
  stats_.bytes_out += s.connection.bytes_out;
  stats_.keepalive_timeouts += s.connection.keepalive_timeouts;
  stats_.protocol_errors += s.protocol_errors;
  stats_.read_timeouts += s.read_timeouts;
  stats_.idle_timeouts += s.idle_timeouts;
  in_flight_ -= c.in_flight();
}

void ServerTransport::Remove(Connection& c) {
  auto it = connections_.find(c.id());
  if (it == connections_.end()) return;
  AddClosed(c);
  graveyard_.push_back(std::move(it->second));
  connections_.erase(it);
  reap_timer_->Start(loop_.Now());
  services_->ConnectionGone(c.id());
  ResumePaused();
  if (state_ == State::kDraining && connections_.empty()) {
    WakeAll(close_waiters_);
  }
}

driver::Task<void> ServerTransport::Close(bool drain) {
  if (state_ == State::kOpen) {
    listener_.reset();
    if (drain) {
      state_ = State::kDraining;
      std::vector<Connection*> refused;
      for (Connection* c : InIdOrder(connections_)) {
        // Refused: a connection still in its handshake, or ending; it has
        // nothing to answer.
        if (!c->driver().SendGoodbye("server shutting down").ok()) {
          refused.push_back(c);
        }
      }
      for (Connection* c : refused) {
        c->Kill();
        Remove(*c);
      }
      paused_.clear();
    }
  }
  if (state_ == State::kDraining && drain) {
    const absl::Time deadline = loop_.Now() + options_.drain_timeout;
    // Running handlers finish too, one-way ones included (they hold no
    // connection open).
    while (state_ == State::kDraining &&
           (!connections_.empty() || services_->live() > 0) &&
           loop_.Now() < deadline) {
      std::pair<driver::Promise<void>, driver::Future<void>> wake =
          driver::MakePromise<void>(loop_);
      close_waiters_.push_back(std::move(wake.first));
      (void)co_await driver::Select(std::move(wake.second),
                                    driver::SleepUntil(loop_, deadline));
    }
  }
  CloseNow();
}

void ServerTransport::CloseNow() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  listener_.reset();
  handshaking_.clear();
  outcome_timer_->Stop();
  outcome_timer_at_ = absl::InfiniteFuture();
  // Handlers first: destroyed at their suspension points, before the
  // connections they would answer on.
  services_->CloseAll();
  for (Connection* c : InIdOrder(connections_)) {
    AddClosed(*c);
    c->Kill();
  }
  // Not inside any connection's callback (Close runs in a task, the
  // destructor in its owner): the connections can go now.
  connections_.clear();
  paused_.clear();
  queue_.Clear();
  cancelled_in_queue_ = 0;
  queued_bytes_ = 0;
  in_flight_ = 0;
  WakeAll(message_waiters_);
  WakeAll(close_waiters_);
}

ServerStats ServerTransport::stats() const {
  ServerStats s = stats_;
  s.connections_open = connections_.size();
  s.tls_handshaking = handshaking_.size();
  for (const auto& [id, c] : connections_) {
    const driver::ConnectionDriverStats cs = c->driver().stats();
    s.bytes_in += cs.connection.bytes_in;
    s.bytes_out += cs.connection.bytes_out;
    s.keepalive_timeouts += cs.connection.keepalive_timeouts;
    s.protocol_errors += cs.protocol_errors;
    s.read_timeouts += cs.read_timeouts;
    s.idle_timeouts += cs.idle_timeouts;
    if (c->driver().paused()) ++s.paused_connections;
  }
  s.requests_in_flight = in_flight_;
  s.queued_messages = queue_.size() - cancelled_in_queue_;
  s.queued_bytes = queued_bytes_;
  s.exactly_once = outcomes_.stats();
  return s;
}

}  // namespace moonpool::transport
