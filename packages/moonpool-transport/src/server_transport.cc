#include "moonpool/transport/server_transport.h"

#include <algorithm>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "moonpool/driver/output_handoff.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/protocol/connection.h"

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

// One accepted connection: a server-role protocol::Connection driven over a
// Stream, as the driver's Peer drives a client one. Reads go straight into
// the protocol's receive buffer (zero copy); events are pulled one frame at
// a time, and not at all while a bound holds (the protocol then buffers
// nothing more, and the stream is not read); its output is written with
// Stream::Write, and consumed from the protocol only once the kernel took it.
class ServerTransport::Connection final : public driver::StreamHandler,
                                          private driver::TurnEndHandler {
 public:
  Connection(ServerTransport& server, uint64_t id,
             std::unique_ptr<driver::Stream> stream)
      : server_(server),
        id_(id),
        stream_(std::move(stream)),
        peer_address_(stream_->peer_address()),
        connection_(server.options_.connection, server.loop_.Now()),
        timer_(server.loop_.CreateTimer([this] { OnTimer(); })),
        last_activity_(server.loop_.Now()) {}

  ~Connection() {
    if (pump_at_turn_end_) server_.loop_.CancelTurnEnd(this);
  }

  // Starts reading; the first pump runs on a later turn.
  void Start() {
    stream_->SetHandler(this);
    if (absl::Status s = stream_->StartReading(); !s.ok()) {
      TransportClosed(std::move(s));
    }
    ScheduleSoon();
  }

  uint64_t id() const { return id_; }
  bool dead() const { return dead_; }
  bool paused() const { return paused_; }
  size_t in_flight() const { return in_flight_; }
  const protocol::ConnectionStats stats() const { return connection_.stats(); }

  // Closes the socket at once; the caller removes the connection.
  void Kill() {
    if (dead_) return;
    dead_ = true;
    timer_->Stop();
    stream_->Close();
  }

  absl::Status Answer(const IncomingMessage& request, absl::string_view payload,
                      const absl::Status* error) {
    const CorrelationId id = request.envelope.correlation_id;
    absl::Status s = error == nullptr ? connection_.SendReply(id, payload)
                                      : connection_.SendErrorReply(id, *error);
    if (!s.ok()) {
      if (s.code() == absl::StatusCode::kFailedPrecondition) {
        // The protocol connection ended; the socket is on its way out.
        return absl::NotFoundError(absl::StrCat(
            "connection ", id_, " from ", peer_address_.ToString(),
            " is closed; request ", id.ToString(), " cannot be answered"));
      }
      return s;
    }
    OnAnswered();
    // Writes the answer at the end of the turn, with every other answer the
    // handlers give in this turn: one write per batch, not one per reply.
    // The pump then also notices a finished drain or a lifted bound.
    PumpAtTurnEnd();
    return absl::OkStatus();
  }

  // Forgets a request unanswered (its deadline passed while queued).
  void Abandon(const IncomingMessage& request) {
    (void)connection_.AbandonRequest(request.envelope.correlation_id);
    OnAnswered();
    Pump();
  }

  // Says Goodbye. False when the protocol refuses (a connection still in
  // its handshake, or over): it has nothing to answer, close it.
  bool StartDrain() {
    if (!connection_.SendGoodbye("server shutting down").ok()) {
      return transport_closed_;  // closing already: let the pump finish it
    }
    if (paused_) {
      paused_ = false;
      (void)stream_->StartReading();
    }
    ScheduleSoon();
    return true;
  }

  // A bound that held may have lifted: read again.
  void Resume() {
    if (dead_ || !paused_) return;
    paused_ = false;
    if (absl::Status s = stream_->StartReading(); !s.ok()) {
      TransportClosed(std::move(s));
    }
    // The protocol's keepalive clock stood still while we did not read;
    // give the bytes waiting in the kernel a keepalive timeout to arrive
    // before it may declare the peer gone.
    grace_until_ =
        server_.loop_.Now() + server_.options_.connection.keepalive_timeout;
    ScheduleSoon();
  }

 private:
  // ---- StreamHandler ----
  absl::Span<char> ReadBuffer(size_t suggested) override {
    return connection_.PrepareReceive(suggested);
  }
  void OnRead(size_t n) override {
    grace_until_ = absl::InfinitePast();
    if (n > 0 && partial_since_ == absl::InfiniteFuture()) {
      partial_since_ = server_.loop_.Now();
    }
    connection_.CommitReceive(n, server_.loop_.Now());
    Pump();
  }
  void OnReadEnd(absl::Status status) override {
    TransportClosed(std::move(status));
    Pump();
  }
  void OnWritten(size_t n) override {
    handoff_.OnWritten(connection_, n);
    Pump();
  }
  void OnWriteError(absl::Status status) override {
    TransportClosed(std::move(status));
    Pump();
  }

  void TransportClosed(absl::Status why) {
    if (transport_closed_) return;
    transport_closed_ = true;
    connection_.OnTransportClosed(std::move(why), server_.loop_.Now());
  }

  void OnTimer() {
    const absl::Time now = server_.loop_.Now();
    if (!paused_ && now >= grace_until_) connection_.AdvanceTime(now);
    if (!paused_) CheckTimeouts(now);
    Pump();
  }

  // ServerOptions::read_timeout and idle_timeout (the protocol's keepalive
  // cannot see a peer that trickles bytes, or one that answers pings only).
  absl::Time TimeoutAt() const {
    const ServerOptions& o = server_.options_;
    absl::Time t = partial_since_ + o.read_timeout;
    if (in_flight_ == 0 && !idle_closing_) {
      t = std::min(t, last_activity_ + o.idle_timeout);
    }
    return t;
  }

  void CheckTimeouts(absl::Time now) {
    if (transport_closed_) return;
    const ServerOptions& o = server_.options_;
    if (now >= partial_since_ + o.read_timeout) {
      ++server_.stats_.read_timeouts;
      TransportClosed(absl::DeadlineExceededError(absl::StrCat(
          "no whole frame from ", peer_address_.ToString(), " within ",
          absl::FormatDuration(o.read_timeout), " (read timeout)")));
    } else if (in_flight_ == 0 && !idle_closing_ &&
               now >= last_activity_ + o.idle_timeout) {
      ++server_.stats_.idle_timeouts;
      idle_closing_ = true;
      if (!connection_.SendGoodbye("idle timeout").ok()) {
        TransportClosed(absl::DeadlineExceededError(
            absl::StrCat("idle for ", absl::FormatDuration(o.idle_timeout))));
      }
    }
  }

  void ScheduleSoon() {
    if (!dead_) timer_->Start(server_.loop_.Now());
  }

  void ArmTimer() {
    if (dead_) return;
    if (paused_) {
      timer_->Stop();
      return;
    }
    absl::Time t =
        std::min(std::max(connection_.NextWakeup(), grace_until_), TimeoutAt());
    if (t == absl::InfiniteFuture()) {
      timer_->Stop();
    } else {
      timer_->Start(t);
    }
  }

  // Drains events (as far as the bounds allow), writes, closes the socket
  // when the protocol is done. The one place all of that happens.
  void PumpAtTurnEnd() {
    if (pump_at_turn_end_) return;
    pump_at_turn_end_ = true;
    server_.loop_.ScheduleTurnEnd(this);
  }

  void OnTurnEnd() override {
    pump_at_turn_end_ = false;
    if (!dead_) Pump();
  }

  void Pump() {
    if (dead_) return;
    if (in_pump_) {
      repump_ = true;
      return;
    }
    in_pump_ = true;
    const uint64_t frames_before = connection_.stats().frames_in;
    bool closed = false;
    do {
      repump_ = false;
      while (!closed) {
        // Once the socket is gone, read what is left regardless: nothing
        // more can arrive, and the Closed event must come out.
        if (!transport_closed_ && !server_.CanRead(*this)) {
          Pause();
          break;
        }
        std::optional<protocol::Event> event = connection_.NextEvent();
        if (!event.has_value()) break;
        if (std::holds_alternative<protocol::Closed>(*event)) closed = true;
        HandleEvent(*event);
      }
      if (closed) break;
      Flush();
      if (connection_.WantsClose() && handoff_.handed_off() == 0 &&
          connection_.PendingOutput().empty() && !transport_closed_) {
        // Goodbye exchanged and everything answered and written.
        stream_->Close();
        TransportClosed(absl::OkStatus());
        repump_ = true;
      }
    } while (repump_);
    in_pump_ = false;
    // A whole frame came in: the read clock restarts with the next read.
    if (connection_.stats().frames_in != frames_before) {
      partial_since_ = absl::InfiniteFuture();
    }
    if (closed) {
      Kill();
      server_.Remove(*this);  // last: may schedule our destruction
      return;
    }
    ArmTimer();
  }

  void HandleEvent(protocol::Event& event) {
    if (auto* r = std::get_if<protocol::RequestReceived>(&event)) {
      ++server_.stats_.requests_received;
      last_activity_ = server_.loop_.Now();
      if (transport_closed_ || server_.state_ == State::kClosed) {
        ++server_.stats_.orphaned_dropped;  // nobody could get the answer
        return;
      }
      ++in_flight_;
      ++server_.in_flight_;
      server_.Enqueue(IncomingMessage{Envelope::CopyOf(r->request), id_,
                                      peer_address_, r->deadline});
    } else if (auto* m = std::get_if<protocol::OneWayReceived>(&event)) {
      ++server_.stats_.one_way_received;
      last_activity_ = server_.loop_.Now();
      if (server_.state_ == State::kClosed) return;
      server_.Enqueue(IncomingMessage{Envelope::CopyOf(m->message), id_,
                                      peer_address_, absl::InfiniteFuture()});
    }
    // HandshakeDone, GoodbyeReceived: the protocol handles them. Replies and
    // failures: a server sends no requests. Closed: Pump ends the connection.
  }

  void Pause() {
    if (paused_) return;
    paused_ = true;
    partial_since_ = absl::InfiniteFuture();  // not timed while we hold it
    stream_->StopReading();
    server_.paused_.push_back(id_);
    ++server_.stats_.backpressure_pauses;
  }

  void OnAnswered() {
    last_activity_ = server_.loop_.Now();
    --in_flight_;
    --server_.in_flight_;
  }

  void Flush() {
    if (dead_ || transport_closed_) return;
    absl::Status s = handoff_.Flush(connection_, *stream_,
                                    server_.options_.stream_high_water_bytes);
    if (s.ok()) return;
    TransportClosed(std::move(s));
    if (in_pump_) {
      repump_ = true;
    } else {
      ScheduleSoon();
    }
  }

  friend class ServerTransport;

  ServerTransport& server_;
  const uint64_t id_;
  std::unique_ptr<driver::Stream> stream_;
  const driver::Address peer_address_;
  protocol::Connection connection_;
  std::unique_ptr<driver::Timer> timer_;
  // The protocol's output on its way into the stream.
  driver::OutputHandoff handoff_;
  // Requests received on this connection and not yet answered.
  size_t in_flight_ = 0;
  absl::Time grace_until_ = absl::InfinitePast();
  // When the frame now arriving began (InfiniteFuture: none is), and the
  // last request, one-way message or answer (for the idle timeout).
  absl::Time partial_since_ = absl::InfiniteFuture();
  absl::Time last_activity_;
  bool idle_closing_ = false;
  bool paused_ = false;
  bool transport_closed_ = false;
  bool dead_ = false;
  bool pump_at_turn_end_ = false;
  bool in_pump_ = false;
  bool repump_ = false;
};

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
    : loop_(loop), options_(std::move(options)) {
  options_.connection.role = protocol::Role::kServer;
  options_.connection.ids = nullptr;
  while (options_.connection.incarnation == 0) {
    options_.connection.incarnation = loop_.Random();
  }
  connections_.reserve(std::min<size_t>(options_.max_connections, 1024));
  reap_timer_ = loop_.CreateTimer([this] { graveyard_.clear(); });
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
      connections_.size() >= options_.max_connections) {
    ++stats_.connections_refused;
    (*stream)->Close();
    return;
  }
  ++stats_.connections_accepted;
  const uint64_t id = next_connection_id_++;
  auto c = std::make_unique<Connection>(*this, id, std::move(*stream));
  Connection& ref = *c;
  connections_.emplace(id, std::move(c));
  ref.Start();
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
  return c.in_flight() < options_.max_requests_in_flight_per_connection &&
         in_flight_ < options_.max_requests_in_flight &&
         queued_bytes_ < options_.max_queued_bytes;
}

