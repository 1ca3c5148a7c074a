#include "moonpool/protocol/connection.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/protocol/buggify.h"
#include "moonpool/wire/frame.h"

#ifdef MOONPOOL_PLANTED_BUGS
#include "moonpool_planted.h"
#endif

namespace moonpool::protocol {
namespace {

// Room kept in the output bound for a frame's header and fixed fields, so a
// payload check before encoding is conservative.
constexpr size_t kFrameOverheadBytes = 256;

absl::Status PrefixStatus(absl::StatusCode code, absl::string_view prefix,
                          const absl::Status& why) {
  return absl::Status(code, absl::StrCat(prefix, " (", why.message(), ")"));
}

// The versions a peer's Hello says it speaks, as `own_max` reads it: a
// version 1 side (own_max 1) ignores maxProtocolVersion, as version 1 code
// does; a maximum of 0, or below protocolVersion, means protocolVersion.
struct VersionRange {
  uint32_t min;
  uint32_t max;
};

VersionRange PeerRange(const wire::Hello& hello, uint32_t own_max) {
  if (own_max < wire::kProtocolVersion2) {
    return {hello.protocol_version, hello.protocol_version};
  }
  return {hello.protocol_version,
          std::max(hello.protocol_version, hello.max_protocol_version)};
}

absl::Status IncompatibleVersions(VersionRange own, VersionRange peer) {
  return absl::FailedPreconditionError(
      absl::StrCat("incompatible protocol versions: this side speaks ", own.min,
                   "..", own.max, ", the peer ", peer.min, "..", peer.max));
}

}  // namespace

absl::string_view ConnectionStateName(ConnectionState state) {
  switch (state) {
    case ConnectionState::kHandshaking:
      return "handshaking";
    case ConnectionState::kOpen:
      return "open";
    case ConnectionState::kClosing:
      return "closing";
    case ConnectionState::kClosed:
      return "closed";
  }
  return "unknown";
}

Connection::Connection(ConnectionOptions options, absl::Time now)
    : options_(std::move(options)),
      ids_(options_.ids != nullptr ? options_.ids : &own_ids_),
      encoder_(wire::EncoderOptions{options_.max_frame_bytes}),
      decoder_(
          wire::DecoderOptions{.max_frame_bytes = options_.max_frame_bytes}),
      last_receive_(now),
      latest_now_(now),
      next_ping_(now + options_.keepalive_interval) {
  assert(options_.incarnation != 0);
  assert(options_.min_protocol_version >= wire::kProtocolVersion1);
  assert(options_.min_protocol_version <= options_.max_protocol_version);
  assert(options_.max_protocol_version <= wire::kLatestProtocolVersion);
  if (options_.role == Role::kClient) {
    EncodeControl(OwnHello(options_.min_protocol_version));
  }
}

wire::Hello Connection::OwnHello(uint32_t version) const {
  // A version 1 side leaves the field at 0: its Hello is then exactly what
  // version 1 sends. Any other side states its max, even when it equals
  // protocolVersion, so that a reader of the bytes sees the range.
  const uint32_t max = options_.max_protocol_version < wire::kProtocolVersion2
                           ? 0
                           : options_.max_protocol_version;
  return wire::Hello{wire::kHelloMagic, version, options_.peer_name,
                     options_.incarnation, max};
}

// ---- Inputs ----

absl::Span<char> Connection::PrepareReceive(size_t min_bytes) {
  absl::Span<char> room = decoder_.PrepareAppend(min_bytes);
  // A reader handed one byte at a time must still see every frame whole:
  // headers and bodies split at every offset.
  if (room.size() > 1 &&
      Buggify(options_.buggify, buggify_sites::kTinyReceiveBuffer)) {
    return room.first(1);
  }
  return room;
}

void Connection::CommitReceive(size_t n, absl::Time now) {
  decoder_.CommitAppend(n);
  NoteReceived(n, now);
}

void Connection::Receive(absl::Span<const char> bytes, absl::Time now) {
  decoder_.Feed(bytes);
  NoteReceived(bytes.size(), now);
}

void Connection::NoteReceived(size_t n, absl::Time now) {
  stats_.bytes_in += n;
  if (n == 0) return;
  // Any byte at all is a sign of life (a large frame still arriving too).
  last_receive_ = std::max(last_receive_, now);
  latest_now_ = std::max(latest_now_, now);
  next_ping_ = last_receive_ + PingDelay();
}

absl::Duration Connection::PingDelay() {
  // Early pings are still sent only after silence, so the peer never owes
  // more pongs than silence allows: its ping-flood bound stays safe.
  return Buggify(options_.buggify, buggify_sites::kEarlyPing)
             ? options_.keepalive_interval / 2
             : options_.keepalive_interval;
}

void Connection::AdvanceTime(absl::Time now) {
  if (state_ == ConnectionState::kClosed) return;
  latest_now_ = std::max(latest_now_, now);
  while (std::optional<internal::PendingRequest> r = pending_.PopExpired(now)) {
    const bool written = Written(*r);
    queue_.push_back(RequestFailed{
        r->id,
        absl::DeadlineExceededError(absl::StrCat(
            "request ", r->id.ToString(), " reached its deadline ",
            written ? "after it was written" : "before it was written")),
        written ? Delivery::kMaybeDelivered : Delivery::kNotSent, r->idempotent,
        r->exactly_once});
  }
  if (now - last_receive_ >= options_.keepalive_timeout) {
    ++stats_.keepalive_timeouts;
    Close(absl::UnavailableError(
        absl::StrCat("keepalive: no byte received from the peer for ",
                     absl::FormatDuration(now - last_receive_), " (timeout ",
                     absl::FormatDuration(options_.keepalive_timeout), ")")));
    return;
  }
  if (state_ != ConnectionState::kHandshaking && now >= next_ping_ &&
      !transport_closed_.has_value()) {
    // One ping the driver has not written yet is enough: another behind it
    // reaches the peer no sooner. Without this, a peer that trickles a byte
    // now and then and never reads grows the output by a ping per interval,
    // without bound.
    if (consumed_bytes_ >= last_ping_end_) {
      EncodeControl(wire::Ping{next_ping_nonce_++});
      ++stats_.pings_sent;
      last_ping_end_ = encoded_bytes_;
    }
    next_ping_ = now + PingDelay();
  }
}

void Connection::OnTransportClosed(absl::Status why, absl::Time now) {
  (void)now;
  if (state_ == ConnectionState::kClosed || transport_closed_.has_value()) {
    return;
  }
  transport_closed_ = std::move(why);
}

// ---- Commands ----

absl::Status Connection::CheckCanSend() const {
  if (state_ == ConnectionState::kClosed) {
    return PrefixStatus(absl::StatusCode::kFailedPrecondition,
                        "connection is closed", close_status_);
  }
  if (transport_closed_.has_value()) {
    return absl::FailedPreconditionError("connection's transport has closed");
  }
  if (options_.role == Role::kServer &&
      state_ == ConnectionState::kHandshaking) {
    return absl::FailedPreconditionError(
        "a server sends nothing before the client's Hello");
  }
  return absl::OkStatus();
}

absl::Status Connection::CheckOutputRoom(size_t payload_bytes) const {
  if (output_.size() + payload_bytes + kFrameOverheadBytes >
      options_.max_output_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "output buffer full: ", output_.size(),
        " bytes not yet written, limit ", options_.max_output_bytes,
        " (the peer is not reading fast enough)"));
  }
  return absl::OkStatus();
}

