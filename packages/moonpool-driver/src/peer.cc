#include "moonpool/driver/peer.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "moonpool/driver/buggify_sites.h"
#include "moonpool/driver/tls_stream.h"

#ifdef MOONPOOL_PLANTED_BUGS
#include "moonpool_planted.h"
#endif

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

Peer::Peer(Loop& loop, HostPort target, PeerOptions options)
    : loop_(loop),
      address_(std::move(target)),
      current_(address_.literal().value_or(Address())),
      options_(std::move(options)) {
  options_.connection.role = protocol::Role::kClient;
  ids_ = options_.ids != nullptr ? options_.ids : &own_ids_;
  options_.connection.ids = &ids_->generator();
  if (options_.connection.incarnation == 0) options_.connection.incarnation = 1;
  timer_ = loop_.CreateTimer([this] { OnTimer(); });
  pump_timer_ = loop_.CreateTimer([this] {
    SubmitQueued();
    ArmTimer();
  });
  reap_timer_ = loop_.CreateTimer([this] { retired_.reset(); });
  StartConnect();
}

Peer::~Peer() {
  Close();
  retired_.reset();
  driver_.reset();
}

absl::Time Peer::ResolveDeadline(absl::Time deadline) const {
  return deadline == absl::InfiniteFuture()
             ? loop_.Now() + options_.connection.default_request_timeout
             : deadline;
}

// ---- Requests ----

absl::StatusOr<PeerRequestId> Peer::Request(std::string payload,
                                            const PeerRequestOptions& options,
                                            ReplyCallback done) {
  PeerRequestOptions unary = options;
  unary.stream_credit = 0;
  return Enqueue(
      Pending{std::move(payload), unary, std::move(done), false, 0, {}, false});
}

absl::StatusOr<PeerRequestId> Peer::RequestStream(
    std::string payload, const PeerRequestOptions& options,
    StreamItemCallback on_item, ReplyCallback done) {
  if (options.stream_credit == 0) {
    return absl::InvalidArgumentError(
        "a reply stream needs a positive stream_credit (its window)");
  }
  if (options.exactly_once) {
    return absl::InvalidArgumentError(
        "a reply stream cannot be exactly-once: the server records one "
        "outcome, not a stream of items");
  }
  return Enqueue(Pending{std::move(payload), options, std::move(done), false, 0,
                         std::move(on_item), false});
}

absl::StatusOr<PeerRequestId> Peer::Enqueue(Pending p) {
  const PeerRequestOptions& options = p.options;
  const std::string& payload = p.payload;
  if (state_ == PeerState::kClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("peer ", address_.ToString(), " is closed"));
  }
  if (queue_.size() + resend_.size() >= options_.max_queued_requests ||
      queued_bytes_ + payload.size() > options_.max_queued_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request queue to ", address_.ToString(), " is full (",
                     queue_.size() + resend_.size(), " requests, ",
                     queued_bytes_, " bytes)"));
  }
  const absl::Time deadline = ResolveDeadline(options.deadline);
  if (deadline <= loop_.Now()) {
    return absl::DeadlineExceededError("request deadline has already passed");
  }
  if (unreachable_ && !options.wait_for_ready) {
    return absl::UnavailableError(
        absl::StrCat("peer ", address_.ToString(),
                     " is unreachable and the request does not wait for "
                     "ready (",
                     last_error_.message(), ")"));
  }
  ++stats_.requests;
  const PeerRequestId id(++last_request_id_);
  p.options.deadline = deadline;
  p.id = id.value();
  // The fast path: straight onto an open connection with nothing ahead of
  // it. Events are not processed here, so no callback runs inside Request.
  if (queue_.empty() && resend_.empty() && driver_ != nullptr &&
      !loop_.Buggify(buggify_sites::kQueueFirst) && Submit(p).ok()) {
    // The driver writes it at the end of the turn, with whatever else the
    // turn sends: one write for a batch of requests, not one each.
    return id;
  }
  queued_bytes_ += p.payload.size();
  queue_.push_back(std::move(p));
  SchedulePump();
  return id;
}

