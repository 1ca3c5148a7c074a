#include "moonpool/driver/peer.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moonpool::driver {

absl::string_view PeerStateName(PeerState state) {
  switch (state) {
    case PeerState::kConnecting:
      return "connecting";
    case PeerState::kConnected:
      return "connected";
    case PeerState::kBackingOff:
      return "backing off";
    case PeerState::kClosed:
      return "closed";
  }
  return "unknown";
}

Peer::Peer(Loop& loop, Address address, PeerOptions options)
    : loop_(loop), address_(address), options_(std::move(options)) {
  options_.connection.role = protocol::Role::kClient;
  options_.connection.ids = &ids_;
  if (options_.connection.incarnation == 0) options_.connection.incarnation = 1;
  timer_ = loop_.CreateTimer([this] { OnTimer(); });
  pump_timer_ = loop_.CreateTimer([this] { Pump(); });
  StartConnect();
}

Peer::~Peer() {
  Close();
  if (flush_scheduled_) loop_.CancelTurnEnd(this);
}

void Peer::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  loop_.ScheduleTurnEnd(this);
}

void Peer::OnTurnEnd() {
  flush_scheduled_ = false;
  if (connection_ == nullptr || in_pump_ || state_ == PeerState::kClosed) {
    return;
  }
  Flush();  // on a write error it schedules a pump itself
  ArmTimer();
}

absl::Time Peer::ResolveDeadline(absl::Time deadline) const {
  return deadline == absl::InfiniteFuture()
             ? loop_.Now() + options_.connection.default_request_timeout
             : deadline;
}

// ---- Requests ----

absl::Status Peer::Request(std::string payload,
                           const PeerRequestOptions& options,
                           ReplyCallback done) {
  if (state_ == PeerState::kClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("peer ", address_.ToString(), " is closed"));
  }
  if (queue_.size() >= options_.max_queued_requests ||
      queued_bytes_ + payload.size() > options_.max_queued_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request queue to ", address_.ToString(), " is full (",
                     queue_.size(), " requests, ", queued_bytes_, " bytes)"));
  }
  PeerRequestOptions resolved = options;
  resolved.deadline = ResolveDeadline(options.deadline);
  if (resolved.deadline <= loop_.Now()) {
    return absl::DeadlineExceededError("request deadline has already passed");
  }
  ++stats_.requests;
  Pending p{std::move(payload), resolved, std::move(done), false};
  // The fast path: straight onto an open connection with nothing ahead of
  // it. Events are not processed here, so no callback runs inside Request.
  if (queue_.empty() && connection_ != nullptr && !in_pump_ && Submit(p).ok()) {
    // Written at the end of the turn, with whatever else the turn sends:
    // one write for a batch of requests, not one each.
    ScheduleFlush();
    return absl::OkStatus();
  }
  queued_bytes_ += p.payload.size();
  queue_.push_back(std::move(p));
  SchedulePump();
  return absl::OkStatus();
}

absl::Status Peer::SendOneWay(uint64_t endpoint, std::string payload) {
  if (state_ == PeerState::kClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("peer ", address_.ToString(), " is closed"));
  }
  if (queue_.size() >= options_.max_queued_requests ||
      queued_bytes_ + payload.size() > options_.max_queued_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request queue to ", address_.ToString(), " is full"));
  }
  PeerRequestOptions options;
  options.endpoint = endpoint;
  options.deadline = ResolveDeadline(absl::InfiniteFuture());
  queued_bytes_ += payload.size();
  queue_.push_back(Pending{std::move(payload), options, nullptr, false});
  SchedulePump();
  return absl::OkStatus();
}

absl::Status Peer::Submit(Pending& p) {
  if (!p.done) {
    return connection_->SendOneWay(p.options.endpoint, p.payload);
  }
  protocol::RequestOptions options;
  options.deadline = p.options.deadline;
  options.idempotent = p.options.idempotent;
  options.endpoint = p.options.endpoint;
  absl::StatusOr<CorrelationId> id =
      connection_->SendRequest(p.payload, options, loop_.Now());
  if (!id.ok()) return id.status();
  in_flight_.emplace(id->value(), std::move(p));
  return absl::OkStatus();
}

