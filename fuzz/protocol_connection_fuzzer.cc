// libFuzzer target for a server-role moonpool::protocol::Connection: the
// input drives a driver's loop (receive a chunk, advance the clock, pull
// events and answer requests, write a prefix of the output, close) over an
// arbitrary byte stream, and traps on any broken contract of connection.h
// and connection_event.h. The input layout and the list of checks are in
// README.md beside this file.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "fuzz_util.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/protocol/always.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/protocol/connection_event.h"
#include "moonpool/protocol/connection_options.h"
#include "moonpool/protocol/connection_stats.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::protocol {
namespace {

// Options byte (README.md, "protocol_connection_fuzzer"): bit 0 a generated
// client Hello first, bit 1 the checksum rewrite, bits 2-3 max_frame_bytes,
// bits 4-5 max_output_bytes, bits 6-7 max_queued_pongs.
constexpr std::array<size_t, 4> kMaxFrameBytes = {size_t{1} << 20,
                                                  size_t{64} << 10, 4096, 512};
constexpr std::array<size_t, 4> kMaxOutputBytes = {
    size_t{32} << 20, size_t{64} << 10, 4096, 1024};
constexpr std::array<size_t, 4> kMaxQueuedPongs = {64, 4, 1, 0};
// Byte 1: bits 0-4 how many op bytes follow (1..32); bits 5-6 the server's
// protocol versions (kServerVersions); bit 7 the generated client Hello
// offers versions 1..2 rather than being a version 1 Hello. The rest, after
// the ops, is the peer's stream.
constexpr size_t kMaxOps = 32;
constexpr std::array<std::pair<uint32_t, uint32_t>, 4> kServerVersions = {
    {{1, 2}, {1, 1}, {2, 2}, {1, 2}}};

// The peer's keepalive settings are the defaults: interval 1 s, timeout 4 s.
const absl::Time kStart = absl::FromUnixSeconds(1'000'000);
// Clock steps of the "advance" op, in milliseconds: around the keepalive
// interval and timeout, and a request's 250 ms budget.
constexpr std::array<int, 16> kStepsMs = {0,    1,    10,   100,  249,  250,
                                          500,  999,  1000, 1001, 1500, 2000,
                                          3999, 4000, 4001, 10000};

// Bytes of one control frame this side may send beyond max_output_bytes
// (Hello with the server's name, a Ping or Pong, a Goodbye with the reason
// below): bounds do not apply to control frames (connection.h), so the
// output bound is max_output_bytes plus these.
constexpr size_t kControlFrameBytes = 128;
constexpr char kServerName[] = "fuzz-server";
// The server's own stream requests (command op, arg & 3 == 3, arg >> 2 in
// 1..3): their credit and deadline (0: none).
constexpr std::array<uint64_t, 3> kStreamCredits = {1, 300, 65536};
constexpr std::array<int, 3> kStreamDeadlinesMs = {250, 1001, 0};
// An id no request of either side has.
constexpr uint64_t kUnknownId = uint64_t{1} << 40;
constexpr char kGoodbyeReason[] = "fuzz";

enum class Op : uint8_t {
  kReceive,         // Receive(chunk)
  kReceiveInPlace,  // PrepareReceive(chunk or more), CommitReceive(chunk)
  kAdvance,         // now += kStepsMs[arg & 15]; AdvanceTime(now)
  kEvents,          // pull up to arg + 1 events
  kWrite,           // ConsumeOutput(arg/31 of the pending output)
  kAnswerLater,     // answer a request left unanswered; arg picks how
  kCommand,         // SendRequest / SendOneWay / CancelRequest /
                    // SendGoodbye / stream requests, GrantCredit
  kDrain,           // pull events until there are none
};

// A chunk's size code (5 bits): 0 the rest of the stream, 1..16 bytes,
// 17..31 (code - 16) * 64 bytes.
size_t ChunkBytes(uint8_t code) {
  if (code == 0) return SIZE_MAX;
  if (code <= 16) return code;
  return (code - 16) * size_t{64};
}

std::string EncodeClientHello(uint32_t max_protocol_version) {
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  absl::Status s = encoder.Encode(
      wire::Hello{wire::kHelloMagic, wire::kProtocolVersion1, "fuzz-client",
                  0x5eed0001, max_protocol_version},
      out);
  MOONPOOL_FUZZ_CHECK(s.ok());
  return std::string(out.Readable().data(), out.Readable().size());
}

// MOONPOOL_FUZZ_VERBOSE=2: every event, as it is pulled.
bool TraceEvents() {
  static const bool trace = [] {
    const char* v = std::getenv("MOONPOOL_FUZZ_VERBOSE");
    return v != nullptr && std::string(v) == "2";
  }();
  return trace;
}

class Harness {
 public:
  Harness(uint8_t options_byte, uint8_t versions, absl::Span<const uint8_t> ops,
          absl::Span<const char> stream)
      : ops_(ops),
        stream_(stream),
        options_(MakeOptions(options_byte, versions, this)),
        connection_(options_, kStart),
        reference_(
            wire::DecoderOptions{.max_frame_bytes = options_.max_frame_bytes}),
        peer_(wire::DecoderOptions{.max_frame_bytes =
                                       wire::kDefaultMaxFrameBytes}) {}

  void Run() {
    // A plan with no receive op still reads the stream, at the end.
    bool receives = false;
    for (uint8_t op : ops_) {
      const auto kind = static_cast<Op>(op & 7);
      receives |= kind == Op::kReceive || kind == Op::kReceiveInPlace;
    }
    size_t step = 0;
    while (pos_ < stream_.size() && receives && !transport_closed_) {
      Do(ops_[step++ % ops_.size()]);
    }
    if (pos_ < stream_.size() && !transport_closed_) {
      ReceiveChunk(stream_.size() - pos_, /*in_place=*/false);
    }
    Finish();
  }

 private:
  static ConnectionOptions MakeOptions(uint8_t options_byte, uint8_t versions,
                                       Harness* self) {
    ConnectionOptions o;
    o.min_protocol_version = kServerVersions[versions & 3].first;
    o.max_protocol_version = kServerVersions[versions & 3].second;
    o.role = Role::kServer;
    o.peer_name = kServerName;
    o.incarnation = 0x5eed0002;
    o.max_frame_bytes = kMaxFrameBytes[(options_byte >> 2) & 3];
    o.max_output_bytes = kMaxOutputBytes[(options_byte >> 4) & 3];
    o.max_queued_pongs = kMaxQueuedPongs[(options_byte >> 6) & 3];
    o.max_pending_requests = 8;
    // A driver's shared generator, so that a resend can use an id an
    // earlier connection took (RequestOptions::id).
    o.ids = &self->ids_;
    // The connection's run-time invariant: an item within the stream's
    // credit. Not held only for an item the peer sent past it, which closes
    // the connection (counted as a credit overrun; checked in OnClosed).
    o.always = [self](bool held, absl::string_view name,
                      absl::string_view detail) {
      MOONPOOL_FUZZ_CHECK(name == always_points::kStreamWithinCredit);
      self->Touch(detail);
      if (!held) ++self->always_broken_;
    };
    return o;
  }

