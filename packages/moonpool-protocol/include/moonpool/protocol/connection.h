// Connection is the Sans-I/O state machine of one TCP connection of the
// moonpool protocol (DESIGN.md sections 5 and 6): bytes and time in, events
// and bytes out. It does no I/O, reads no clock, starts no thread.
//
// The driver's loop, in full:
//
//   Connection c(options, now);
//   // received bytes (straight into the connection's buffer):
//   auto room = c.PrepareReceive(64 << 10);
//   size_t n = read(fd, room.data(), room.size());
//   c.CommitReceive(n, now);                 // or c.OnTransportClosed(why,
//   now)
//   // time:
//   c.AdvanceTime(now);                      // at c.NextWakeup() or later
//   // after every input, drain events and write what is pending:
//   while (std::optional<Event> e = c.NextEvent()) { ... }
//   auto out = c.PendingOutput();            // write some prefix of it
//   c.ConsumeOutput(written);
//   if (c.WantsClose()) close(fd);
//
// The application's commands (SendRequest, SendReply, SendErrorReply,
// SendOneWay, SendGoodbye, CancelRequest) append frames to the output; they
// fail at once, with the Status each names, instead of queueing without bound.
//
// Outcomes (DESIGN.md section 6): every request sent gets exactly one
// ReplyReceived or RequestFailed event, never silence, unless this side gives
// up on it first with CancelRequest (then none at all): a reply or error
// reply; DeadlineExceeded when its deadline passes; and when the connection
// ends, Unavailable for what was never written or that the peer said it did
// not process, Aborted ("maybe delivered") for what was written. Each
// RequestFailed carries the request's idempotent flag and how far it got, so
// the layer above decides what to send again (SafeToRetry()).
//
// Versions (DESIGN.md section 5, "Version 2"). Each side speaks the range
// [min_protocol_version, max_protocol_version] of its options. The client's
// Hello carries protocolVersion = its min and maxProtocolVersion = its max.
// The server picks v = min(its max, the client's max) and, if v is at least
// both mins, answers Hello{v, its max}: v is the connection's version().
// Otherwise it answers Hello{its min, its max} and closes with
// FailedPrecondition naming both ranges; the client, which accepts a server
// Hello only when its protocolVersion lies in its own range, fails with the
// same kind of Status ("incompatible protocol versions: this side speaks
// 2..2, the peer 1..1"). A side whose max is 1 is a version 1 side, exactly:
// it writes maxProtocolVersion 0 (so its Hello is a version 1 Hello, byte
// for byte) and never reads the peer's. What is new in version 2 (cancel,
// reply streams) is sent, and has effect, only on a version 2 connection;
// the one exception is a stream request a client pipelines before the
// server's Hello: it carries its streamCredit, which a version 1 server
// ignores, answering with a plain reply, a stream of one.
//
// Reply streams (DESIGN.md section 5). A request sent with
// RequestOptions::stream_credit C > 0 may be answered by any number of
// StreamItemReceived events, then its one ReplyReceived (the end) or
// RequestFailed. The requester grants item bytes back with GrantCredit as
// its application consumes them. The responder sends items with
// SendStreamItem only while StreamWritable (the payload bytes sent minus
// those granted back are below C; CreditReceived says when that may have
// changed) and ends with SendStreamEnd, SendReply or SendErrorReply. A peer
// that sends an item past its credit is closed with ResourceExhausted; the
// invariant is reported at every item, both ends, as the Always point
// "protocol.stream_within_credit" (always.h).
//
// Exactly-once (DESIGN.md section 5). A request sent with
// RequestOptions::exactly_once on a version 2 connection carries the flag,
// and every request there carries the sender's answered_below; the
// RequestReceived events show both, and a RequestFailed says whether the
// flag went out (exactly_once). The connection keeps no outcome: the
// records outlive connections, so they belong to the server that spans
// them (OutcomeTable, outcome_table.h, is their pure form). A resend names
// its first id (RequestOptions::id), above every id sent on this
// connection.
//
// Errors split by who is at fault (the h11 way): the peer breaking the
// protocol closes the connection with the Status of the check it failed
// (decoder errors as moonpool-wire documents them; handshake failures as
// FailedPrecondition or InvalidArgument); the caller misusing the API gets a
// Status from the command and the connection is unaffected.
//
// States:
//
//   kHandshaking --peer Hello ok--> kOpen --Goodbye sent/received--> kClosing
//        |                            |                                 |
//        +------ error / transport closed / keepalive timeout ----------+-->
//        kClosed
//                                         kClosing, all answered --> kClosed
//                                         (OK)
//
// Not thread-safe: a connection belongs to one loop thread.
#ifndef MOONPOOL_PROTOCOL_CONNECTION_H_
#define MOONPOOL_PROTOCOL_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/protocol/connection_event.h"
#include "moonpool/protocol/connection_options.h"
#include "moonpool/protocol/connection_stats.h"
#include "moonpool/protocol/internal/pending_requests.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::protocol {