void Peer::SubmitQueued() {
  while (!queue_.empty() && connection_ != nullptr &&
         state_ != PeerState::kClosed) {
    Pending& p = queue_.front();
    const size_t bytes = p.payload.size();
    absl::Status s = Submit(p);
    if (s.code() == absl::StatusCode::kDeadlineExceeded) {
      // Expired while queued: ExpireQueued reports it with the right code.
      break;
    }
    if (!s.ok()) break;  // closing, or the connection's bounds: wait
    queued_bytes_ -= bytes;
    queue_.pop_front();
    if (retry_position_ > 0) --retry_position_;
  }
}

void Peer::Complete(Pending& p, absl::StatusOr<absl::string_view> outcome) {
  if (!p.done) return;
  ReplyCallback done = std::move(p.done);
  done(std::move(outcome));
}

// ---- Connecting ----

void Peer::StartConnect() {
  state_ = PeerState::kConnecting;
  ++stats_.connect_attempts;
  absl::StatusOr<std::unique_ptr<Stream>> stream = loop_.Connect(
      address_,
      [this](absl::Status status) { OnConnected(std::move(status)); });
  if (!stream.ok()) {
    ScheduleReconnect(stream.status());
    return;
  }
  stream_ = std::move(*stream);
  connect_deadline_ = loop_.Now() + options_.connect_timeout;
  ArmTimer();
}

void Peer::OnConnected(absl::Status status) {
  connect_deadline_ = absl::InfiniteFuture();
  if (!status.ok()) {
    stream_.reset();
    ScheduleReconnect(status);
    return;
  }
  ++stats_.connections;
  state_ = PeerState::kConnected;
  connected_at_ = loop_.Now();
  connection_ =
      std::make_unique<protocol::Connection>(options_.connection, loop_.Now());
  handoff_.Reset();
  stream_->SetHandler(this);
  if (absl::Status s = stream_->StartReading(); !s.ok()) {
    connection_->OnTransportClosed(s, loop_.Now());
  }
  Pump();
}

void Peer::ScheduleReconnect(const absl::Status& why) {
  last_error_ = why;
  if (state_ == PeerState::kClosed) return;
  state_ = PeerState::kBackingOff;
  const BackoffOptions& b = options_.backoff;
  absl::Duration delay = b.initial;
  for (int i = 0; i < backoff_attempts_ && delay < b.max; ++i) {
    delay *= b.multiplier;
  }
  delay = std::min(delay, b.max);
  // A factor in [1 - jitter, 1 + jitter] from the loop's seeded source.
  const double unit =
      static_cast<double>(loop_.Random() >> 11) * 0x1.0p-53;  // [0, 1)
  delay *= 1.0 + b.jitter * (2.0 * unit - 1.0);
  ++backoff_attempts_;
  reconnect_at_ = loop_.Now() + delay;
  ArmTimer();
}

// ---- Pumping ----

void Peer::SchedulePump() {
  // A timer of our own rather than Loop::Post: a posted callback cannot be
  // cancelled, and it would outlive a Peer destroyed before it runs.
  if (state_ == PeerState::kClosed || pump_timer_->active()) return;
  pump_timer_->Start(loop_.Now());
}