void Connection::ShrinkIdleOutput(size_t frame_bytes) {
  // Storage a burst of large frames made the output take goes back when the
  // output is empty and a small frame comes next, as in the decoder: a run
  // of large frames keeps it, an idle connection does not.
  constexpr size_t kRetainedOutputBytes = size_t{256} << 10;
  if (!output_.empty() || output_.capacity() == 0) return;
  if ((output_.capacity() > kRetainedOutputBytes &&
       frame_bytes <= kRetainedOutputBytes / 4) ||
      // A threshold of 0: every frame after an idle moment lands in fresh
      // storage, so nothing may keep a view of the old one.
      Buggify(options_.buggify, buggify_sites::kReleaseIdleOutput)) {
    output_.Release();
  }
}

template <typename Frame>
void Connection::EncodeControl(const Frame& frame) {
  ShrinkIdleOutput(kFrameOverheadBytes);
  const size_t before = output_.size();
  absl::Status s = encoder_.Encode(frame, output_);
  // Control frames are a few words; only a peer name or reason over the
  // frame limit could fail, and that is the caller's configuration.
  assert(s.ok());
  (void)s;
  encoded_bytes_ += output_.size() - before;
  ++stats_.frames_out;
}

absl::StatusOr<CorrelationId> Connection::SendRequest(
    absl::string_view payload, const RequestOptions& options, absl::Time now) {
  if (absl::Status s = CheckCanSend(); !s.ok()) return s;
  if (goodbye_sent_ || goodbye_received_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "connection is closing (goodbye ", goodbye_sent_ ? "sent" : "received",
        "): send it on another one"));
  }
  if (pending_.size() >= options_.max_pending_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many requests in flight on this connection (limit ",
                     options_.max_pending_requests, ")"));
  }
  // Checked before an id is taken, so that refusals do not use up ids.
  if (absl::Status s = CheckOutputRoom(payload.size()); !s.ok()) return s;
  const absl::Time deadline = options.deadline == absl::InfiniteFuture()
                                  ? now + options_.default_request_timeout
                                  : options.deadline;
  if (deadline <= now) {
    return absl::DeadlineExceededError(
        "request deadline is not after the current time");
  }
  if (options.exactly_once && state_ == ConnectionState::kHandshaking) {
    return absl::FailedPreconditionError(
        "an exactly-once request waits for the handshake: it needs the "
        "server's incarnation and version");
  }
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (deadlines): the budget measured from the last byte
  // received instead of now, so the server waits past the caller's deadline.
  if (moonpool_planted::Active("deadline_budget_from_stale_clock")) {
    now = std::min(now, last_receive_);
  }
