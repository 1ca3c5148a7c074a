#include "moonpool/driver/connection_driver.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "moonpool/driver/buggify_sites.h"

namespace moonpool::driver {
namespace {

// The connection's options with the loop's Buggify decision (unless the
// owner gave its own), and a Buggify site's slice bound.
ConnectionDriverOptions WithLoop(ConnectionDriverOptions o, Loop& loop) {
  if (!o.connection.buggify) o.connection.buggify = BuggifyFunction(loop);
  if (!o.connection.always) o.connection.always = AlwaysFunction(loop);
  if (loop.Buggify(buggify_sites::kSmallSlices)) {
    o.stream_high_water_bytes = 64;
  }
  return o;
}

}  // namespace

uint64_t TotalProtocolErrors(const protocol::ProtocolErrors& e) {
  return e.corrupt_frames + e.malformed_frames + e.oversized_frames +
         e.handshake_failures + e.unexpected_frames + e.ping_floods +
         e.credit_overruns;
}

ConnectionDriver::ConnectionDriver(Loop& loop, std::unique_ptr<Stream> stream,
                                   ConnectionDriverOptions options,
                                   ConnectionHandler& handler)
    : loop_(loop),
      handler_(handler),
      options_(WithLoop(std::move(options), loop)),
      stream_(std::move(stream)),
      peer_address_(stream_->peer_address()),
      connection_(options_.connection, loop.Now()),
      timer_(loop.CreateTimer([this] { OnTimer(); })),
      last_activity_(loop.Now()) {}

ConnectionDriver::~ConnectionDriver() {
  if (pump_at_turn_end_) loop_.CancelTurnEnd(this);
  stream_->Close();
}

void ConnectionDriver::Start(bool pump_now) {
  stream_->SetHandler(this);
  if (absl::Status s = stream_->StartReading(); !s.ok()) {
    write_broken_ = true;
    TransportClosed(std::move(s));
  }
  if (pump_now) {
    Pump();
  } else {
    PumpSoon();
  }
}

ConnectionDriverStats ConnectionDriver::stats() const {
  ConnectionDriverStats s;
  s.connection = connection_.stats();
  s.protocol_errors = TotalProtocolErrors(s.connection.protocol_errors);
  s.read_timeouts = read_timeouts_;
  s.idle_timeouts = idle_timeouts_;
  s.pauses = pauses_;
  return s;
}

// ---- Commands ----

absl::StatusOr<CorrelationId> ConnectionDriver::SendRequest(
    absl::string_view payload, const protocol::RequestOptions& options) {
  absl::StatusOr<CorrelationId> id =
      connection_.SendRequest(payload, options, loop_.Now());
  if (id.ok()) Sent();
  return id;
}

absl::Status ConnectionDriver::SendOneWay(Endpoint endpoint,
                                          absl::string_view payload) {
  absl::Status s = connection_.SendOneWay(endpoint, payload);
  if (s.ok()) Sent();
  return s;
}

absl::Status ConnectionDriver::SendReply(CorrelationId id,
                                         absl::string_view payload) {
  return Answered(connection_.SendReply(id, payload));
}

absl::Status ConnectionDriver::SendErrorReply(CorrelationId id,
                                              const absl::Status& status) {
  return Answered(connection_.SendErrorReply(id, status));
}

absl::Status ConnectionDriver::SendStreamItem(CorrelationId id,
                                              absl::string_view payload) {
  absl::Status s = connection_.SendStreamItem(id, payload);
  if (s.ok()) Sent();
  return s;
}

absl::Status ConnectionDriver::SendStreamEnd(CorrelationId id) {
  return Answered(connection_.SendStreamEnd(id));
}

absl::Status ConnectionDriver::GrantCredit(CorrelationId id, uint64_t bytes) {
  absl::Status s = connection_.GrantCredit(id, bytes);
  if (s.ok() && bytes > 0) Sent();
  return s;
}

absl::Status ConnectionDriver::AbandonRequest(CorrelationId id) {
  return Answered(connection_.AbandonRequest(id));
}

absl::Status ConnectionDriver::CancelRequest(CorrelationId id) {
  absl::Status s = connection_.CancelRequest(id);
  if (s.ok()) Sent();
  return s;
}

absl::Status ConnectionDriver::Answered(absl::Status status) {
  if (status.ok()) {
    --serving_;
    Sent();
  }
  return status;
}

void ConnectionDriver::Sent() {
  NoteActivity();
  // Written at the end of the turn with everything else the turn sends;
  // the pump then also notices a finished drain or a lifted bound.
  PumpAtTurnEnd();
}

absl::Status ConnectionDriver::SendGoodbye(absl::string_view reason) {
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError("the connection is closing");
  }
  absl::Status s = connection_.SendGoodbye(reason);
  if (!s.ok()) return s;
  if (paused_) {
    // No new request can arrive now: read freely so the protocol can end.
    paused_ = false;
    if (absl::Status r = stream_->StartReading(); !r.ok()) {
      TransportClosed(std::move(r));
    }
  }
  PumpSoon();
  return absl::OkStatus();
}