enum class ConnectionState { kHandshaking, kOpen, kClosing, kClosed };

absl::string_view ConnectionStateName(ConnectionState state);

class Connection {
 public:
  // A client connection starts with its Hello already in the output.
  Connection(ConnectionOptions options, absl::Time now);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // ---- Inputs ----

  // At least `min_bytes` of space to receive into; see CommitReceive. Less,
  // down to one byte, when the Buggify site protocol.tiny_receive_buffer
  // fires (buggify.h): a driver receives into whatever non-empty span it
  // gets, and asks again.
  absl::Span<char> PrepareReceive(size_t min_bytes);
  // `n` bytes of the last PrepareReceive() span arrived at `now`.
  void CommitReceive(size_t n, absl::Time now);
  // `bytes` arrived at `now` (a copy).
  void Receive(absl::Span<const char> bytes, absl::Time now);
  // The clock moved: fires deadlines and keepalive. Call at NextWakeup().
  void AdvanceTime(absl::Time now);
  // The socket closed (end of stream: OK; or the error the driver saw).
  // Bytes already received are still read as frames first, so replies that
  // arrived before the close are delivered; then the connection closes.
  void OnTransportClosed(absl::Status why, absl::Time now);

  // ---- Commands ----

  // Sends a request; returns its correlation id.
  //   FailedPrecondition: a server before its handshake, the connection is
  //     closing (a Goodbye was sent or received) or closed: send it on
  //     another connection;
  //   FailedPrecondition also: an exactly-once request before the
  //     handshake (it needs the server's incarnation);
  //   InvalidArgument: options.id (a resend) is not above every id sent on
  //     this connection;
  //   DeadlineExceeded: the deadline is not after `now`;
  //   ResourceExhausted: max_pending_requests or max_output_bytes reached,
  //     or the frame is over max_frame_bytes.
  [[nodiscard]] absl::StatusOr<CorrelationId> SendRequest(
      absl::string_view payload, const RequestOptions& options, absl::Time now);
  // Answers request `id`, received on this connection and not yet answered.
  //   NotFound: no such request awaits an answer (never received, already
  //     answered);
  //   FailedPrecondition: the connection is closed;
  //   ResourceExhausted: output or frame bound; the request still awaits an
  //     answer.
  [[nodiscard]] absl::Status SendReply(CorrelationId id,
                                       absl::string_view payload);
  // As SendReply, with the handler's `status` (not OK) as an error reply.
  [[nodiscard]] absl::Status SendErrorReply(CorrelationId id,
                                            const absl::Status& status);
  // Forgets request `id` without answering it: for a request whose deadline
  // passed before a handler took it (DESIGN.md section 5: dropped
  // unanswered; its requester has given up). NotFound when no such request
  // awaits an answer. Works in every state.
  [[nodiscard]] absl::Status AbandonRequest(CorrelationId id);
  // The requester gives up on request `id` it sent on this connection (its
  // caller cancelled or stopped waiting). The request is forgotten at once:
  // no ReplyReceived or RequestFailed comes for it, and a reply that arrives
  // later is dropped and counted as for an unknown id (replies_dropped). On
  // a version 2 connection one cancel frame tells the peer (a control frame:
  // the output bounds do not apply); before the handshake, while the version
  // is unknown, it is sent once the server's Hello says version 2, and never
  // on version 1. A request whose bytes are still in the output is written
  // anyway, the cancel behind it. NotFound when `id` is not pending (never
  // sent, already answered, failed or cancelled). Works in every state.
  [[nodiscard]] absl::Status CancelRequest(CorrelationId id);
  // ---- Reply streams (version 2) ----