#endif
  // Stream credit is new in version 2: sent on a version 2 connection, and
  // before the handshake, where a version 1 server ignores it (its plain
  // reply is a stream of one); never on a known version 1 connection.
  // (A side that speaks only version 1 never sends it.)
  const bool may_speak_v2 =
      state_ == ConnectionState::kHandshaking
          ? options_.max_protocol_version >= wire::kProtocolVersion2
          : version_ >= wire::kProtocolVersion2;
  const uint64_t stream_credit = may_speak_v2 ? options.stream_credit : 0;
  // Exactly-once and the settled mark mean something only to a version 2
  // server, and a resend is safe only to the incarnation that kept the
  // record: the caller needs the server's Hello first.
  const bool v2 = version_ >= wire::kProtocolVersion2;
  const bool exactly_once = v2 && options.exactly_once;
  const CorrelationId id = options.id.valid() ? options.id : ids_->Next();
  if (options.id.valid() && id <= last_request_sent_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request id ", id.ToString(), " is not above ",
        last_request_sent_.ToString(),
        ", the last sent on this connection: the peer requires increasing "
        "ids"));
  }
  EnvelopeView request{id,      EnvelopeKind::kRequest, options.endpoint,
                       payload, deadline - now,         absl::StatusCode::kOk,
                       {},      stream_credit};
  request.exactly_once = exactly_once;
  if (v2) request.answered_below = options.answered_below;
  if (absl::Status s = EncodeEnvelope(request); !s.ok()) return s;
  ++stats_.requests_sent;
  last_request_sent_ = id;
  internal::PendingRequest pending{
      id, deadline, encoded_bytes_, options.idempotent, stream_credit, 0};
  pending.exactly_once = exactly_once;
  pending_.Add(pending);
  return id;
}

absl::Status Connection::EncodeEnvelope(const EnvelopeView& envelope) {
  if (absl::Status s = CheckOutputRoom(envelope.payload.size() +
                                       envelope.error_message.size());
      !s.ok()) {
    return s;
  }
  ShrinkIdleOutput(kFrameOverheadBytes + envelope.payload.size() +
                   envelope.error_message.size());
  const size_t before = output_.size();
  if (absl::Status s = encoder_.Encode(envelope, output_); !s.ok()) return s;
  encoded_bytes_ += output_.size() - before;
  ++stats_.frames_out;
  return absl::OkStatus();
}

absl::Status Connection::Answer(const EnvelopeView& answer) {
  if (state_ == ConnectionState::kClosed) {
    return PrefixStatus(absl::StatusCode::kFailedPrecondition,
                        "connection is closed", close_status_);
  }
  auto it = awaiting_reply_.find(answer.correlation_id.value());
  if (it == awaiting_reply_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no request ", answer.correlation_id.ToString(),
                     " awaits a reply on this connection"));
  }
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (ids): the answer carries the id of the latest request
  // received, as if requests were answered one at a time in order.
  if (moonpool_planted::Active("reply_id_of_last_request")) {
    EnvelopeView wrong = answer;
    wrong.correlation_id = last_request_received_;
    if (absl::Status s = EncodeEnvelope(wrong); !s.ok()) return s;
    awaiting_reply_.erase(it);
    return absl::OkStatus();
  }
#endif
  if (absl::Status s = EncodeEnvelope(answer); !s.ok()) return s;
  awaiting_reply_.erase(it);
  return absl::OkStatus();
}

absl::Status Connection::SendReply(CorrelationId id,
                                   absl::string_view payload) {
  return Answer(EnvelopeView{id,
                             EnvelopeKind::kReply,
                             kDefaultEndpoint,
                             payload,
                             absl::ZeroDuration(),
                             absl::StatusCode::kOk,
                             {}});
}