void ServerTransport::ResumePaused() {
  if (paused_.empty()) return;
  size_t kept = 0;
  for (uint64_t id : paused_) {
    Connection* c = Find(id);
    if (c == nullptr || !c->paused()) continue;
    if (CanRead(*c)) {
      c->Resume();
    } else {
      paused_[kept++] = id;
    }
  }
  paused_.resize(kept);
}

void ServerTransport::Enqueue(IncomingMessage message) {
  queued_bytes_ += message.envelope.payload.size();
  queue_.Push(std::move(message));
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
    IncomingMessage m = queue_.Pop();
    queued_bytes_ -= m.envelope.payload.size();
    if (!m.is_request()) {
      out = std::move(m);
      break;
    }
    Connection* c = Find(m.connection_id);
    if (c == nullptr) {
      ++stats_.orphaned_dropped;  // its in-flight count left with it
      continue;
    }
    if (m.deadline <= loop_.Now()) {
      ++stats_.expired_dropped;
      // The requester gave up already: forget it unanswered (DESIGN.md
      // section 5), which keeps the bookkeeping a drain waits on exact.
      c->Abandon(m);
      continue;
    }
    out = std::move(m);
    break;
  }
  ResumePaused();
  return out;
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

absl::Status ServerTransport::Reply(const IncomingMessage& request,
                                    absl::string_view payload) {
  absl::StatusOr<Connection*> c = ConnectionFor(request);
  if (!c.ok()) return c.status();
  absl::Status s = (*c)->Answer(request, payload, nullptr);
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
  absl::StatusOr<Connection*> c = ConnectionFor(request);
  if (!c.ok()) return c.status();
  absl::Status s = (*c)->Answer(request, {}, &status);
  if (s.ok()) {
    ++stats_.error_replies_sent;
    ResumePaused();
  }
  return s;
}