  void Do(uint8_t op) {
    const uint8_t arg = op >> 3;
    switch (static_cast<Op>(op & 7)) {
      case Op::kReceive:
        ReceiveChunk(ChunkBytes(arg), /*in_place=*/false);
        break;
      case Op::kReceiveInPlace:
        ReceiveChunk(ChunkBytes(arg), /*in_place=*/true);
        break;
      case Op::kAdvance:
        Advance(absl::Milliseconds(kStepsMs[arg & 15]));
        break;
      case Op::kEvents:
        Pull(arg + size_t{1}, arg);
        break;
      case Op::kWrite:
        Write(arg);
        break;
      case Op::kAnswerLater:
        AnswerLater(arg);
        break;
      case Op::kCommand:
        Command(arg);
        break;
      case Op::kDrain:
        Pull(SIZE_MAX, arg);
        break;
    }
    CheckMemory();
  }

  // ---- Inputs ----

  void ReceiveChunk(size_t want, bool in_place) {
    // A driver stops reading once the connection is over.
    if (closed_seen_ || transport_closed_) return;
    const size_t n = std::min(want, stream_.size() - pos_);
    const char* bytes = stream_.data() + pos_;
    if (in_place) {
      // A socket read that asked for more than arrived.
      const size_t asked = std::max<size_t>(n, 4096);
      absl::Span<char> room = connection_.PrepareReceive(asked);
      MOONPOOL_FUZZ_CHECK(room.size() >= asked);
      std::memcpy(room.data(), bytes, n);
      connection_.CommitReceive(n, now_);
      largest_receive_ = std::max(largest_receive_, asked);
    } else {
      connection_.Receive(absl::Span<const char>(bytes, n), now_);
      largest_receive_ = std::max(largest_receive_, n);
    }
    pos_ += n;
    received_ += n;
    undrained_bytes_ += n;
    peak_undrained_bytes_ = std::max(peak_undrained_bytes_, undrained_bytes_);
    reference_.Feed(absl::Span<const char>(bytes, n));
    DrainReference();
    MOONPOOL_FUZZ_CHECK(connection_.stats().bytes_in == received_);
  }

  // What the connection should make of the same bytes: its frames and the
  // decoder's first error.
  void DrainReference() {
    while (reference_error_.ok()) {
      absl::StatusOr<const wire::FrameValue*> f = reference_.Next();
      if (!f.ok()) {
        reference_error_ = f.status();
        break;
      }
      if (*f == nullptr) break;
      ++reference_frames_;
      // The items of every stream in the order sent, for the order check
      // (StreamItemReceived).
      if (const auto* e = std::get_if<EnvelopeView>(*f);
          e != nullptr && e->kind == EnvelopeKind::kStreamItem) {
        reference_items_[e->correlation_id.value()].emplace_back(e->payload);
      }
    }
  }

  void Advance(absl::Duration step) {
    now_ += step;
    connection_.AdvanceTime(now_);
  }

  // ---- Events ----

  // Pulls up to `limit` events; `policy` says how to answer requests.
  void Pull(size_t limit, uint8_t policy) {
    for (size_t i = 0; i < limit; ++i) {
      std::optional<Event> e = connection_.NextEvent();
      if (!e.has_value()) {
        undrained_bytes_ = 0;
        AfterDrain();
        return;
      }
      MOONPOOL_FUZZ_CHECK(!closed_seen_);  // nothing after Closed
      Handle(*e, static_cast<uint8_t>(policy + i));
    }
  }