void ConnectionDriver::Resume() {
  if (state_ != State::kOpen || !paused_) return;
  paused_ = false;
  if (absl::Status s = stream_->StartReading(); !s.ok()) {
    TransportClosed(std::move(s));
  }
  grace_until_ = loop_.Now() + options_.connection.keepalive_timeout;
  PumpSoon();
}

void ConnectionDriver::Close() {
  if (state_ == State::kClosed) return;
  // What the kernel takes now (a Goodbye the owner just sent) still goes.
  if (state_ == State::kOpen && !in_pump_ && !transport_closed_) Flush();
  state_ = State::kClosed;
  timer_->Stop();
  if (pump_at_turn_end_) {
    pump_at_turn_end_ = false;
    loop_.CancelTurnEnd(this);
  }
  stream_->Close();
}

// ---- Stream events ----

absl::Span<char> ConnectionDriver::ReadBuffer(size_t suggested) {
  if (state_ != State::kOpen) {
    // Lingering: what arrives is not the protocol's any more. Allocated
    // only now, so an open connection does not pay for it.
    if (discard_ == nullptr) discard_ = std::make_unique<char[]>(kDiscardBytes);
    return absl::MakeSpan(discard_.get(), kDiscardBytes);
  }
  return connection_.PrepareReceive(suggested);
}

void ConnectionDriver::OnRead(size_t n) {
  if (state_ != State::kOpen) return;  // lingering: discarded
  grace_until_ = absl::InfinitePast();
  if (partial_since_ == absl::InfiniteFuture()) partial_since_ = loop_.Now();
  connection_.CommitReceive(n, loop_.Now());
  Pump();
}

void ConnectionDriver::OnReadEnd(absl::Status status) {
  read_ended_ = true;
  if (!status.ok()) write_broken_ = true;
  if (state_ == State::kOpen) TransportClosed(std::move(status));
  Pump();
}

void ConnectionDriver::OnWritten(size_t n) {
  handoff_.OnWritten(connection_, n);
  Pump();
}

void ConnectionDriver::OnWriteError(absl::Status status) {
  write_broken_ = true;
  if (state_ == State::kOpen) TransportClosed(std::move(status));
  Pump();
}

void ConnectionDriver::TransportClosed(absl::Status why) {
  if (transport_closed_) return;
  transport_closed_ = true;
  connection_.OnTransportClosed(std::move(why), loop_.Now());
}

// ---- Pumping ----

void ConnectionDriver::PumpAtTurnEnd() {
  if (pump_at_turn_end_ || state_ == State::kClosed) return;
  pump_at_turn_end_ = true;
  loop_.ScheduleTurnEnd(this);
}

void ConnectionDriver::OnTurnEnd() {
  pump_at_turn_end_ = false;
  if (!delayed_once_ && loop_.Buggify(buggify_sites::kFlushNextTurn)) {
    delayed_once_ = true;  // one turn, not forever
    PumpAtTurnEnd();
    return;
  }
  delayed_once_ = false;
  Pump();
}

void ConnectionDriver::PumpSoon() {
  if (state_ != State::kClosed) timer_->Start(loop_.Now());
}

void ConnectionDriver::Pump() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kLingering) {
    Linger();
    return;
  }
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
      // Once the socket is gone, take what is left regardless: nothing
      // more can arrive, and the Closed event must come out.
      if (!transport_closed_ && !handler_.CanTakeEvent()) {
        Pause();
        break;
      }
      std::optional<protocol::Event> event = connection_.NextEvent();
      if (!event.has_value()) break;
      if (auto* c = std::get_if<protocol::Closed>(&*event)) {
        close_status_ = std::move(c->status);
        closed = true;
        break;
      }
      if (std::holds_alternative<protocol::RequestReceived>(*event)) {
        ++serving_;
        NoteActivity();
      } else if (std::holds_alternative<protocol::OneWayReceived>(*event)) {
        NoteActivity();
      }
      handler_.OnEvent(*event);
      if (state_ == State::kClosed) {  // the owner closed us in the call
        in_pump_ = false;
        return;
      }
    }
    if (closed) break;
    handler_.OnPumped();
    if (state_ == State::kClosed) {
      in_pump_ = false;
      return;
    }
    Flush();
    handler_.OnFlushed();
    if (state_ == State::kClosed) {
      in_pump_ = false;
      return;
    }
    if (!shutdown_ && connection_.WantsClose() && handoff_.handed_off() == 0 &&
        connection_.PendingOutput().empty() && !transport_closed_) {
      // Goodbye exchanged and everything answered and written: FIN, then
      // wait (bounded) for the peer's. Closing with its bytes unread (a
      // request that crossed our Goodbye) would reset the connection, and
      // the reset could overtake the Goodbye it has not read yet.
      // Longer than the peer's keepalive would wait for us: a stall it
      // survives must not turn into a reset; a peer that never closes is
      // cut after that.
      shutdown_ = true;
      stream_->Shutdown();
      linger_until_ =
          loop_.Now() + std::max(options_.close_linger,
                                 3 * options_.connection.keepalive_timeout);
    }
    // Whatever came since (a pong to a late ping) cannot be written after
    // our FIN: the wait is over at linger_until_ either way.
    if (shutdown_ && !transport_closed_ && loop_.Now() >= linger_until_) {
      stream_->Close();
      write_broken_ = true;
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
    Linger();  // may end in OnClosed: nothing may follow it here
    return;
  }
  ArmTimer();
}