void Peer::Cancel(PeerRequestId id) {
  if (id.value() == 0) return;
  if (auto ids = in_flight_ids_.find(id.value()); ids != in_flight_ids_.end()) {
    const CorrelationId correlation(ids->second);
    in_flight_ids_.erase(ids);
    auto it = in_flight_.find(correlation.value());
    if (it == in_flight_.end()) return;
    // Moved out first: destroying the callback may run arbitrary code (a
    // promise's destructor), which must not see the table mid-erase.
    Pending p = std::move(it->second);
    in_flight_.erase(it);
    EndRequest(p);
    ++stats_.cancelled_in_flight;
    // NotFound only if the protocol already forgot it, which it reports
    // through an event we have not yet taken: nothing to do either way.
    if (driver_ != nullptr) (void)driver_->CancelRequest(correlation);
    return;
  }
  for (auto it = resend_.begin(); it != resend_.end(); ++it) {
    if (it->second.id != id.value()) continue;
    Pending p = std::move(it->second);
    resend_.erase(it);
    queued_bytes_ -= p.payload.size();
    EndRequest(p);
    ++stats_.cancelled_queued;
    ArmTimer();
    return;
  }
  for (size_t i = 0; i < queue_.size(); ++i) {
    if (queue_[i].id != id.value()) continue;
    Pending p = std::move(queue_[i]);
    queued_bytes_ -= p.payload.size();
    queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(i));
    if (i < retry_position_) --retry_position_;
    EndRequest(p);
    ++stats_.cancelled_queued;
    ArmTimer();
    return;
  }
}

absl::Status Peer::SendOneWay(Endpoint endpoint, std::string payload) {
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
  queue_.push_back(
      Pending{std::move(payload), options, nullptr, false, 0, {}, false});
  SchedulePump();
  return absl::OkStatus();
}

absl::Status Peer::Submit(Pending& p) {
  if (!handshaken_ && options_.tls != nullptr) {
    // In TLS 1.3 the server checks the client's certificate (or its
    // absence, when it requires one) after the client's handshake has
    // ended, and refuses with an alert on the next read. Until the server's
    // Hello shows it did not, nothing is written, so a refusal leaves the
    // requests queued and the attempt failed with the alert's reason, never
    // "maybe delivered". One round trip per connection, not per request.
    return absl::FailedPreconditionError(
        "over TLS, requests wait for the server's Hello");
  }
  if (!p.done) return driver_->SendOneWay(p.options.endpoint, p.payload);
  protocol::RequestOptions options;
  options.deadline = p.options.deadline;
  options.idempotent = p.options.idempotent;
  options.endpoint = p.options.endpoint;
  options.stream_credit = p.options.stream_credit;
  if (p.options.exactly_once) {
    // Needs the server's Hello: its version says whether the flag means
    // anything, and its incarnation is the one a resend must find again.
    if (!handshaken_) {
      return absl::FailedPreconditionError(
          "an exactly-once request waits for the server's Hello");
    }
    options.exactly_once = version_ >= wire::kProtocolVersion2;
    options.id = p.correlation;  // valid for a resend
  }
  options.answered_below = ids_->AnsweredBelow();
  absl::StatusOr<CorrelationId> id = driver_->SendRequest(p.payload, options);
  if (!id.ok()) return id.status();
  if (options.exactly_once && !p.correlation.valid()) {
    p.correlation = *id;
    p.server_incarnation = server_incarnation_;
    ids_->AddUnsettled(*id);
  }
  in_flight_ids_.emplace(p.id, id->value());
  in_flight_.emplace(id->value(), std::move(p));
  return absl::OkStatus();
}