void ServerTransport::Remove(Connection& c) {
  auto it = connections_.find(c.id());
  if (it == connections_.end()) return;
  const protocol::ConnectionStats s = c.stats();
  stats_.bytes_in += s.bytes_in;
  stats_.bytes_out += s.bytes_out;
  stats_.keepalive_timeouts += s.keepalive_timeouts;
  const protocol::ProtocolErrors& e = s.protocol_errors;
  stats_.protocol_errors += e.corrupt_frames + e.malformed_frames +
                            e.oversized_frames + e.handshake_failures +
                            e.unexpected_frames + e.ping_floods;
  in_flight_ -= c.in_flight();
  graveyard_.push_back(std::move(it->second));
  connections_.erase(it);
  reap_timer_->Start(loop_.Now());
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
        if (!c->StartDrain()) refused.push_back(c);
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
    while (state_ == State::kDraining && !connections_.empty() &&
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
  for (Connection* c : InIdOrder(connections_)) {
    const protocol::ConnectionStats s = c->stats();
    stats_.bytes_in += s.bytes_in;
    stats_.bytes_out += s.bytes_out;
    c->Kill();
  }
  // Not inside any connection's callback (Close runs in a task, the
  // destructor in its owner): the connections can go now.
  connections_.clear();
  paused_.clear();
  queue_.Clear();
  queued_bytes_ = 0;
  in_flight_ = 0;
  WakeAll(message_waiters_);
  WakeAll(close_waiters_);
}

ServerStats ServerTransport::stats() const {
  ServerStats s = stats_;
  s.connections_open = connections_.size();
  for (const auto& [id, c] : connections_) {
    const protocol::ConnectionStats cs = c->stats();
    s.bytes_in += cs.bytes_in;
    s.bytes_out += cs.bytes_out;
    if (c->paused()) ++s.paused_connections;
  }
  s.requests_in_flight = in_flight_;
  s.queued_messages = queue_.size();
  s.queued_bytes = queued_bytes_;
  return s;
}

}  // namespace moonpool::transport