  void Handle(const Event& e, uint8_t policy) {
    if (TraceEvents()) {
      static constexpr const char* kNames[] = {
          "HandshakeDone", "RequestReceived", "OneWayReceived",
          "ReplyReceived", "RequestFailed",   "GoodbyeReceived",
          "Closed",        "CancelReceived",  "StreamItemReceived",
          "CreditReceived"};
      static_assert(std::variant_size_v<Event> == std::size(kNames));
      std::fprintf(stderr, "event %s (policy %d)\n", kNames[e.index()],
                   policy & 3);
    }
    if (const auto* h = std::get_if<HandshakeDone>(&e)) {
      MOONPOOL_FUZZ_CHECK(!handshake_seen_);
      MOONPOOL_FUZZ_CHECK(h->peer.magic == wire::kHelloMagic);
      MOONPOOL_FUZZ_CHECK(h->peer.incarnation != 0);
      // The version DESIGN's negotiation gives for this Hello; a version 1
      // server reads only protocolVersion.
      const uint32_t peer_min = h->peer.protocol_version;
      const uint32_t peer_max =
          options_.max_protocol_version < 2
              ? peer_min
              : std::max(peer_min, h->peer.max_protocol_version);
      const uint32_t v = std::min(options_.max_protocol_version, peer_max);
      MOONPOOL_FUZZ_CHECK(v >= options_.min_protocol_version && v >= peer_min);
      MOONPOOL_FUZZ_CHECK(h->version == v);
      MOONPOOL_FUZZ_CHECK(connection_.version() == v);
      handshake_seen_ = true;
    } else if (const auto* r = std::get_if<RequestReceived>(&e)) {
      MOONPOOL_FUZZ_CHECK(handshake_seen_);
      MOONPOOL_FUZZ_CHECK(r->request.kind == EnvelopeKind::kRequest);
      MOONPOOL_FUZZ_CHECK(r->request.correlation_id.valid());
      MOONPOOL_FUZZ_CHECK(r->request.correlation_id > last_request_);
      last_request_ = r->request.correlation_id;
      unanswered_.insert(r->request.correlation_id.value());
      // Stream credit is read on a version 2 connection only.
      MOONPOOL_FUZZ_CHECK(
          r->stream_credit ==
          (connection_.version() == 2 ? r->request.stream_credit : 0));
      // Exactly-once and the settled mark too; on version 1 whatever bits
      // the peer set there are cleared, in the view as well.
      if (connection_.version() == 2) {
        MOONPOOL_FUZZ_CHECK(r->exactly_once == r->request.exactly_once);
        MOONPOOL_FUZZ_CHECK(r->answered_below == r->request.answered_below);
      } else {
        MOONPOOL_FUZZ_CHECK(!r->exactly_once && !r->request.exactly_once);
        MOONPOOL_FUZZ_CHECK(!r->answered_below.valid() &&
                            !r->request.answered_below.valid());
      }
      if (r->stream_credit > 0) {
        peer_streams_[r->request.correlation_id.value()].credit =
            r->stream_credit;
        ever_streams_.insert(r->request.correlation_id.value());
      }
      Answer(r->request.correlation_id, r->request.payload, policy & 3);
    } else if (const auto* o = std::get_if<OneWayReceived>(&e)) {
      MOONPOOL_FUZZ_CHECK(handshake_seen_);
      MOONPOOL_FUZZ_CHECK(o->message.kind == EnvelopeKind::kOneWay);
      Touch(o->message.payload);
    } else if (const auto* reply = std::get_if<ReplyReceived>(&e)) {
      MOONPOOL_FUZZ_CHECK(handshake_seen_);
      MOONPOOL_FUZZ_CHECK(sent_.erase(reply->id.value()) == 1);
      // The end of a stream: exactly one (sent_ above), and a streamEnd
      // only for a stream request.
      const bool was_stream = own_streams_.erase(reply->id.value()) == 1;
      if (reply->stream_end) MOONPOOL_FUZZ_CHECK(was_stream);
      Touch(reply->payload);
    } else if (const auto* f = std::get_if<RequestFailed>(&e)) {
      MOONPOOL_FUZZ_CHECK(sent_.erase(f->id.value()) == 1);
      own_streams_.erase(f->id.value());
      MOONPOOL_FUZZ_CHECK(!f->status.ok());
      // The flag went out (version 2) exactly when the failure says so.
      MOONPOOL_FUZZ_CHECK(f->exactly_once ==
                          wire_fields_[f->id.value()].exactly_once);
    } else if (const auto* g = std::get_if<GoodbyeReceived>(&e)) {
      MOONPOOL_FUZZ_CHECK(handshake_seen_);
      MOONPOOL_FUZZ_CHECK(!goodbye_seen_);
      goodbye_seen_ = true;
      Touch(g->reason);
    } else if (const auto* cancel = std::get_if<CancelReceived>(&e)) {
      // Only on version 2, only for a request received and not answered,
      // at most once each.
      MOONPOOL_FUZZ_CHECK(handshake_seen_);
      MOONPOOL_FUZZ_CHECK(connection_.version() == 2);
      MOONPOOL_FUZZ_CHECK(unanswered_.contains(cancel->id.value()));
      MOONPOOL_FUZZ_CHECK(cancels_heard_.insert(cancel->id.value()).second);
      // The application stops the work: it forgets the request or leaves it
      // to be answered.
      if ((policy & 1) != 0) {
        MOONPOOL_FUZZ_CHECK(connection_.AbandonRequest(cancel->id).ok());
        Forget(cancel->id);
      }
    } else if (const auto* item = std::get_if<StreamItemReceived>(&e)) {
      OnStreamItem(*item);
    } else if (const auto* credit = std::get_if<CreditReceived>(&e)) {
      // Only on version 2, for a stream request received and not answered,
      // and never more than was sent and not granted back.
      MOONPOOL_FUZZ_CHECK(handshake_seen_);
      MOONPOOL_FUZZ_CHECK(connection_.version() == 2);
      auto it = peer_streams_.find(credit->id.value());
      MOONPOOL_FUZZ_CHECK(it != peer_streams_.end());
      MOONPOOL_FUZZ_CHECK(credit->bytes <= it->second.outstanding);
      it->second.outstanding -= credit->bytes;
    } else if (const auto* c = std::get_if<Closed>(&e)) {
      OnClosed(c->status);
    }
  }

  // An item of one of the server's own stream requests: only while it is
  // pending (not after its end, its deadline or its cancel), only on version
  // 2, within the credit, and in the order the peer sent the items.
  void OnStreamItem(const StreamItemReceived& item) {
    MOONPOOL_FUZZ_CHECK(handshake_seen_);
    MOONPOOL_FUZZ_CHECK(connection_.version() == 2);
    MOONPOOL_FUZZ_CHECK(sent_.contains(item.id.value()));
    auto it = own_streams_.find(item.id.value());
    MOONPOOL_FUZZ_CHECK(it != own_streams_.end());
    OwnStream& stream = it->second;
    // The receiver's outstanding bytes were below the credit when the item
    // came (one item may take it past: DESIGN.md section 5).
    MOONPOOL_FUZZ_CHECK(stream.outstanding < stream.credit);
    stream.outstanding += item.payload.size();
    Touch(item.payload);
    // In order, none lost or duplicated: the items delivered so far are a
    // run of consecutive items of the stream the reference decoder read
    // (the ones before it arrived before the request was sent, and were
    // dropped as unknown). `starts` holds every start that still fits.
    const std::vector<std::string>& sent = reference_items_[item.id.value()];
    std::vector<size_t> fits;
    if (stream.delivered == 0) {
      for (size_t j = 0; j < sent.size(); ++j) {
        if (sent[j] == item.payload) fits.push_back(j);
      }
    } else {
      for (size_t j : stream.starts) {
        const size_t at = j + stream.delivered;
        if (at < sent.size() && sent[at] == item.payload) fits.push_back(j);
      }
    }
    MOONPOOL_FUZZ_CHECK(!fits.empty());
    stream.starts = std::move(fits);
    ++stream.delivered;
  }

  // `id` was answered or abandoned: no longer awaits an answer.
  void Forget(CorrelationId id) {
    unanswered_.erase(id.value());
    peer_streams_.erase(id.value());
    awaiting_.erase(std::remove(awaiting_.begin(), awaiting_.end(), id),
                    awaiting_.end());
  }