absl::Status Connection::SendErrorReply(CorrelationId id,
                                        const absl::Status& status) {
  if (status.ok()) {
    return absl::InvalidArgumentError("an error reply needs a non-OK status");
  }
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (error replies): the code left at its default, so the
  // caller reads Unknown instead of the handler's code.
  if (moonpool_planted::Active("error_reply_code_dropped")) {
    return Answer(EnvelopeView{id,
                               EnvelopeKind::kError,
                               kDefaultEndpoint,
                               {},
                               absl::ZeroDuration(),
                               absl::StatusCode::kOk,
                               status.message()});
  }
#endif
  return Answer(EnvelopeView{id,
                             EnvelopeKind::kError,
                             kDefaultEndpoint,
                             {},
                             absl::ZeroDuration(),
                             status.code(),
                             status.message()});
}

Connection::AwaitingReply* Connection::FindAwaiting(CorrelationId id) {
  auto it = awaiting_reply_.find(id.value());
  return it == awaiting_reply_.end() ? nullptr : &it->second;
}

const Connection::AwaitingReply* Connection::FindAwaiting(
    CorrelationId id) const {
  auto it = awaiting_reply_.find(id.value());
  return it == awaiting_reply_.end() ? nullptr : &it->second;
}

bool Connection::StreamWritable(CorrelationId id) const {
  const AwaitingReply* a = FindAwaiting(id);
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (flow control), with SendStreamItem's: a sender that asks
  // before it writes (the server transport does) must be told the same lie.
  if (moonpool_planted::Active("stream_ignores_credit")) {
    return a != nullptr && a->stream_credit > 0;
  }
#endif
  return a != nullptr && a->stream_credit > 0 &&
         a->outstanding < a->stream_credit;
}

absl::Status Connection::SendStreamItem(CorrelationId id,
                                        absl::string_view payload) {
  if (state_ == ConnectionState::kClosed) {
    return PrefixStatus(absl::StatusCode::kFailedPrecondition,
                        "connection is closed", close_status_);
  }
  AwaitingReply* a = FindAwaiting(id);
  if (a == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "no request ", id.ToString(), " awaits a reply on this connection"));
  }
  if (a->stream_credit == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("request ", id.ToString(),
                     " asked for one reply, not a stream: answer it with "
                     "SendReply"));
  }
  const bool within_credit = a->outstanding < a->stream_credit;
  bool send = within_credit;
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (flow control): the sender ignores the stream's credit.
  if (moonpool_planted::Active("stream_ignores_credit")) send = true;
#endif
  if (!send) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "reply stream ", id.ToString(), " is out of credit: ", a->outstanding,
        " bytes sent and not granted back, credit ", a->stream_credit,
        " (wait for CreditReceived)"));
  }
  if (absl::Status s = EncodeEnvelope(EnvelopeView{id,
                                                   EnvelopeKind::kStreamItem,
                                                   kDefaultEndpoint,
                                                   payload,
                                                   absl::ZeroDuration(),
                                                   absl::StatusCode::kOk,
                                                   {}});
      !s.ok()) {
    return s;
  }
  // Holds unless the check above was bypassed: the sender's half of the
  // invariant the receiver checks on every item.
  Always(options_.always, within_credit, always_points::kStreamWithinCredit,
         "a stream item was sent past the stream's credit");
  a->outstanding += payload.size();
  ++stats_.stream_items_sent;
  return absl::OkStatus();
}

absl::Status Connection::SendStreamEnd(CorrelationId id) {
  const AwaitingReply* a = FindAwaiting(id);
  if (a != nullptr && a->stream_credit == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("request ", id.ToString(),
                     " asked for one reply, not a stream: answer it with "
                     "SendReply"));
  }
  return Answer(EnvelopeView{id,
                             EnvelopeKind::kStreamEnd,
                             kDefaultEndpoint,
                             {},
                             absl::ZeroDuration(),
                             absl::StatusCode::kOk,
                             {}});
}

absl::Status Connection::GrantCredit(CorrelationId id, uint64_t bytes) {
  internal::PendingRequest* r = pending_.Find(id);
  if (r == nullptr || r->stream_credit == 0) {
    return absl::NotFoundError(absl::StrCat("no reply stream ", id.ToString(),
                                            " is pending on this connection"));
  }
  if (bytes > r->outstanding) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot grant ", bytes, " bytes of credit to stream ", id.ToString(),
        ": only ", r->outstanding, " were received and not granted back"));
  }
  if (bytes == 0) return absl::OkStatus();
  r->outstanding -= bytes;
  // Nothing more is written once the transport has closed; on version 1 no
  // item ever arrives, so there is nothing to grant.
  if (version_ >= wire::kProtocolVersion2 && !transport_closed_.has_value() &&
      state_ != ConnectionState::kClosed) {
    EncodeControl(wire::Credit{id, bytes});
    ++stats_.credits_sent;
  }
  return absl::OkStatus();
}

absl::Status Connection::AbandonRequest(CorrelationId id) {
  if (awaiting_reply_.erase(id.value()) == 0) {
    return absl::NotFoundError(absl::StrCat(
        "no request ", id.ToString(), " awaits a reply on this connection"));
  }
  ++stats_.requests_abandoned;
  return absl::OkStatus();
}