void ConnectionDriver::Flush() {
  // After our FIN nothing more is written (a pong to a late ping is moot).
  if (transport_closed_ || shutdown_) return;
  const size_t first_slice = handoff_.handed_off() == 0 &&
                                     !connection_.PendingOutput().empty() &&
                                     loop_.Buggify(buggify_sites::kSplitWrite)
                                 ? 1
                                 : SIZE_MAX;
  absl::Status s = handoff_.Flush(
      connection_, *stream_, options_.stream_high_water_bytes, first_slice);
  if (s.ok()) return;
  write_broken_ = true;
  TransportClosed(std::move(s));
  if (in_pump_) {
    repump_ = true;
  } else {
    PumpSoon();
  }
}

void ConnectionDriver::Pause() {
  if (paused_) return;
  paused_ = true;
  partial_since_ = absl::InfiniteFuture();  // not timed while we hold it
  stream_->StopReading();
  ++pauses_;
}

// ---- Closing ----

void ConnectionDriver::Linger() {
  if (state_ == State::kOpen) {
    state_ = State::kLingering;
    timer_->Stop();
    // Only a peer that reads (nothing of ours waits in the stream) is worth
    // lingering for: what the protocol queued last (the Hello that names
    // our versions, a Goodbye) then reaches it.
    if (write_broken_ || shutdown_ || handoff_.handed_off() > 0 ||
        connection_.PendingOutput().empty()) {
      Finish();
      return;
    }
    linger_until_ = loop_.Now() + options_.close_linger;
    timer_->Start(linger_until_);
    if (paused_) {
      paused_ = false;
      (void)stream_->StartReading();  // read and discard until the peer's FIN
    }
  }
  if (write_broken_ || loop_.Now() >= linger_until_) {
    Finish();
    return;
  }
  if (handoff_.handed_off() == 0 && !connection_.PendingOutput().empty()) {
    absl::Status s = handoff_.Flush(connection_, *stream_,
                                    std::numeric_limits<size_t>::max());
    if (!s.ok()) {
      Finish();
      return;
    }
  }
  if (handoff_.handed_off() == 0 && connection_.PendingOutput().empty()) {
    // All written: FIN, then wait for the peer's, so that closing with its
    // bytes unread does not reset the connection before it reads ours.
    if (!shutdown_) {
      shutdown_ = true;
      stream_->Shutdown();
    }
    if (read_ended_) Finish();
  }
}

void ConnectionDriver::Finish() {
  state_ = State::kClosed;
  timer_->Stop();
  if (pump_at_turn_end_) {
    pump_at_turn_end_ = false;
    loop_.CancelTurnEnd(this);
  }
  stream_->Close();
  handler_.OnClosed(close_status_);  // last: the owner may retire us
}

// ---- Time ----

absl::Time ConnectionDriver::TimeoutAt() const {
  absl::Time t = partial_since_ + options_.read_timeout;
  if (serving_ == 0 && connection_.stats().requests_in_flight == 0 &&
      !idle_closing_) {
    t = std::min(t, last_activity_ + options_.idle_timeout);
  }
  return t;
}

void ConnectionDriver::ArmTimer() {
  if (state_ != State::kOpen) return;
  if (paused_) {
    timer_->Stop();
    return;
  }
  absl::Time t =
      std::min(std::max(connection_.NextWakeup(), grace_until_), TimeoutAt());
  if (shutdown_ && !transport_closed_) t = std::min(t, linger_until_);
  if (t == absl::InfiniteFuture()) {
    timer_->Stop();
  } else {
    timer_->Start(t);
  }
}

void ConnectionDriver::CheckTimeouts(absl::Time now) {
  if (transport_closed_) return;
  if (now >= partial_since_ + options_.read_timeout) {
    ++read_timeouts_;
    TransportClosed(absl::DeadlineExceededError(absl::StrCat(
        "no whole frame from ", peer_address_.ToString(), " within ",
        absl::FormatDuration(options_.read_timeout), " (read timeout)")));
  } else if (serving_ == 0 && connection_.stats().requests_in_flight == 0 &&
             !idle_closing_ && now >= last_activity_ + options_.idle_timeout) {
    ++idle_timeouts_;
    idle_closing_ = true;
    if (!connection_.SendGoodbye("idle timeout").ok()) {
      TransportClosed(absl::DeadlineExceededError(absl::StrCat(
          "idle for ", absl::FormatDuration(options_.idle_timeout))));
    }
  }
}

void ConnectionDriver::OnTimer() {
  if (state_ == State::kLingering) {
    Linger();
    return;
  }
  const absl::Time now = loop_.Now();
  if (!paused_ && now >= grace_until_) connection_.AdvanceTime(now);
  if (!paused_) CheckTimeouts(now);
  Pump();
}

}  // namespace moonpool::driver