  void OnClosed(const absl::Status& status) {
    closed_seen_ = true;
    MOONPOOL_FUZZ_CHECK(connection_.state() == ConnectionState::kClosed);
    MOONPOOL_FUZZ_CHECK(connection_.close_status() == status);
    MOONPOOL_FUZZ_CHECK(connection_.WantsClose());
    MOONPOOL_FUZZ_CHECK(connection_.NextWakeup() == absl::InfiniteFuture());
    // Every request this side sent had its one outcome before Closed.
    MOONPOOL_FUZZ_CHECK(sent_.empty());
    awaiting_.clear();
    unanswered_.clear();
    peer_streams_.clear();
    MOONPOOL_FUZZ_CHECK(own_streams_.empty());
    if (status.ok()) {
      // Only a graceful close is OK: a Goodbye, the transport's clean end,
      // nothing left unanswered, and a stream that broke no rule.
      MOONPOOL_FUZZ_CHECK(goodbye_sent_ || goodbye_seen_);
      MOONPOOL_FUZZ_CHECK(transport_closed_ && transport_close_ok_);
      MOONPOOL_FUZZ_CHECK(reference_error_.ok());
    }
    // A stream the decoder rejects closes with the decoder's own Status; a
    // connection that closed for another reason (handshake, request order,
    // ping flood, keepalive) never claims a decoder error.
    const ProtocolErrors& errors = connection_.stats().protocol_errors;
    if (errors.corrupt_frames + errors.malformed_frames +
            errors.oversized_frames >
        0) {
      MOONPOOL_FUZZ_CHECK(status == reference_error_);
    } else if (status.code() == absl::StatusCode::kDataLoss) {
      __builtin_trap();  // DataLoss comes only from the decoder
    } else if (status.code() == absl::StatusCode::kResourceExhausted) {
      MOONPOOL_FUZZ_CHECK(errors.ping_floods + errors.credit_overruns == 1);
    }
    // A peer past its credit closes the connection with ResourceExhausted,
    // and is the only item the Always point saw not hold.
    if (errors.credit_overruns > 0) {
      MOONPOOL_FUZZ_CHECK(errors.credit_overruns == 1);
      MOONPOOL_FUZZ_CHECK(status.code() ==
                          absl::StatusCode::kResourceExhausted);
    }
    MOONPOOL_FUZZ_CHECK(always_broken_ == errors.credit_overruns);
    // After Closed, nothing: not even after more input.
    MOONPOOL_FUZZ_CHECK(!connection_.NextEvent().has_value());
    connection_.AdvanceTime(now_ + absl::Seconds(100));
    MOONPOOL_FUZZ_CHECK(!connection_.NextEvent().has_value());
    MOONPOOL_FUZZ_CHECK(connection_.SendOneWay(kDefaultEndpoint, "x").code() ==
                        absl::StatusCode::kFailedPrecondition);
    MOONPOOL_FUZZ_CHECK(!connection_.NextEvent().has_value());
  }

  void Touch(absl::string_view bytes) {
    // (Also called by the Always function.)
    // Reading every byte of a view is how ASan sees one that dangles.
    for (char c : bytes) sink_ += static_cast<uint8_t>(c);
  }

  // policy: 0 reply now, 1 error reply now, 2 leave for later, 3 abandon.
  void Answer(CorrelationId id, absl::string_view payload, uint8_t policy) {
    Touch(payload);
    switch (policy & 3) {
      case 0:
        CheckAnswer(id, connection_.SendReply(id, payload));
        break;
      case 1:
        CheckAnswer(id, connection_.SendErrorReply(
                            id, absl::NotFoundError("no such endpoint")));
        break;
      case 2:
        awaiting_.push_back(id);
        break;
      case 3:
        MOONPOOL_FUZZ_CHECK(connection_.AbandonRequest(id).ok());
        MOONPOOL_FUZZ_CHECK(connection_.AbandonRequest(id).code() ==
                            absl::StatusCode::kNotFound);
        Forget(id);
        break;
    }
  }

  void CheckAnswer(CorrelationId id, const absl::Status& s) {
    if (s.ok()) {
      Forget(id);
      // Answered once: a second answer finds nothing.
      MOONPOOL_FUZZ_CHECK(connection_.SendReply(id, "").code() ==
                          absl::StatusCode::kNotFound);
      return;
    }
    // The output bound: the request still awaits an answer.
    MOONPOOL_FUZZ_CHECK(s.code() == absl::StatusCode::kResourceExhausted);
    awaiting_.push_back(id);
  }

  void AnswerLater(uint8_t arg) {
    if (awaiting_.empty()) return;
    const size_t i = arg % awaiting_.size();
    const CorrelationId id = awaiting_[i];
    awaiting_.erase(awaiting_.begin() + static_cast<ptrdiff_t>(i));
    if (peer_streams_.contains(id.value())) {
      AnswerStreamLater(id, arg);
      return;
    }
    absl::Status s;
    switch ((arg >> 3) & 3) {
      case 0:
        s = connection_.SendReply(id, std::string(arg * 37, 'r'));
        break;
      case 1:
        s = connection_.SendErrorReply(id, absl::InternalError("later"));
        break;
      case 2:
        s = connection_.AbandonRequest(id);
        break;
      case 3:
        s = connection_.SendReply(id, "");
        break;
    }
    if (connection_.state() == ConnectionState::kClosed) {
      // Closing forgot every request received.
      MOONPOOL_FUZZ_CHECK(!s.ok());
      return;
    }
    if (!s.ok()) {
      MOONPOOL_FUZZ_CHECK(s.code() == absl::StatusCode::kResourceExhausted);
      awaiting_.push_back(id);
      return;
    }
    Forget(id);
  }

  // A reply stream the peer asked for, left for later: (arg >> 3) & 3 = 0 an
  // item of arg * 37 bytes (when StreamWritable; else the refusal is
  // checked), 1 an error reply, 2 abandon, 3 the end (SendStreamEnd, or
  // SendReply with a last item when arg is even).
  void AnswerStreamLater(CorrelationId id, uint8_t arg) {
    PeerStream& stream = peer_streams_[id.value()];
    absl::Status s;
    bool ends = true;
    switch ((arg >> 3) & 3) {
      case 0: {
        ends = false;
        const std::string item(arg * size_t{37}, 'i');
        const bool writable = connection_.StreamWritable(id);
        // The harness's count lags the connection's (credit it applied but
        // whose event is not pulled yet), never leads it.
        if (stream.outstanding < stream.credit &&
            connection_.state() != ConnectionState::kClosed) {
          MOONPOOL_FUZZ_CHECK(writable);
        }
        const uint64_t items_before = connection_.stats().stream_items_sent;
        s = connection_.SendStreamItem(id, item);
        if (!writable && connection_.state() != ConnectionState::kClosed) {
          // Out of credit: refused, nothing sent.
          MOONPOOL_FUZZ_CHECK(s.code() == absl::StatusCode::kResourceExhausted);
        }
        if (s.ok()) {
          MOONPOOL_FUZZ_CHECK(writable);
          MOONPOOL_FUZZ_CHECK(connection_.stats().stream_items_sent ==
                              items_before + 1);
          stream.outstanding += item.size();
        }
        break;
      }
      case 1:
        s = connection_.SendErrorReply(id, absl::AbortedError("stream"));
        break;
      case 2:
        s = connection_.AbandonRequest(id);
        break;
      case 3:
        s = (arg & 1) != 0 ? connection_.SendStreamEnd(id)
                           : connection_.SendReply(id, "last");
        break;
    }
    if (connection_.state() == ConnectionState::kClosed) {
      MOONPOOL_FUZZ_CHECK(!s.ok());
      return;
    }
    if (!s.ok()) {
      MOONPOOL_FUZZ_CHECK(s.code() == absl::StatusCode::kResourceExhausted);
      awaiting_.push_back(id);
      return;
    }
    if (!ends) {
      awaiting_.push_back(id);
      return;
    }
    Forget(id);
    // Ended once: nothing more goes for it.
    MOONPOOL_FUZZ_CHECK(connection_.SendStreamItem(id, "x").code() ==
                        absl::StatusCode::kNotFound);
    MOONPOOL_FUZZ_CHECK(!connection_.StreamWritable(id));
  }