absl::Status Connection::CancelRequest(CorrelationId id) {
  if (!pending_.Remove(id).has_value()) {
    return absl::NotFoundError(absl::StrCat("no request ", id.ToString(),
                                            " is pending on this connection"));
  }
  ++stats_.requests_cancelled;
  if (state_ == ConnectionState::kHandshaking) {
    // Only a client has requests before the handshake; which version the
    // server picks is not known yet.
    cancels_before_handshake_.push_back(id);
  } else if (version_ >= wire::kProtocolVersion2) {
    EncodeCancel(id);
  }
  return absl::OkStatus();
}

void Connection::EncodeCancel(CorrelationId id) {
  // Nothing more will be written once the transport has closed; the peer
  // learns of the loss from the close itself.
  if (transport_closed_.has_value() || state_ == ConnectionState::kClosed) {
    return;
  }
  EncodeControl(wire::Cancel{id});
  ++stats_.cancels_sent;
}

absl::Status Connection::SendOneWay(Endpoint endpoint,
                                    absl::string_view payload) {
  if (absl::Status s = CheckCanSend(); !s.ok()) return s;
  return EncodeEnvelope(EnvelopeView{CorrelationId(),
                                     EnvelopeKind::kOneWay,
                                     endpoint,
                                     payload,
                                     absl::ZeroDuration(),
                                     absl::StatusCode::kOk,
                                     {}});
}

absl::Status Connection::SendGoodbye(absl::string_view reason) {
  if (absl::Status s = CheckCanSend(); !s.ok()) return s;
  if (goodbye_sent_) return absl::OkStatus();
  goodbye_sent_ = true;
  goodbye_last_ = last_request_received_;
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (goodbye): the last id processed off by one, so the peer
  // fails its latest request as unprocessed and sends it again.
  if (moonpool_planted::Active("goodbye_last_id_off_by_one") &&
      goodbye_last_.valid()) {
    goodbye_last_ = CorrelationId(goodbye_last_.value() - 1);
  }
#endif
  EncodeControl(wire::Goodbye{goodbye_last_, reason});
  if (state_ == ConnectionState::kOpen) state_ = ConnectionState::kClosing;
  return absl::OkStatus();
}

// ---- Outputs ----

void Connection::ConsumeOutput(size_t n) {
  output_.Consume(n);
  consumed_bytes_ += n;
  stats_.bytes_out += n;
  if (output_.empty()) queued_pongs_ = 0;
}

std::optional<Event> Connection::NextEvent() {
  while (true) {
    if (queue_head_ < queue_.size()) {
      Event e = std::move(queue_[queue_head_++]);
      if (queue_head_ == queue_.size()) {
        queue_.clear();
        queue_head_ = 0;
      }
      return e;
    }
    if (state_ == ConnectionState::kClosed) return std::nullopt;
    absl::StatusOr<const wire::FrameValue*> frame = decoder_.Next();
    if (!frame.ok()) {
      switch (frame.status().code()) {
        case absl::StatusCode::kDataLoss:
          ++stats_.protocol_errors.corrupt_frames;
          break;
        case absl::StatusCode::kResourceExhausted:
          ++stats_.protocol_errors.oversized_frames;
          break;
        default:
          ++stats_.protocol_errors.malformed_frames;
      }
      Close(frame.status());
      continue;
    }
    if (*frame == nullptr) {
      if (!transport_closed_.has_value()) return std::nullopt;
      // Every frame that arrived before the close has been read.
      absl::Status why = *transport_closed_;
      if (why.ok()) {
        absl::Status end = decoder_.Finish();
        if (!end.ok()) {
          why =
              PrefixStatus(absl::StatusCode::kUnavailable,
                           "connection closed by the peer inside a frame", end);
        } else if (!(goodbye_sent_ || goodbye_received_) || !pending_.empty() ||
                   !awaiting_reply_.empty()) {
          why = absl::UnavailableError(
              state_ == ConnectionState::kHandshaking
                  ? "connection closed by the peer before its Hello (is it a "
                    "moonpool peer, with TLS configured alike on both ends?)"
                  : "connection closed by the peer");
        }
      }
      Close(std::move(why));
      continue;
    }
    ++stats_.frames_in;
    if (std::optional<Event> e = HandleFrame(**frame)) return e;
  }
}