bool Peer::SubmitResends() {
  while (!resend_.empty()) {
    if (driver_ == nullptr || state_ == PeerState::kClosed || !handshaken_) {
      return false;
    }
    auto it = resend_.begin();
    Pending& p = it->second;
    if (version_ < wire::kProtocolVersion2 ||
        p.server_incarnation != server_incarnation_) {
      Pending gone = std::move(p);
      resend_.erase(it);
      queued_bytes_ -= gone.payload.size();
      ++stats_.failures;
      ++stats_.exactly_once_aborted;
      Complete(gone, absl::AbortedError(absl::StrCat(
                         "exactly-once request ", gone.correlation.ToString(),
                         " to ", address_.ToString(),
                         " may have been delivered: the server that kept its "
                         "record is gone (incarnation ",
                         absl::Hex(gone.server_incarnation), ", now ",
                         absl::Hex(server_incarnation_), ", version ", version_,
                         ")")));
      continue;
    }
    const size_t bytes = p.payload.size();
    absl::Status s = Submit(p);
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      // Its id is not above one already sent on this connection, which the
      // hold in SubmitQueued rules out; fail it rather than loop.
      Pending gone = std::move(p);
      resend_.erase(it);
      queued_bytes_ -= bytes;
      ++stats_.failures;
      ++stats_.exactly_once_aborted;
      Complete(gone, absl::AbortedError(absl::StrCat(
                         "exactly-once request ", gone.correlation.ToString(),
                         " may have been delivered and could not be sent "
                         "again: ",
                         s.message())));
      continue;
    }
    if (!s.ok()) return false;  // its deadline (ExpireQueued), or no room
    // Submit moved the request into in_flight_.
    resend_.erase(it);
    queued_bytes_ -= bytes;
    ++stats_.resent_exactly_once;
  }
  return true;
}