  void Command(uint8_t arg) {
    switch (arg & 3) {
      case 0:
      case 1: {
        RequestOptions r;
        r.deadline = now_ + absl::Milliseconds(kStepsMs[(arg >> 1) & 15] + 1);
        r.idempotent = (arg & 1) != 0;
        absl::StatusOr<CorrelationId> id =
            connection_.SendRequest(std::string(arg, 'q'), r, now_);
        if (id.ok()) {
          MOONPOOL_FUZZ_CHECK(!closed_seen_ && handshake_seen_);
          MOONPOOL_FUZZ_CHECK(sent_.insert(id->value()).second);
          NoteSent(*id, r);
        } else {
          const absl::StatusCode c = id.status().code();
          MOONPOOL_FUZZ_CHECK(c == absl::StatusCode::kFailedPrecondition ||
                              c == absl::StatusCode::kResourceExhausted);
        }
        break;
      }
      case 2: {
        if ((arg & 4) != 0) {
          Cancel(arg >> 3);
          break;
        }
        if ((arg & 16) != 0) {
          // Exactly-once: a new request (18), or a resend of an id an
          // earlier connection took (26).
          if ((arg & 8) == 0) {
            SendExactlyOnce();
          } else {
            Resend();
          }
          break;
        }
        absl::Status s =
            connection_.SendOneWay(Endpoint(arg), std::string(arg * 5, 'o'));
        if (s.ok()) MOONPOOL_FUZZ_CHECK(!closed_seen_ && handshake_seen_);
        break;
      }
      case 3:
        switch (arg >> 2) {
          case 1:
          case 2:
          case 3:
            SendStreamRequest((arg >> 2) - 1);
            break;
          case 4:
          case 5:
            Grant(/*all=*/(arg >> 2) == 4);
            break;
          case 6:
            CheckStreamRefusals();
            break;
          case 7:
            ResendNotAbove();
            break;
          default: {
            absl::Status s = connection_.SendGoodbye(kGoodbyeReason);
            if (s.ok()) {
              goodbye_sent_ = true;
            } else {
              MOONPOOL_FUZZ_CHECK(s.code() ==
                                  absl::StatusCode::kFailedPrecondition);
            }
            break;
          }
        }
        break;
    }
  }

  // What the output must carry for a request written with `r`: the flag and
  // the mark only on version 2 (the server writes only after its Hello).
  void NoteSent(CorrelationId id, const RequestOptions& r) {
    const bool v2 = connection_.version() == 2;
    wire_fields_[id.value()] =
        WireFields{v2 && r.exactly_once, v2 ? r.answered_below.value() : 0};
    last_sent_id_ = std::max(last_sent_id_, id.value());
  }

  // The settled mark a client would send: every id below its oldest
  // request still pending is settled.
  CorrelationId AnsweredBelow() const {
    uint64_t below = ids_.last().value() + 1;
    for (uint64_t id : sent_) below = std::min(below, id);
    return CorrelationId(below);
  }

  // Exactly-once requests alternate between a deadline the peer can miss
  // (250 ms) and one past the keepalive timeout.
  RequestOptions ExactlyOnceOptions() {
    RequestOptions r;
    r.deadline =
        now_ + absl::Milliseconds((exactly_once_ops_++ % 2) == 0 ? 250 : 4001);
    r.exactly_once = true;
    r.answered_below = AnsweredBelow();
    return r;
  }

  void CheckRefused(const absl::Status& s) {
    const absl::StatusCode c = s.code();
    MOONPOOL_FUZZ_CHECK(c == absl::StatusCode::kFailedPrecondition ||
                        c == absl::StatusCode::kResourceExhausted);
  }

  // A new exactly-once request: the generator's next id.
  void SendExactlyOnce() {
    const RequestOptions r = ExactlyOnceOptions();
    const uint64_t next = ids_.last().value() + 1;
    absl::StatusOr<CorrelationId> id = connection_.SendRequest("once", r, now_);
    if (!id.ok()) {
      // Before the handshake too (a server, and an exactly-once request,
      // wait for it): FailedPrecondition.
      CheckRefused(id.status());
      MOONPOOL_FUZZ_CHECK(ids_.last().value() == next - 1);
      return;
    }
    MOONPOOL_FUZZ_CHECK(!closed_seen_ && handshake_seen_);
    MOONPOOL_FUZZ_CHECK(id->value() == next);
    MOONPOOL_FUZZ_CHECK(sent_.insert(id->value()).second);
    NoteSent(*id, r);
  }

  // A resend: an id an earlier connection took from the shared generator
  // (so above every id this connection sent), exactly-once. It goes out
  // with that id and the generator stays where it was.
  void Resend() {
    const CorrelationId taken = ids_.Next();
    RequestOptions r = ExactlyOnceOptions();
    r.id = taken;
    absl::StatusOr<CorrelationId> id =
        connection_.SendRequest("again", r, now_);
    MOONPOOL_FUZZ_CHECK(ids_.last() == taken);
    if (!id.ok()) {
      CheckRefused(id.status());
      return;
    }
    MOONPOOL_FUZZ_CHECK(!closed_seen_ && handshake_seen_);
    MOONPOOL_FUZZ_CHECK(*id == taken);
    MOONPOOL_FUZZ_CHECK(sent_.insert(id->value()).second);
    NoteSent(*id, r);
  }