absl::Time Connection::NextWakeup() const {
  if (state_ == ConnectionState::kClosed) return absl::InfiniteFuture();
  absl::Time t = std::min(pending_.EarliestDeadline(),
                          last_receive_ + options_.keepalive_timeout);
  if (state_ != ConnectionState::kHandshaking) t = std::min(t, next_ping_);
  // A wakeup before anything is due, halfway there: AdvanceTime must then
  // do nothing, and the driver re-arm. Halving stops at a millisecond, so
  // even a site that always fires adds only a few wakeups per real one.
  constexpr absl::Duration kLeastEarlyWakeup = absl::Milliseconds(1);
  if (t != absl::InfiniteFuture() && t - latest_now_ > kLeastEarlyWakeup &&
      Buggify(options_.buggify, buggify_sites::kEarlyWakeup)) {
    t = latest_now_ + (t - latest_now_) / 2;
  }
  return t;
}

bool Connection::WantsClose() const {
  if (state_ == ConnectionState::kClosed) return true;
  return (goodbye_sent_ || goodbye_received_) && pending_.empty() &&
         awaiting_reply_.empty() && queue_head_ == queue_.size();
}

// ---- Frames ----

std::optional<Event> Connection::HandleFrame(const wire::FrameValue& frame) {
  if (state_ == ConnectionState::kHandshaking) {
    if (const auto* hello = std::get_if<wire::Hello>(&frame)) {
      return HandleHello(*hello);
    }
    ++stats_.protocol_errors.handshake_failures;
    Close(absl::InvalidArgumentError(absl::StrCat(
        "expected Hello first, received ", wire::FrameKindName(frame))));
    return std::nullopt;
  }
  switch (frame.index()) {
    case 0:  // Hello
      ++stats_.protocol_errors.unexpected_frames;
      Close(absl::InvalidArgumentError("received a second Hello"));
      return std::nullopt;
    case 1:
      return HandleEnvelope(std::get<EnvelopeView>(frame));
    case 2: {  // Ping
      ++stats_.pings_received;
      if (queued_pongs_ >= options_.max_queued_pongs) {
        ++stats_.protocol_errors.ping_floods;
        Close(absl::ResourceExhaustedError(
            absl::StrCat("ping flood: ", queued_pongs_,
                         " pongs owed and the peer is not reading them")));
        return std::nullopt;
      }
      if (!transport_closed_.has_value()) {
        EncodeControl(wire::Pong{std::get<wire::Ping>(frame).nonce});
        ++queued_pongs_;
      }
      return std::nullopt;
    }
    case 3:  // Pong: its bytes already counted as a sign of life.
      return std::nullopt;
    case 4:
      return HandleGoodbye(std::get<wire::Goodbye>(frame));
    case 5:
      return HandleCancel(std::get<wire::Cancel>(frame));
    default:
      return HandleCredit(std::get<wire::Credit>(frame));
  }
}

std::optional<Event> Connection::HandleHello(const wire::Hello& hello) {
  if (hello.magic != wire::kHelloMagic) {
    ++stats_.protocol_errors.handshake_failures;
    Close(absl::InvalidArgumentError(absl::StrFormat(
        "peer is not a moonpool endpoint: Hello magic %#018x, expected %#018x",
        hello.magic, wire::kHelloMagic)));
    return std::nullopt;
  }
  const VersionRange own{options_.min_protocol_version,
                         options_.max_protocol_version};
  const VersionRange peer = PeerRange(hello, own.max);
  // The server picks; the client checks the pick against its range. (With
  // own.max 1 both reduce to version 1's check: protocolVersion == 1.)
  const uint32_t version = options_.role == Role::kServer
                               ? std::min(own.max, peer.max)
                               : hello.protocol_version;
  const bool agreed = options_.role == Role::kServer
                          ? version >= own.min && version >= peer.min
                          : version >= own.min && version <= own.max;
  if (!agreed) {
    ++stats_.protocol_errors.handshake_failures;
    Close(IncompatibleVersions(own, peer));
    // A server still answers with its Hello, so that the client learns the
    // versions it speaks and reports them instead of a bare close.
    if (options_.role == Role::kServer) EncodeControl(OwnHello(own.min));
    return std::nullopt;
  }
  if (hello.incarnation == 0) {
    ++stats_.protocol_errors.handshake_failures;
    Close(absl::InvalidArgumentError("peer's Hello has incarnation 0"));
    return std::nullopt;
  }
  version_ = version;
  if (options_.role == Role::kServer) EncodeControl(OwnHello(version));
  state_ = goodbye_sent_ ? ConnectionState::kClosing : ConnectionState::kOpen;
  // Cancels of pipelined requests, behind those requests in the output.
  if (version_ >= wire::kProtocolVersion2) {
    for (CorrelationId id : cancels_before_handshake_) EncodeCancel(id);
  }
  cancels_before_handshake_.clear();
  cancels_before_handshake_.shrink_to_fit();
  return HandshakeDone{hello, version_};
}