  // Sends one item of the reply stream answering request `id`.
  //   NotFound: no such request awaits an answer;
  //   FailedPrecondition: it is not a stream request (or the connection is
  //     closed);
  //   ResourceExhausted: the stream is out of credit (check StreamWritable
  //     first), or the output or frame bound; nothing was sent.
  [[nodiscard]] absl::Status SendStreamItem(CorrelationId id,
                                            absl::string_view payload);
  // Whether request `id` awaits its answer as a stream with credit left:
  // the payload bytes of items sent, minus the bytes granted back, are
  // below its credit (so an item larger than the credit still goes when
  // nothing is outstanding).
  bool StreamWritable(CorrelationId id) const;
  // Ends the reply stream answering `id`, OK, with no last item.
  // NotFound, FailedPrecondition and ResourceExhausted as SendStreamItem
  // (credit aside). SendReply ends a stream with a last item, SendErrorReply
  // with a Status.
  [[nodiscard]] absl::Status SendStreamEnd(CorrelationId id);
  // The requester's application consumed `bytes` of the items of stream
  // `id`: they are granted back, in one credit frame (version 2; a control
  // frame: the output bounds do not apply). 0 does nothing.
  //   NotFound: `id` is not a pending stream request;
  //   InvalidArgument: more bytes than were received and not granted back.
  [[nodiscard]] absl::Status GrantCredit(CorrelationId id, uint64_t bytes);

  // A message that expects no answer. FailedPrecondition when closed or
  // before the handshake on a server; ResourceExhausted on a bound.
  [[nodiscard]] absl::Status SendOneWay(Endpoint endpoint,
                                        absl::string_view payload);
  // Starts the graceful close: tells the peer that requests above the last
  // one received so far will not be processed (they are refused when they
  // arrive). Answer those received; the connection then wants to close. A
  // second call does nothing. FailedPrecondition when closed.
  [[nodiscard]] absl::Status SendGoodbye(absl::string_view reason);

  // ---- Outputs ----

  // Bytes to write, oldest first; valid until the next non-const call.
  absl::Span<const char> PendingOutput() const { return output_.Readable(); }
  // The driver wrote (handed to the kernel) the first `n` pending bytes.
  // A request counts as written once all of its bytes are.
  void ConsumeOutput(size_t n);
  // The next event, or nullopt when there is none until more input. Views in
  // it are valid until the next non-const call.
  std::optional<Event> NextEvent();
  // When AdvanceTime should next be called; InfiniteFuture() for never.
  // Earlier than anything is due when the Buggify site
  // protocol.early_wakeup fires: AdvanceTime then does nothing.
  absl::Time NextWakeup() const;
  // True once the connection is over (kClosed), or closing with nothing left
  // to answer, wait for or write: the driver should close the socket.
  bool WantsClose() const;

  // Storage held for received bytes and for bytes to write: what the
  // connection costs in memory, beside its counters and request sets.
  size_t receive_capacity() const { return decoder_.capacity(); }
  size_t output_capacity() const { return output_.capacity(); }

  ConnectionState state() const { return state_; }
  // The protocol version agreed with the peer; 0 until the handshake is done
  // (and after a failed one).
  uint32_t version() const { return version_; }
  Role role() const { return options_.role; }
  // OK, or why the connection closed.
  const absl::Status& close_status() const { return close_status_; }
  ConnectionStats stats() const {
    ConnectionStats s = stats_;
    s.requests_in_flight = pending_.size();
    return s;
  }