  // A resend whose id is not above the last one sent on this connection:
  // InvalidArgument (unless refused earlier for another reason), and
  // nothing written. With nothing sent yet, a plain resend of a taken id.
  void ResendNotAbove() {
    if (last_sent_id_ == 0) {
      const CorrelationId taken = ids_.Next();
      RequestOptions r;
      r.deadline = now_ + absl::Milliseconds(1001);
      r.id = taken;
      absl::StatusOr<CorrelationId> id =
          connection_.SendRequest("plain again", r, now_);
      MOONPOOL_FUZZ_CHECK(ids_.last() == taken);
      if (!id.ok()) {
        CheckRefused(id.status());
        return;
      }
      MOONPOOL_FUZZ_CHECK(*id == taken);
      MOONPOOL_FUZZ_CHECK(sent_.insert(id->value()).second);
      NoteSent(*id, r);
      return;
    }
    RequestOptions r = ExactlyOnceOptions();
    // The last id sent, or the first.
    r.id = CorrelationId((exactly_once_ops_ % 4) < 2 ? last_sent_id_ : 1);
    r.exactly_once = (exactly_once_ops_ % 3) != 0;
    const size_t output = connection_.PendingOutput().size();
    const uint64_t requests = connection_.stats().requests_sent;
    const CorrelationId last = ids_.last();
    absl::StatusOr<CorrelationId> id =
        connection_.SendRequest("stale", r, now_);
    MOONPOOL_FUZZ_CHECK(!id.ok());
    const absl::StatusCode c = id.status().code();
    MOONPOOL_FUZZ_CHECK(c == absl::StatusCode::kInvalidArgument ||
                        c == absl::StatusCode::kFailedPrecondition ||
                        c == absl::StatusCode::kResourceExhausted);
    MOONPOOL_FUZZ_CHECK(connection_.PendingOutput().size() == output);
    MOONPOOL_FUZZ_CHECK(connection_.stats().requests_sent == requests);
    MOONPOOL_FUZZ_CHECK(ids_.last() == last);
  }

  // The server asks the peer for a reply stream (`which` picks the credit
  // and deadline). On a version 1 connection it is a plain request.
  void SendStreamRequest(int which) {
    RequestOptions r;
    if (kStreamDeadlinesMs[which] > 0) {
      r.deadline = now_ + absl::Milliseconds(kStreamDeadlinesMs[which]);
    }
    r.stream_credit = kStreamCredits[which];
    absl::StatusOr<CorrelationId> id =
        connection_.SendRequest(std::string(which + 1, 's'), r, now_);
    if (!id.ok()) {
      const absl::StatusCode c = id.status().code();
      MOONPOOL_FUZZ_CHECK(c == absl::StatusCode::kFailedPrecondition ||
                          c == absl::StatusCode::kResourceExhausted);
      return;
    }
    MOONPOOL_FUZZ_CHECK(!closed_seen_ && handshake_seen_);
    MOONPOOL_FUZZ_CHECK(sent_.insert(id->value()).second);
    NoteSent(*id, r);
    if (connection_.version() == 2) {
      own_streams_[id->value()].credit = kStreamCredits[which];
    }
  }

  // The application consumed items of the server's own stream with the most
  // bytes outstanding: all of them, or half (rounded up).
  void Grant(bool all) {
    uint64_t best = 0;
    uint64_t bytes = 0;
    for (const auto& [id, stream] : own_streams_) {
      if (stream.outstanding > bytes ||
          (stream.outstanding == bytes && bytes > 0 && id < best)) {
        best = id;
        bytes = stream.outstanding;
      }
    }
    if (bytes == 0) return;
    if (!all) bytes = (bytes + 1) / 2;
    const uint64_t frames_before = connection_.stats().credits_sent;
    const bool can_write =
        connection_.state() != ConnectionState::kClosed && !transport_closed_;
    absl::Status s = connection_.GrantCredit(CorrelationId(best), bytes);
    if (!s.ok()) {
      // Its outcome is already queued (a deadline, the close), not yet
      // pulled.
      MOONPOOL_FUZZ_CHECK(s.code() == absl::StatusCode::kNotFound);
      return;
    }
    own_streams_[best].outstanding -= bytes;
    // One credit frame, unless nothing can be written any more.
    MOONPOOL_FUZZ_CHECK(connection_.stats().credits_sent ==
                        frames_before + (can_write ? 1 : 0));
  }

  // What the stream calls refuse, and with what.
  void CheckStreamRefusals() {
    const bool closed = connection_.state() == ConnectionState::kClosed;
    const absl::StatusCode not_found =
        closed ? absl::StatusCode::kFailedPrecondition
               : absl::StatusCode::kNotFound;
    MOONPOOL_FUZZ_CHECK(
        connection_.SendStreamItem(CorrelationId(kUnknownId), "x").code() ==
        not_found);
    MOONPOOL_FUZZ_CHECK(!connection_.StreamWritable(CorrelationId(kUnknownId)));
    MOONPOOL_FUZZ_CHECK(
        connection_.GrantCredit(CorrelationId(kUnknownId), 1).code() ==
        absl::StatusCode::kNotFound);
    MOONPOOL_FUZZ_CHECK(
        connection_.GrantCredit(CorrelationId(kUnknownId), 0).code() ==
        absl::StatusCode::kNotFound);
    // A request received for one reply is not a stream.
    for (uint64_t id : unanswered_) {
      if (peer_streams_.contains(id)) continue;
      MOONPOOL_FUZZ_CHECK(!connection_.StreamWritable(CorrelationId(id)));
      if (closed) break;
      MOONPOOL_FUZZ_CHECK(
          connection_.SendStreamItem(CorrelationId(id), "x").code() ==
          absl::StatusCode::kFailedPrecondition);
      MOONPOOL_FUZZ_CHECK(connection_.SendStreamEnd(CorrelationId(id)).code() ==
                          absl::StatusCode::kFailedPrecondition);
      break;
    }
    // The server's own requests: no credit for a unary one, none beyond
    // what a stream received.
    for (uint64_t id : sent_) {
      auto it = own_streams_.find(id);
      const uint64_t too_much =
          it == own_streams_.end() ? 1 : it->second.outstanding + 1;
      const absl::StatusCode code =
          connection_.GrantCredit(CorrelationId(id), too_much).code();
      if (it == own_streams_.end()) {
        MOONPOOL_FUZZ_CHECK(code == absl::StatusCode::kNotFound);
      } else {
        // NotFound when its outcome is queued, not yet pulled.
        MOONPOOL_FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument ||
                            code == absl::StatusCode::kNotFound);
      }
    }
  }