std::optional<Event> Connection::HandleEnvelope(const EnvelopeView& e) {
  switch (e.kind) {
    case EnvelopeKind::kRequest: {
      if (!e.correlation_id.valid() ||
          e.correlation_id <= last_request_received_) {
        ++stats_.protocol_errors.unexpected_frames;
        Close(absl::InvalidArgumentError(absl::StrCat(
            "request id ", e.correlation_id.ToString(), " is not above ",
            last_request_received_.ToString(), ": ids must increase")));
        return std::nullopt;
      }
      last_request_received_ = e.correlation_id;
      if (goodbye_sent_ && e.correlation_id > goodbye_last_) {
        // The peer knows from our Goodbye that this one is not processed.
        ++stats_.requests_refused;
        return std::nullopt;
      }
      ++stats_.requests_received;
      // New in version 2: a version 1 connection reads it as version 1 does
      // (the field does not exist there).
      const uint64_t stream_credit =
          version_ >= wire::kProtocolVersion2 ? e.stream_credit : 0;
      awaiting_reply_.emplace(e.correlation_id.value(),
                              AwaitingReply{false, stream_credit, 0});
      const absl::Time deadline = e.timeout > absl::ZeroDuration()
                                      ? last_receive_ + e.timeout
                                      : absl::InfiniteFuture();
      RequestReceived received{e, deadline, stream_credit};
      if (version_ >= wire::kProtocolVersion2) {
        received.exactly_once = e.exactly_once;
        received.answered_below = e.answered_below;
      } else {
        // Version 1 has no such fields: whatever bits a peer set there mean
        // nothing, and the view says so too.
        received.request.exactly_once = false;
        received.request.answered_below = CorrelationId();
      }
      return received;
    }
    case EnvelopeKind::kReply:
    case EnvelopeKind::kError:
    case EnvelopeKind::kStreamItem:
    case EnvelopeKind::kStreamEnd:
      return HandleAnswer(e);
    case EnvelopeKind::kOneWay:
      return OneWayReceived{e};
  }
  return std::nullopt;  // the decoder admits no other kind
}

std::optional<Event> Connection::HandleAnswer(const EnvelopeView& e) {
  const bool stream_kind =
      e.kind == EnvelopeKind::kStreamItem || e.kind == EnvelopeKind::kStreamEnd;
  if (stream_kind && version_ < wire::kProtocolVersion2) {
    ++stats_.protocol_errors.unexpected_frames;
    Close(absl::InvalidArgumentError(
        absl::StrCat("received a ", EnvelopeKindName(e.kind),
                     " envelope on a version 1 connection")));
    return std::nullopt;
  }
  internal::PendingRequest* r = pending_.Find(e.correlation_id);
  if (r == nullptr) {
    // Late (after its deadline or cancel) or never sent: never the wrong
    // request, since ids are not reused.
    ++stats_.replies_dropped;
    return std::nullopt;
  }
  if (stream_kind && r->stream_credit == 0) {
    ++stats_.protocol_errors.unexpected_frames;
    Close(absl::InvalidArgumentError(absl::StrCat(
        "received a ", EnvelopeKindName(e.kind), " for request ",
        e.correlation_id.ToString(), ", which asked for one reply")));
    return std::nullopt;
  }
  if (e.kind == EnvelopeKind::kStreamItem) {
    // What this side received minus what it granted back never exceeds what
    // the sender sent minus what it was granted, so a sender within its
    // credit is within it here too.
    const bool within_credit = r->outstanding < r->stream_credit;
    if (!Always(options_.always, within_credit,
                always_points::kStreamWithinCredit,
                "a stream item arrived past the stream's credit")) {
      ++stats_.protocol_errors.credit_overruns;
      Close(absl::ResourceExhaustedError(absl::StrCat(
          "the peer sent an item of stream ", e.correlation_id.ToString(),
          " past its credit: ", r->outstanding,
          " bytes received and not granted back, credit ", r->stream_credit)));
      return std::nullopt;
    }
    r->outstanding += e.payload.size();
    ++stats_.stream_items_received;
    return StreamItemReceived{e.correlation_id, e.payload};
  }
  pending_.Remove(e.correlation_id);
  ++stats_.replies_received;
  return ReplyReceived{e.correlation_id, ErrorStatus(e), e.payload,
                       e.kind == EnvelopeKind::kStreamEnd};
}

std::optional<Event> Connection::HandleGoodbye(const wire::Goodbye& goodbye) {
  if (goodbye_received_) return std::nullopt;
  goodbye_received_ = true;
  if (state_ == ConnectionState::kOpen) state_ = ConnectionState::kClosing;
  FailPendingAbove(
      goodbye.last_correlation_id,
      absl::UnavailableError(absl::StrCat(
          "the peer is going away (", goodbye.reason,
          ") and did not process this request: safe to send again")),
      Delivery::kNotProcessed);
  queue_.push_back(
      GoodbyeReceived{goodbye.last_correlation_id, goodbye.reason});
  return std::nullopt;
}