 private:
  void NoteReceived(size_t n, absl::Time now);
  // Silence after which the next keepalive ping is due (Buggify may halve
  // it).
  absl::Duration PingDelay();
  [[nodiscard]] absl::Status CheckCanSend() const;
  [[nodiscard]] absl::Status CheckOutputRoom(size_t payload_bytes) const;
  // Encodes a data frame (request, reply, error, one-way) within the bounds.
  [[nodiscard]] absl::Status EncodeEnvelope(const EnvelopeView& envelope);
  // Sends a reply or error reply to a request awaiting one.
  [[nodiscard]] absl::Status Answer(const EnvelopeView& answer);
  // Encodes a control frame (Hello, Ping, Pong, Goodbye); bounds do not apply.
  template <typename Frame>
  void EncodeControl(const Frame& frame);
  // Gives back large output storage before a small frame (connection.cc).
  void ShrinkIdleOutput(size_t frame_bytes);
  // Handles one decoded frame; may queue events and return one directly.
  std::optional<Event> HandleFrame(const wire::FrameValue& frame);
  std::optional<Event> HandleHello(const wire::Hello& hello);
  std::optional<Event> HandleEnvelope(const EnvelopeView& envelope);
  std::optional<Event> HandleGoodbye(const wire::Goodbye& goodbye);
  std::optional<Event> HandleCancel(const wire::Cancel& cancel);
  std::optional<Event> HandleCredit(const wire::Credit& credit);
  // A reply, error reply, stream item or stream end for request `e`'s id.
  std::optional<Event> HandleAnswer(const EnvelopeView& e);
  // The record of a request received and awaiting its answer, or null.
  struct AwaitingReply;
  AwaitingReply* FindAwaiting(CorrelationId id);
  const AwaitingReply* FindAwaiting(CorrelationId id) const;
  // This side's Hello: as a client, its range; as a server, `version` chosen
  // (or its min, refusing).
  wire::Hello OwnHello(uint32_t version) const;
  // Encodes a cancel frame for `id`, unless the transport has closed.
  void EncodeCancel(CorrelationId id);
  // Closes after a protocol violation by the peer.
  void Fail(absl::Status why);
  // Closes: fails what is pending, queues Closed. `why` OK is graceful.
  void Close(absl::Status why);
  void FailPendingAbove(CorrelationId last, const absl::Status& why,
                        Delivery delivery);
  bool Written(const internal::PendingRequest& r) const {
    return consumed_bytes_ >= r.end_offset;
  }

  ConnectionOptions options_;
  CorrelationIdGenerator own_ids_;
  CorrelationIdGenerator* ids_;
  wire::FrameEncoder encoder_;
  wire::FrameDecoder decoder_;
  wire::ByteBuffer output_;
  // Stream offsets of the output: bytes ever encoded and ever consumed.
  uint64_t encoded_bytes_ = 0;
  uint64_t consumed_bytes_ = 0;

  ConnectionState state_ = ConnectionState::kHandshaking;
  absl::Status close_status_;
  // Set by OnTransportClosed; acted on once the buffered frames are read.
  std::optional<absl::Status> transport_closed_;
  bool goodbye_sent_ = false;
  bool goodbye_received_ = false;

  internal::PendingRequests pending_;
  // The negotiated version; 0 before the handshake.
  uint32_t version_ = 0;
  // Requests cancelled before the handshake, while the version was unknown:
  // their cancel frames are sent once it says version 2.
  std::vector<CorrelationId> cancels_before_handshake_;
  // Requests received and not yet answered, by id, and the highest id
  // received.
  struct AwaitingReply {
    bool cancelled = false;  // the peer sent `cancel` for it
    // A reply stream's credit (0: one reply), and the payload bytes of
    // items sent and not yet granted back.
    uint64_t stream_credit = 0;
    uint64_t outstanding = 0;
  };
  absl::flat_hash_map<uint64_t, AwaitingReply> awaiting_reply_;
  CorrelationId last_request_received_;
  // The highest id this side sent on this connection (a resend must be
  // above it).
  CorrelationId last_request_sent_;
  // The Goodbye we sent: requests above this are refused.
  CorrelationId goodbye_last_;

  // Keepalive.
  absl::Time last_receive_;
  // The latest time an input brought (AdvanceTime, bytes received).
  absl::Time latest_now_;
  absl::Time next_ping_;
  uint64_t next_ping_nonce_ = 1;
  // Output offset just past the last ping: unwritten while consumed_bytes_
  // is below it.
  uint64_t last_ping_end_ = 0;
  size_t queued_pongs_ = 0;

  // Events produced by inputs other than a frame read (time, close), and
  // by frames that produce more than one. Read from queue_head_ on.
  std::vector<Event> queue_;
  size_t queue_head_ = 0;

  ConnectionStats stats_;
};

}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_CONNECTION_H_