  // Gives up on one of the server's own requests still pending (pick: which
  // one), or on an id never sent: no outcome may come for it afterwards.
  void Cancel(uint8_t pick) {
    const uint64_t cancels_before = connection_.stats().cancels_sent;
    if (sent_.empty()) {
      MOONPOOL_FUZZ_CHECK(
          connection_.CancelRequest(CorrelationId(1000 + pick)).code() ==
          absl::StatusCode::kNotFound);
      return;
    }
    std::vector<uint64_t> ids(sent_.begin(), sent_.end());
    std::sort(ids.begin(), ids.end());
    const uint64_t id = ids[pick % ids.size()];
    absl::Status s = connection_.CancelRequest(CorrelationId(id));
    if (!s.ok()) {
      // Its outcome is already queued (a deadline, the close), not yet
      // pulled: it still comes.
      MOONPOOL_FUZZ_CHECK(s.code() == absl::StatusCode::kNotFound);
      return;
    }
    sent_.erase(id);
    // Items crossing the cancel are dropped: no event may come for it now
    // (OnStreamItem checks), and there is no credit to grant.
    own_streams_.erase(id);
    MOONPOOL_FUZZ_CHECK(connection_.GrantCredit(CorrelationId(id), 0).code() ==
                        absl::StatusCode::kNotFound);
    MOONPOOL_FUZZ_CHECK(connection_.CancelRequest(CorrelationId(id)).code() ==
                        absl::StatusCode::kNotFound);
    // One cancel frame on version 2 (unless the transport closed), none on
    // version 1.
    const uint64_t sent = connection_.stats().cancels_sent - cancels_before;
    MOONPOOL_FUZZ_CHECK(sent <= 1);
    if (connection_.version() != 2) MOONPOOL_FUZZ_CHECK(sent == 0);
  }

  // ---- Outputs ----

  // Writes `arg`/31 of the pending output, and reads it as the peer would.
  void Write(uint8_t arg) {
    const absl::Span<const char> out = connection_.PendingOutput();
    const size_t n = out.size() * arg / 31;
    if (!closed_seen_) {
      // Until the connection closes, what it writes is a valid stream that
      // starts with the server's Hello (a closed one may stop mid-frame).
      peer_.Feed(out.first(n));
      while (true) {
        absl::StatusOr<const wire::FrameValue*> f = peer_.Next();
        MOONPOOL_FUZZ_CHECK(f.ok());
        if (*f == nullptr) break;
        if (peer_frames_++ == 0) {
          MOONPOOL_FUZZ_CHECK(std::holds_alternative<wire::Hello>(**f));
        }
        // Frames new in version 2 only on a version 2 connection.
        if (std::holds_alternative<wire::Cancel>(**f) ||
            std::holds_alternative<wire::Credit>(**f)) {
          MOONPOOL_FUZZ_CHECK(connection_.version() == 2);
        }
        if (const auto* e = std::get_if<EnvelopeView>(*f)) {
          if (e->kind == EnvelopeKind::kStreamItem ||
              e->kind == EnvelopeKind::kStreamEnd) {
            // Only to a request the peer sent with stream credit.
            MOONPOOL_FUZZ_CHECK(connection_.version() == 2);
            MOONPOOL_FUZZ_CHECK(
                ever_streams_.contains(e->correlation_id.value()));
          }
          if (e->kind == EnvelopeKind::kRequest) {
            MOONPOOL_FUZZ_CHECK(e->stream_credit == 0 ||
                                connection_.version() == 2);
            // The flag and the mark as the harness asked, on version 2 only.
            const auto w = wire_fields_.find(e->correlation_id.value());
            MOONPOOL_FUZZ_CHECK(w != wire_fields_.end());
            MOONPOOL_FUZZ_CHECK(e->exactly_once == w->second.exactly_once);
            MOONPOOL_FUZZ_CHECK(e->answered_below.value() ==
                                w->second.answered_below);
          }
        }
      }
    }
    connection_.ConsumeOutput(n);
  }

  // After every pull that emptied the queue: the invariants of a driver's
  // resting point.
  void AfterDrain() {
    // Every complete frame received was read; a broken stream closed the
    // connection, with a non-OK status.
    if (!reference_error_.ok()) {
      MOONPOOL_FUZZ_CHECK(connection_.state() == ConnectionState::kClosed);
      MOONPOOL_FUZZ_CHECK(!connection_.close_status().ok());
      MOONPOOL_FUZZ_CHECK(closed_seen_);
    }
    if (connection_.state() != ConnectionState::kClosed) {
      MOONPOOL_FUZZ_CHECK(connection_.stats().frames_in == reference_frames_);
      // A driver never spins: an event can make a timer due at once (the
      // Hello opens the connection and its keepalive ping is overdue), and
      // one AdvanceTime() then moves the next wakeup past now.
      if (connection_.NextWakeup() <= now_) connection_.AdvanceTime(now_);
      if (connection_.state() != ConnectionState::kClosed &&
          !transport_closed_ && connection_.NextWakeup() <= now_) {
        std::fprintf(
            stderr, "next wakeup %s is not after now %s (state %s)\n",
            absl::FormatTime(connection_.NextWakeup()).c_str(),
            absl::FormatTime(now_).c_str(),
            std::string(ConnectionStateName(connection_.state())).c_str());
        __builtin_trap();
      }
    } else {
      MOONPOOL_FUZZ_CHECK(closed_seen_);
    }
    // The driver's loop: closes the socket when the connection wants it.
    if (connection_.WantsClose() && !transport_closed_) {
      CloseTransport(absl::OkStatus());
    }
  }

  void CloseTransport(absl::Status why) {
    transport_closed_ = true;
    transport_close_ok_ = why.ok();
    connection_.OnTransportClosed(std::move(why), now_);
  }

  // The buffers stay within the bounds the options promise.
  void CheckMemory() {
    const size_t pongs = options_.max_queued_pongs;
    // Envelopes stop at max_output_bytes; beyond it only control frames:
    // the Hello, a Goodbye, the pongs owed and one unwritten ping. (The
    // fuzzer once found pings piling up here: README.md, "Findings".)
    const size_t output_bound =
        options_.max_output_bytes + (pongs + 3) * kControlFrameBytes;
    const size_t output = connection_.PendingOutput().size();
    if (output > output_bound) {
      std::fprintf(stderr, "output %zu bytes over its bound %zu\n", output,
                   output_bound);
      __builtin_trap();
    }
    // One frame plus one receive; and, once the driver let bytes pile up
    // without pulling events (a driver that stops pulling events should stop
    // reading: that is the backpressure), up to twice the most that piled
    // up. The storage is kept after a drain, so the peak counts.
    const size_t receive_bound = wire::kFrameHeaderBytes +
                                 options_.max_frame_bytes + largest_receive_ +
                                 16 + 2 * peak_undrained_bytes_;
    if (connection_.receive_capacity() > receive_bound) {
      std::fprintf(stderr, "receive buffer %zu bytes over its bound %zu\n",
                   connection_.receive_capacity(), receive_bound);
      __builtin_trap();
    }
    // Doubling growth holds at most about twice what is queued, plus the
    // room reserved for the frame being encoded.
    const size_t output_capacity_bound =
        2 * output_bound + options_.max_frame_bytes + 4096;
    if (connection_.output_capacity() > output_capacity_bound) {
      std::fprintf(stderr, "output buffer %zu bytes over its bound %zu\n",
                   connection_.output_capacity(), output_capacity_bound);
      __builtin_trap();
    }
  }