void Peer::SubmitQueued() {
  // Requests to send again with their first ids go before anything that
  // would take a higher one.
  if (!SubmitResends()) return;
  while (!queue_.empty() && driver_ != nullptr &&
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

void Peer::EndRequest(Pending& p) {
  if (p.correlation.valid()) ids_->Settle(p.correlation);
  if (options_.buffers != nullptr) options_.buffers->Give(std::move(p.payload));
}

void Peer::Complete(Pending& p, absl::StatusOr<absl::string_view> outcome) {
  EndRequest(p);
  if (!p.done) return;
  ReplyCallback done = std::move(p.done);
  done(std::move(outcome));
}

// ---- Connecting ----

void Peer::StartConnect() {
  state_ = PeerState::kConnecting;
  candidates_.clear();
  next_candidate_ = 0;
  if (address_.is_literal()) {
    candidates_.push_back(*address_.literal());
    ConnectNext();
    return;
  }
  // A name: looked up again on every attempt, so a server that moved is
  // found on the next reconnect (no cache here; the system's resolver has
  // its own).
  ++stats_.resolutions;
  absl::StatusOr<std::unique_ptr<Resolution>> r =
      loop_.Resolve(address_.host(), address_.port(),
                    [this](absl::StatusOr<std::vector<Address>> addresses) {
                      OnResolved(std::move(addresses));
                    });
  if (!r.ok()) {
    ++stats_.resolve_failures;
    ScheduleReconnect(r.status());
    return;
  }
  resolving_ = std::move(*r);
  // Bounded like a connect, and (OnTimer) never past a queued request's
  // deadline: a lookup still running when the request it was for gives up
  // would leave that request's Unavailable without a reason.
  connect_deadline_ = loop_.Now() + options_.connect_timeout;
  ArmTimer();
}

void Peer::OnResolved(absl::StatusOr<std::vector<Address>> addresses) {
  // Destroying the handle inside its own callback is allowed (loop.h).
  resolving_.reset();
  connect_deadline_ = absl::InfiniteFuture();
  if (!addresses.ok()) {
    ++stats_.resolve_failures;
    ScheduleReconnect(addresses.status());
    return;
  }
  candidates_ = std::move(*addresses);
  next_candidate_ = 0;
  ConnectNext();
}

void Peer::ConnectNext() {
  current_ = candidates_[next_candidate_++];
  ++stats_.connect_attempts;
  absl::StatusOr<std::unique_ptr<Stream>> stream = loop_.Connect(
      current_,
      [this](absl::Status status) { OnConnected(std::move(status)); });
  if (!stream.ok()) {
    ConnectFailed(stream.status());
    return;
  }
  connecting_ = std::move(*stream);
  connect_deadline_ = loop_.Now() + options_.connect_timeout;
  ArmTimer();
}

void Peer::ConnectFailed(const absl::Status& why) {
  connecting_.reset();
  connect_deadline_ = absl::InfiniteFuture();
  if (next_candidate_ < candidates_.size()) {
    ConnectNext();
    return;
  }
  if (candidates_.size() <= 1) {
    ScheduleReconnect(why);
    return;
  }
  ScheduleReconnect(absl::Status(
      why.code(),
      absl::StrCat("every address of ", address_.ToString(), " failed (",
                   candidates_.size(), " tried); the last: ", why.message())));
}

void Peer::OnConnected(absl::Status status) {
  connect_deadline_ = absl::InfiniteFuture();
  if (!status.ok()) {
    ConnectFailed(status);
    return;
  }
  if (options_.tls != nullptr) {
    // Connected means handshaken: a connection whose TLS handshake fails is
    // a failed connect, with the handshake's Status (bounded by the
    // context's handshake_timeout, not connect_timeout).
    const std::string& configured = options_.tls->config().server_name;
    absl::StatusOr<std::unique_ptr<TlsStream>> tls = TlsStream::Connect(
        loop_, std::move(connecting_), options_.tls,
        configured.empty() ? address_.host() : configured,
        [this](absl::Status handshake) {
          if (!handshake.ok()) {
            ++stats_.tls_handshake_failures;
            ConnectFailed(absl::Status(
                handshake.code(), absl::StrCat("TLS with ", current_.ToString(),
                                               ": ", handshake.message())));
            return;
          }
          StartConnection();
        });
    if (!tls.ok()) {
      ConnectFailed(tls.status());
      return;
    }
    connecting_ = std::move(*tls);
    return;
  }
  StartConnection();
}

void Peer::StartConnection() {
  ++stats_.connections;
  ++connection_number_;
  state_ = PeerState::kConnected;
  connected_at_ = loop_.Now();
  retry_position_ = 0;
  ConnectionDriverOptions o;
  o.connection = options_.connection;
  o.stream_high_water_bytes = options_.stream_high_water_bytes;
  driver_ = std::make_unique<ConnectionDriver>(
      loop_, std::move(connecting_), std::move(o),
      static_cast<ConnectionHandler&>(*this));
  // Our Hello, and what waited for the connection, go out at once.
  driver_->Start(/*pump_now=*/true);
  ArmTimer();
}

void Peer::ScheduleReconnect(const absl::Status& why) {
  last_error_ = why;
  if (state_ == PeerState::kClosed) return;
  // Every attempt that fails comes here: a connect, or a connection that
  // ended before its handshake (refused, reset, another version). The peer
  // is unreachable until a handshake succeeds; a handshaken connection that
  // ends is not that (the reconnect is waited for, as gRPC does).
  if (!handshaken_) {
    unreachable_ = true;
    FailFast();
  }
  handshaken_ = false;
  state_ = PeerState::kBackingOff;
  const BackoffOptions& b = options_.backoff;
  absl::Duration delay = b.initial;
  for (int i = 0; i < backoff_attempts_ && delay < b.max; ++i) {
    delay *= b.multiplier;
  }
  delay = std::min(delay, b.max);
  if (loop_.Buggify(buggify_sites::kLongestBackoff)) delay = b.max;
  // A factor in [1 - jitter, 1 + jitter] from the loop's seeded source.
  const double unit =
      static_cast<double>(loop_.Random() >> 11) * 0x1.0p-53;  // [0, 1)
  delay *= 1.0 + b.jitter * (2.0 * unit - 1.0);
  ++backoff_attempts_;
  reconnect_at_ = loop_.Now() + delay;
  ArmTimer();
}

// ---- The connection ----

void Peer::SchedulePump() {
  // A timer of our own rather than Loop::Post: a posted callback cannot be
  // cancelled, and it would outlive a Peer destroyed before it runs.
  if (state_ == PeerState::kClosed || pump_timer_->active()) return;
  pump_timer_->Start(loop_.Now());
}

void Peer::OnPumped() { SubmitQueued(); }

void Peer::OnEvent(protocol::Event& event) {
  if (auto* hello = std::get_if<protocol::HandshakeDone>(&event)) {
    ++stats_.handshakes;
    handshaken_ = true;
    unreachable_ = false;
    server_incarnation_ = hello->peer.incarnation;
    version_ = hello->version;
  } else if (auto* item = std::get_if<protocol::StreamItemReceived>(&event)) {
    OnStreamItem(*item);
  } else if (auto* reply = std::get_if<protocol::ReplyReceived>(&event)) {
    OnReply(*reply);
  } else if (auto* failed = std::get_if<protocol::RequestFailed>(&event)) {
    OnFailed(*failed);
  } else if (auto* request = std::get_if<protocol::RequestReceived>(&event)) {
    OnRequest(*request);
  } else if (auto* one_way = std::get_if<protocol::OneWayReceived>(&event)) {
    if (serve_ != nullptr) serve_->OnPeerOneWay(one_way->message);
  }
  // GoodbyeReceived needs nothing here: the connection refuses new requests
  // after a Goodbye, and they wait for the next one.
}

void Peer::OnStreamItem(const protocol::StreamItemReceived& item) {
  auto it = in_flight_.find(item.id.value());
  if (it == in_flight_.end() || !it->second.on_item) return;
  it->second.item_received = true;
  ++stats_.stream_items;
  // Moved out for the call: the callback may Cancel this very stream (which
  // erases its record) or start others (which may rehash the table).
  StreamItemCallback on_item = std::move(it->second.on_item);
  const uint64_t request_id = it->second.id;
  on_item(item.payload);
  auto again = in_flight_.find(item.id.value());
  if (again != in_flight_.end() && again->second.id == request_id) {
    again->second.on_item = std::move(on_item);
  }
}

void Peer::OnReply(protocol::ReplyReceived& reply) {
  auto it = in_flight_.find(reply.id.value());
  if (it == in_flight_.end()) return;
  // A stream's end: a plain reply is its last item, a streamEnd's payload
  // only when there is one. The item goes first, with the record still in
  // place, as OnStreamItem does: its callback may Cancel the stream (and
  // destroy what `done` would fill), and then done is not called.
  const bool last_item = reply.status.ok() && it->second.on_item &&
                         (!reply.stream_end || !reply.payload.empty());
  if (last_item) {
    ++stats_.stream_items;
    StreamItemCallback on_item = std::move(it->second.on_item);
    const uint64_t request_id = it->second.id;
    on_item(reply.payload);
    it = in_flight_.find(reply.id.value());
    if (it == in_flight_.end() || it->second.id != request_id) return;
  }
  // Only what the outcome needs leaves the table, not the whole record (a
  // request's hot path: moving a Pending moves two callbacks and a string).
  Pending& p = it->second;
  ReplyCallback done = std::move(p.done);
  const bool empty_reply = p.on_item || last_item;
  // Destroyed after the erase, not inside it (a callback's destructor may
  // run code that must not see the table mid-erase).
  StreamItemCallback on_item = std::move(p.on_item);
  EndRequest(p);
  in_flight_ids_.erase(p.id);
  in_flight_.erase(it);  // `p` is gone from here on
  ++stats_.replies;
  if (!done) return;
  if (!reply.status.ok()) {
    done(reply.status);
    return;
  }
  done(empty_reply ? absl::string_view() : reply.payload);
}

void Peer::GrantCredit(PeerRequestId id, uint64_t bytes) {
  auto ids = in_flight_ids_.find(id.value());
  if (ids == in_flight_ids_.end() || driver_ == nullptr) return;
  // NotFound: the protocol already ended it, through an event not yet
  // taken; InvalidArgument would be a caller's bug, granting what it never
  // received: neither can be fixed here.
  (void)driver_->GrantCredit(CorrelationId(ids->second), bytes);
}

void Peer::OnFailed(protocol::RequestFailed& failed) {
  auto it = in_flight_.find(failed.id.value());
  if (it == in_flight_.end()) return;
  Pending p = std::move(it->second);
  in_flight_.erase(it);
  in_flight_ids_.erase(p.id);
  const absl::StatusCode code = failed.status.code();
  // Maybe ran: on this connection, or on an earlier one (a resend that
  // then never left, or that a Goodbye refused, may still have run there).
  const bool maybe_ran =
      p.written || failed.delivery == protocol::Delivery::kMaybeDelivered;
  if (p.correlation.valid() && maybe_ran &&
      code != absl::StatusCode::kDeadlineExceeded &&
      code != absl::StatusCode::kFailedPrecondition &&
      p.options.deadline > loop_.Now()) {
    // The server may have it, running or done: ask that same server again,
    // with the same id, once a connection to it is back (SubmitResends).
    p.written = true;
    queued_bytes_ += p.payload.size();
    resend_.emplace(p.correlation.value(), std::move(p));
    ArmTimer();
    return;
  }
  if (p.correlation.valid() && !maybe_ran) {
    // Never processed: it goes again as a new request, with a new id.
    ids_->Settle(p.correlation);
    p.correlation = CorrelationId();
    p.server_incarnation = 0;
  }
  if (code == absl::StatusCode::kDeadlineExceeded ||
      code == absl::StatusCode::kFailedPrecondition ||
      !protocol::SafeToRetry(failed) || p.item_received ||
      p.options.deadline <= loop_.Now()) {
    ++stats_.failures;
    Complete(p, failed.status);
    return;
  }
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (queues across reconnects): a request to send again is
  // forgotten instead of queued for the next connection: no outcome.
  if (moonpool_planted::Active("peer_drops_retry")) return;
#endif
  // Not processed, never sent, or idempotent: send it again on the next
  // connection, ahead of requests that were never sent.
  p.written |= failed.delivery == protocol::Delivery::kMaybeDelivered;
  ++stats_.retries;
  queued_bytes_ += p.payload.size();
  queue_.insert(queue_.begin() + static_cast<ptrdiff_t>(retry_position_++),
                std::move(p));
}

void Peer::OnRequest(const protocol::RequestReceived& request) {
  const CorrelationId id = request.request.correlation_id;
  if (serve_ == nullptr) {
    (void)driver_->SendErrorReply(
        id, absl::UnimplementedError(
                absl::StrCat("client ", options_.connection.peer_name,
                             " serves no requests (no PeerRequestHandler)")));
    return;
  }
  if (driver_->requests_being_served() > options_.max_requests_served) {
    (void)driver_->SendErrorReply(
        id, absl::ResourceExhaustedError(absl::StrCat(
                "client serves at most ", options_.max_requests_served,
                " requests at once")));
    return;
  }
  serve_->OnPeerRequest(connection_number_, request.request, request.deadline);
}

absl::StatusOr<ConnectionDriver*> Peer::DriverFor(uint64_t connection) {
  if (driver_ == nullptr || connection != connection_number_ ||
      driver_->ending()) {
    return absl::NotFoundError(
        absl::StrCat("connection ", connection, " to ", address_.ToString(),
                     " is gone; its request cannot be answered"));
  }
  return driver_.get();
}

absl::Status Peer::Reply(uint64_t connection, CorrelationId id,
                         absl::string_view payload) {
  absl::StatusOr<ConnectionDriver*> d = DriverFor(connection);
  if (!d.ok()) return d.status();
  absl::Status s = (*d)->SendReply(id, payload);
  if (s.ok()) ++stats_.requests_served;
  return s;
}

absl::Status Peer::ReplyError(uint64_t connection, CorrelationId id,
                              const absl::Status& status) {
  if (status.ok()) {
    return absl::InvalidArgumentError("ReplyError needs an error status");
  }
  absl::StatusOr<ConnectionDriver*> d = DriverFor(connection);
  if (!d.ok()) return d.status();
  absl::Status s = (*d)->SendErrorReply(id, status);
  if (s.ok()) ++stats_.requests_served;
  return s;
}

void Peer::OnClosed(const absl::Status& status) {
  const ConnectionDriverStats s = driver_->stats();
  stats_.keepalive_timeouts += s.connection.keepalive_timeouts;
  stats_.protocol_errors += s.protocol_errors;
  if (loop_.Now() - connected_at_ >= options_.backoff.reset_after) {
    backoff_attempts_ = 0;
  }
  RetireDriver();
  retry_position_ = 0;
  if (state_ == PeerState::kClosed) return;
  ScheduleReconnect(status.ok() ? absl::UnavailableError(
                                      "connection closed gracefully by the "
                                      "peer")
                                : status);
}

void Peer::RetireDriver() {
  if (driver_ == nullptr) return;
  retired_ = std::move(driver_);
  reap_timer_->Start(loop_.Now());
}

// ---- Time ----

void Peer::ArmTimer() {
  if (state_ == PeerState::kClosed) {
    timer_->Stop();
    return;
  }
  absl::Time t = std::min(reconnect_at_, connect_deadline_);
  for (const Pending& p : queue_) t = std::min(t, p.options.deadline);
  for (const auto& [id, p] : resend_) t = std::min(t, p.options.deadline);
  if (t == absl::InfiniteFuture()) {
    timer_->Stop();
  } else {
    timer_->Start(t);
  }
}

void Peer::ExpireQueued(absl::Time now) {
  std::vector<Pending> expired;
  for (auto it = resend_.begin(); it != resend_.end();) {
    if (it->second.options.deadline <= now) {
      queued_bytes_ -= it->second.payload.size();
      expired.push_back(std::move(it->second));
      it = resend_.erase(it);
    } else {
      ++it;
    }
  }
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

void Peer::FailFast() {
  std::vector<Pending> failed;
  for (size_t i = 0; i < queue_.size();) {
    Pending& p = queue_[i];
    if (!p.done || p.options.wait_for_ready) {
      ++i;
      continue;
    }
    queued_bytes_ -= p.payload.size();
    failed.push_back(std::move(p));
    queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(i));
    if (i < retry_position_) --retry_position_;
  }
  for (Pending& p : failed) {
    ++stats_.failures;
    // Written before: a retry of a request maybe delivered, whose outcome
    // is then Aborted as for any request that cannot be sent again.
    if (p.written) {
      Complete(p, absl::AbortedError(
                      absl::StrCat("request to ", address_.ToString(),
                                   " was maybe delivered, and the peer is now "
                                   "unreachable (",
                                   last_error_.message(), ")")));
    } else {
      Complete(p, absl::UnavailableError(absl::StrCat(
                      "peer ", address_.ToString(),
                      " is unreachable and the request does not wait for "
                      "ready (",
                      last_error_.message(), ")")));
    }
  }
}

void Peer::OnTimer() {
  const absl::Time now = loop_.Now();
  bool request_expired = false;
  for (const Pending& p : queue_) request_expired |= p.options.deadline <= now;
  if (state_ == PeerState::kConnecting &&
      (now >= connect_deadline_ ||
       (resolving_ != nullptr && request_expired))) {
    connect_deadline_ = absl::InfiniteFuture();
    if (resolving_ != nullptr) {
      // Abandoned: its answer, if it ever comes, is not called back.
      resolving_.reset();
      ++stats_.resolve_failures;
      ScheduleReconnect(absl::UnavailableError(
          absl::StrCat("resolving ", address_.host(),
                       ": no answer in time (the connect "
                       "timeout or a queued request's deadline came first)")));
    } else {
      ConnectFailed(absl::UnavailableError(
          absl::StrCat("connect to ", current_.ToString(), " timed out after ",
                       absl::FormatDuration(options_.connect_timeout))));
    }
  }
  if (state_ == PeerState::kBackingOff && now >= reconnect_at_) {
    reconnect_at_ = absl::InfiniteFuture();
    StartConnect();
  }
  ExpireQueued(now);
  SubmitQueued();
  ArmTimer();
}

// ---- Closing ----

void Peer::Close() {
  if (state_ == PeerState::kClosed) return;
  state_ = PeerState::kClosed;
  timer_->Stop();
  pump_timer_->Stop();
  resolving_.reset();
  connecting_.reset();
  if (driver_ != nullptr) {
    (void)driver_->SendGoodbye("client closed");
    driver_->Close();  // writes what the kernel takes now: the Goodbye
    RetireDriver();
  }
  std::vector<Pending> pending;
  pending.reserve(queue_.size() + in_flight_.size());
  // In id order, so that outcomes are delivered deterministically.
  std::vector<std::pair<uint64_t, Pending*>> flying;
  for (auto& [id, p] : in_flight_) flying.push_back({id, &p});
  std::sort(flying.begin(), flying.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, p] : flying) pending.push_back(std::move(*p));
  for (auto& [id, p] : resend_) pending.push_back(std::move(p));
  for (Pending& p : queue_) pending.push_back(std::move(p));
  resend_.clear();
  in_flight_.clear();
  in_flight_ids_.clear();
  queue_.clear();
  queued_bytes_ = 0;
  for (Pending& p : pending) {
    ++stats_.failures;
    Complete(p, absl::CancelledError(
                    absl::StrCat("peer ", address_.ToString(), " was closed")));
  }
}

}  // namespace moonpool::driver