void Peer::Pump() {
  if (in_pump_) {
    repump_ = true;
    return;
  }
  in_pump_ = true;
  do {
    repump_ = false;
    if (connection_ == nullptr) break;
    retry_position_ = 0;
    bool closed = false;
    while (connection_ != nullptr && state_ != PeerState::kClosed) {
      std::optional<protocol::Event> event = connection_->NextEvent();
      if (!event.has_value()) break;
      if (std::holds_alternative<protocol::Closed>(*event)) closed = true;
      HandleEvent(*event);
    }
    if (state_ == PeerState::kClosed) {
      // Close() ran inside a callback; finish it here, outside the loop.
      stream_.reset();
      connection_.reset();
      break;
    }
    if (closed) {
      TearDown();
      break;
    }
    SubmitQueued();
    Flush();
    if (connection_->WantsClose() && handoff_.handed_off() == 0 &&
        connection_->PendingOutput().empty()) {
      // Both sides are done (a Goodbye was exchanged): close our end.
      stream_->Close();
      connection_->OnTransportClosed(absl::OkStatus(), loop_.Now());
      repump_ = true;
    }
  } while (repump_);
  in_pump_ = false;
  ArmTimer();
}

void Peer::HandleEvent(protocol::Event& event) {
  if (std::holds_alternative<protocol::HandshakeDone>(event)) {
    ++stats_.handshakes;
  } else if (auto* reply = std::get_if<protocol::ReplyReceived>(&event)) {
    auto it = in_flight_.find(reply->id.value());
    if (it == in_flight_.end()) return;
    Pending p = std::move(it->second);
    in_flight_.erase(it);
    ++stats_.replies;
    if (reply->status.ok()) {
      Complete(p, reply->payload);
    } else {
      Complete(p, reply->status);
    }
  } else if (auto* failed = std::get_if<protocol::RequestFailed>(&event)) {
    auto it = in_flight_.find(failed->id.value());
    if (it == in_flight_.end()) return;
    Pending p = std::move(it->second);
    in_flight_.erase(it);
    const absl::StatusCode code = failed->status.code();
    if (code == absl::StatusCode::kDeadlineExceeded ||
        code == absl::StatusCode::kFailedPrecondition ||
        !protocol::SafeToRetry(*failed) || p.options.deadline <= loop_.Now()) {
      ++stats_.failures;
      Complete(p, failed->status);
      return;
    }
    // Not processed, never sent, or idempotent: send it again on the next
    // connection, ahead of requests that were never sent.
    p.written |= failed->delivery == protocol::Delivery::kMaybeDelivered;
    ++stats_.retries;
    queued_bytes_ += p.payload.size();
    queue_.insert(queue_.begin() + static_cast<ptrdiff_t>(retry_position_++),
                  std::move(p));
  } else if (auto* request = std::get_if<protocol::RequestReceived>(&event)) {
    (void)connection_->SendErrorReply(
        request->request.correlation_id,
        absl::UnimplementedError("a client Peer serves no requests"));
  } else if (auto* closed = std::get_if<protocol::Closed>(&event)) {
    if (!closed->status.ok()) last_error_ = closed->status;
  }
  // OneWayReceived and GoodbyeReceived need nothing here: the connection
  // refuses new requests after a Goodbye, and they wait for the next one.
}

void Peer::Flush() {
  if (connection_ == nullptr || stream_ == nullptr) return;
  absl::Status s =
      handoff_.Flush(*connection_, *stream_, options_.stream_high_water_bytes);
  if (!s.ok()) {
    connection_->OnTransportClosed(std::move(s), loop_.Now());
    repump_ = true;
    SchedulePump();
  }
}

void Peer::TearDown() {
  const protocol::ConnectionStats s = connection_->stats();
  stats_.keepalive_timeouts += s.keepalive_timeouts;
  const protocol::ProtocolErrors& e = s.protocol_errors;
  stats_.protocol_errors += e.corrupt_frames + e.malformed_frames +
                            e.oversized_frames + e.handshake_failures +
                            e.unexpected_frames + e.ping_floods;
  if (loop_.Now() - connected_at_ >= options_.backoff.reset_after) {
    backoff_attempts_ = 0;
  }
  absl::Status why = connection_->close_status();
  stream_.reset();
  connection_.reset();
  handoff_.Reset();
  ScheduleReconnect(why.ok() ? absl::UnavailableError("connection closed "
                                                      "gracefully by the peer")
                             : why);
}

// ---- Time ----