  // The stream ended: the peer closes; every outcome comes out, then Closed,
  // then nothing.
  void Finish() {
    Pull(SIZE_MAX, 0);
    if (!transport_closed_) CloseTransport(absl::OkStatus());
    Pull(SIZE_MAX, 0);
    CheckMemory();
    MOONPOOL_FUZZ_CHECK(closed_seen_);
    MOONPOOL_FUZZ_CHECK(connection_.state() == ConnectionState::kClosed);
    MOONPOOL_FUZZ_CHECK(sent_.empty());
    MOONPOOL_FUZZ_CHECK(own_streams_.empty());
    MOONPOOL_FUZZ_CHECK(always_broken_ ==
                        connection_.stats().protocol_errors.credit_overruns);
    if (!reference_error_.ok()) {
      MOONPOOL_FUZZ_CHECK(!connection_.close_status().ok());
    }
    MOONPOOL_FUZZ_CHECK(!connection_.NextEvent().has_value());
  }

 public:
  const absl::Status& close_status() const {
    return connection_.close_status();
  }
  uint64_t frames() const { return connection_.stats().frames_in; }
  ConnectionStats stats() const { return connection_.stats(); }

 private:
  const absl::Span<const uint8_t> ops_;
  const absl::Span<const char> stream_;
  // The request ids of this "client incarnation" (declared before options_,
  // which points at it): ids it hands out outside the connection stand for
  // requests an earlier connection sent, which the harness resends.
  CorrelationIdGenerator ids_;
  const ConnectionOptions options_;
  Connection connection_;
  // Reads the same bytes as the connection: what it should have seen.
  wire::FrameDecoder reference_;
  absl::Status reference_error_;
  uint64_t reference_frames_ = 0;
  // Reads what the connection writes, as its peer would.
  wire::FrameDecoder peer_;
  uint64_t peer_frames_ = 0;

  absl::Time now_ = kStart;
  size_t pos_ = 0;
  uint64_t received_ = 0;
  size_t largest_receive_ = 0;
  size_t undrained_bytes_ = 0;
  size_t peak_undrained_bytes_ = 0;
  bool transport_closed_ = false;
  bool transport_close_ok_ = false;

  bool handshake_seen_ = false;
  bool goodbye_seen_ = false;
  bool goodbye_sent_ = false;
  bool closed_seen_ = false;
  CorrelationId last_request_;
  std::vector<CorrelationId> awaiting_;
  // Requests received and not answered or abandoned; those the peer
  // cancelled (CancelReceived).
  absl::flat_hash_set<uint64_t> unanswered_;
  absl::flat_hash_set<uint64_t> cancels_heard_;
  absl::flat_hash_set<uint64_t> sent_;
  // Exactly-once (version 2): for every request the server wrote, the flag
  // and settled mark the output must carry (false and 0 on version 1), and
  // the largest id sent on this connection.
  struct WireFields {
    bool exactly_once = false;
    uint64_t answered_below = 0;
  };
  absl::flat_hash_map<uint64_t, WireFields> wire_fields_;
  uint64_t last_sent_id_ = 0;
  uint64_t exactly_once_ops_ = 0;
  // Reply streams (version 2). The server's own stream requests, pending:
  // their credit, the bytes received and not granted back, and for the
  // order check the items delivered and where in the peer's items they may
  // start.
  struct OwnStream {
    uint64_t credit = 0;
    uint64_t outstanding = 0;
    size_t delivered = 0;
    std::vector<size_t> starts;
  };
  absl::flat_hash_map<uint64_t, OwnStream> own_streams_;
  // Stream items in the peer's byte stream, by id, as the reference read
  // them.
  absl::flat_hash_map<uint64_t, std::vector<std::string>> reference_items_;
  // Streams the peer asked for and the server has not ended: their credit
  // and the bytes sent minus the CreditReceived pulled; and every id ever
  // received with stream credit.
  struct PeerStream {
    uint64_t credit = 0;
    uint64_t outstanding = 0;
  };
  absl::flat_hash_map<uint64_t, PeerStream> peer_streams_;
  absl::flat_hash_set<uint64_t> ever_streams_;
  // Items the Always point "protocol.stream_within_credit" saw not hold.
  uint64_t always_broken_ = 0;
  uint64_t sink_ = 0;
};

}  // namespace
}  // namespace moonpool::protocol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moonpool::protocol;  // NOLINT(build/namespaces): entry point
  if (size < 3) return -1;
  const uint8_t options_byte = data[0];
  const size_t op_count = std::min<size_t>((data[1] & 31) + 1, size - 2);
  static_assert(kMaxOps == 32);
  const uint8_t versions = (data[1] >> 5) & 3;
  const bool v2_hello = (data[1] & 0x80) != 0;
  const absl::Span<const uint8_t> ops(data + 2, op_count);
  const size_t stream_at = 2 + op_count;

  std::vector<char> stream;
  if ((options_byte & 1) != 0) {
    static const std::string v1_hello = EncodeClientHello(0);
    static const std::string v2_hello_bytes = EncodeClientHello(2);
    const std::string& hello = v2_hello ? v2_hello_bytes : v1_hello;
    stream.assign(hello.begin(), hello.end());
  }
  const size_t prefix = stream.size();
  stream.insert(stream.end(), data + stream_at, data + size);
  if ((options_byte & 2) != 0) moonpool::fuzz::FixChecksums(stream, prefix);

  Harness harness(options_byte, versions, ops, stream);
  harness.Run();
  static const bool verbose = std::getenv("MOONPOOL_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    const ConnectionStats st = harness.stats();
    std::fprintf(stderr,
                 "frames %llu, stream %zu bytes, stream items sent %llu "
                 "received %llu, credits sent %llu received %llu: %s\n",
                 static_cast<unsigned long long>(harness.frames()),
                 stream.size(),
                 static_cast<unsigned long long>(st.stream_items_sent),
                 static_cast<unsigned long long>(st.stream_items_received),
                 static_cast<unsigned long long>(st.credits_sent),
                 static_cast<unsigned long long>(st.credits_received),
                 absl::CHexEscape(harness.close_status().ToString()).c_str());
  }
  return 0;
}