std::optional<Event> Connection::HandleCancel(const wire::Cancel& cancel) {
  // New in version 2, so without effect on a version 1 connection (a
  // version 1 peer never sends one; a confused one is not worth a close).
  if (version_ < wire::kProtocolVersion2) {
    ++stats_.cancels_ignored;
    return std::nullopt;
  }
  AwaitingReply* a = FindAwaiting(cancel.id);
  // Unknown or answered: the cancel crossed the reply, or the request was
  // abandoned or refused. Already cancelled: one event is enough.
  if (a == nullptr || a->cancelled) {
    ++stats_.cancels_ignored;
    return std::nullopt;
  }
  a->cancelled = true;
  ++stats_.cancels_received;
  return CancelReceived{cancel.id};
}

std::optional<Event> Connection::HandleCredit(const wire::Credit& credit) {
  if (version_ < wire::kProtocolVersion2) {
    ++stats_.credits_ignored;
    return std::nullopt;
  }
  AwaitingReply* a = FindAwaiting(credit.id);
  // Unknown or answered: the credit crossed the stream's end (or its
  // abandon). Nothing to give it to.
  if (a == nullptr) {
    ++stats_.credits_ignored;
    return std::nullopt;
  }
  if (a->stream_credit == 0 || credit.bytes > a->outstanding) {
    ++stats_.protocol_errors.unexpected_frames;
    Close(absl::InvalidArgumentError(
        a->stream_credit == 0
            ? absl::StrCat("received credit for request ", credit.id.ToString(),
                           ", which asked for one reply")
            : absl::StrCat("received credit of ", credit.bytes,
                           " bytes for stream ", credit.id.ToString(),
                           ", but only ", a->outstanding,
                           " bytes of it are outstanding")));
    return std::nullopt;
  }
  a->outstanding -= credit.bytes;
  ++stats_.credits_received;
  return CreditReceived{credit.id, credit.bytes};
}

// ---- Closing ----

void Connection::FailPendingAbove(CorrelationId last, const absl::Status& why,
                                  Delivery delivery) {
  for (const internal::PendingRequest& r : pending_.TakeAll()) {
    if (r.id <= last) {
      pending_.Add(r);
      continue;
    }
    queue_.push_back(
        RequestFailed{r.id, why, delivery, r.idempotent, r.exactly_once});
  }
}

void Connection::Close(absl::Status why) {
  if (state_ == ConnectionState::kClosed) return;
  const bool handshake_failed =
      why.code() == absl::StatusCode::kFailedPrecondition;
  state_ = ConnectionState::kClosed;
  close_status_ = why;
  for (const internal::PendingRequest& r : pending_.TakeAll()) {
#ifdef MOONPOOL_PLANTED_BUGS
    // Planted bug (retry / delivery accounting): a written request reported
    // as never sent, so the layer above sends it again though it may have
    // run.
    const bool written = Written(r) && !moonpool_planted::Active(
                                           "retry_maybe_delivered_as_not_sent");
#else
    const bool written = Written(r);
#endif
    const Delivery delivery =
        written ? Delivery::kMaybeDelivered : Delivery::kNotSent;
    absl::Status status;
    if (handshake_failed) {
      status = why;
    } else if (written) {
      status = PrefixStatus(
          absl::StatusCode::kAborted,
          absl::StrCat("request ", r.id.ToString(),
                       " may have been delivered: the connection failed "
                       "after it was written"),
          why);
    } else {
      status = PrefixStatus(
          absl::StatusCode::kUnavailable,
          absl::StrCat("request ", r.id.ToString(),
                       " was not sent: the connection closed first"),
          why);
    }
#ifdef MOONPOOL_PLANTED_BUGS
    // Planted bug (close path): a request the failed connection may have
    // delivered is reported Cancelled, as if its caller had given up.
    if (moonpool_planted::Active("close_reports_cancelled") && written &&
        !handshake_failed) {
      status = absl::CancelledError(absl::StrCat(
          "request ", r.id.ToString(), " cancelled: the connection closed"));
    }
#endif
    // Constructed in place: GCC 12 at -O2 warns of a maybe-uninitialized
    // Status when a temporary is moved into the variant.
    queue_.emplace_back(std::in_place_type<RequestFailed>,
                        RequestFailed{r.id, std::move(status), delivery,
                                      r.idempotent, r.exactly_once});
  }
  awaiting_reply_.clear();
  cancels_before_handshake_.clear();
  // What was not written will never be.
  output_.Clear();
  queue_.emplace_back(std::in_place_type<Closed>, Closed{std::move(why)});
}

}  // namespace moonpool::protocol