void Peer::ArmTimer() {
  if (state_ == PeerState::kClosed) {
    timer_->Stop();
    return;
  }
  absl::Time t = std::min(reconnect_at_, connect_deadline_);
  if (connection_ != nullptr) t = std::min(t, connection_->NextWakeup());
  for (const Pending& p : queue_) t = std::min(t, p.options.deadline);
  if (t == absl::InfiniteFuture()) {
    timer_->Stop();
  } else {
    timer_->Start(t);
  }
}

void Peer::ExpireQueued(absl::Time now) {
  std::vector<Pending> expired;
  for (size_t i = 0; i < queue_.size();) {
    if (queue_[i].options.deadline <= now) {
      queued_bytes_ -= queue_[i].payload.size();
      expired.push_back(std::move(queue_[i]));
      queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  for (Pending& p : expired) {
    ++stats_.failures;
    if (p.written || state_ == PeerState::kConnected) {
      Complete(p, absl::DeadlineExceededError(
                      absl::StrCat("request to ", address_.ToString(),
                                   " reached its deadline before it could be ",
                                   p.written ? "answered" : "written")));
    } else {
      Complete(p, absl::UnavailableError(absl::StrCat(
                      "peer ", address_.ToString(),
                      " stayed unreachable until the request's deadline (",
                      last_error_.message(), ")")));
    }
  }
}

void Peer::OnTimer() {
  const absl::Time now = loop_.Now();
  if (state_ == PeerState::kConnecting && now >= connect_deadline_) {
    connect_deadline_ = absl::InfiniteFuture();
    stream_.reset();
    ScheduleReconnect(absl::UnavailableError(
        absl::StrCat("connect to ", address_.ToString(), " timed out after ",
                     absl::FormatDuration(options_.connect_timeout))));
  }
  if (state_ == PeerState::kBackingOff && now >= reconnect_at_) {
    reconnect_at_ = absl::InfiniteFuture();
    StartConnect();
  }
  if (connection_ != nullptr) connection_->AdvanceTime(now);
  ExpireQueued(now);
  Pump();
}

// ---- Stream events ----

absl::Span<char> Peer::ReadBuffer(size_t suggested) {
  return connection_->PrepareReceive(suggested);
}

void Peer::OnRead(size_t n) {
  connection_->CommitReceive(n, loop_.Now());
  Pump();
}

void Peer::OnReadEnd(absl::Status status) {
  connection_->OnTransportClosed(std::move(status), loop_.Now());
  Pump();
}

void Peer::OnWritten(size_t n) {
  handoff_.OnWritten(*connection_, n);
  Pump();
}

void Peer::OnWriteError(absl::Status status) {
  connection_->OnTransportClosed(std::move(status), loop_.Now());
  Pump();
}

// ---- Closing ----

void Peer::Close() {
  if (state_ == PeerState::kClosed) return;
  state_ = PeerState::kClosed;
  timer_->Stop();
  pump_timer_->Stop();
  if (connection_ != nullptr && !in_pump_) {
    (void)connection_->SendGoodbye("client closed");
    Flush();
  }
  std::vector<Pending> pending;
  pending.reserve(queue_.size() + in_flight_.size());
  // In id order, so that outcomes are delivered deterministically.
  std::vector<std::pair<uint64_t, Pending*>> flying;
  for (auto& [id, p] : in_flight_) flying.push_back({id, &p});
  std::sort(flying.begin(), flying.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, p] : flying) pending.push_back(std::move(*p));
  for (Pending& p : queue_) pending.push_back(std::move(p));
  in_flight_.clear();
  queue_.clear();
  queued_bytes_ = 0;
  if (!in_pump_) {
    stream_.reset();
    connection_.reset();
  }
  for (Pending& p : pending) {
    ++stats_.failures;
    Complete(p, absl::CancelledError(
                    absl::StrCat("peer ", address_.ToString(), " was closed")));
  }
}

}  // namespace moonpool::driver
