// ConnectionDriver drives one protocol Connection over one Stream: it is the
// one place where a Connection meets a socket, used by both ends (the
// client's Peer and each of the server's accepted connections). The
// protocol is symmetric, so the driver is too: either end may send
// requests and serve them.
//
// What it does, so its owners do not:
//   - reads straight into the protocol's receive buffer (zero copy);
//   - pumps: takes the protocol's events one at a time and gives each to the
//     owner's ConnectionHandler, pausing (not reading the socket) while the
//     owner says a bound holds, until Resume();
//   - writes: commands queue frames in the protocol; the output is written
//     once at the end of the turn (however many commands the turn gave), in
//     slices through OutputHandoff;
//   - time: the protocol's keepalive and deadlines, a read timeout (a frame
//     must arrive whole in time) and an idle timeout (Goodbye, then close),
//     on one timer; the keepalive clock stands still while paused;
//   - closing: a Goodbye exchanged and everything written closes the socket;
//     when the protocol closes by itself (a refused Hello, a peer's protocol
//     error) what it queued before (the Hello that names its versions, a
//     Goodbye) is still written before the socket closes, bounded by
//     `close_linger`; then the owner hears OnClosed, once, last.
//
// What it is not: a reconnecting client (Peer adds connect, backoff and
// retry on top), or a request table: replies and failures reach the owner as
// protocol events, and the owner matches them to its callers.
//
// Ownership: the owner owns the driver (std::unique_ptr) and the handler,
// which must outlive it. The driver owns its Stream, Connection and timers.
// Destroying it closes the socket at once and calls nothing back. The owner
// must not destroy it from inside one of the handler's calls: after
// OnClosed, destroy it on a later turn (a reaper timer, as Peer and the
// server do). Loop's thread only.
#ifndef MOONPOOL_DRIVER_CONNECTION_DRIVER_H_
#define MOONPOOL_DRIVER_CONNECTION_DRIVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/output_handoff.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::driver {

struct ConnectionDriverOptions {
  protocol::ConnectionOptions connection;
  // Largest slice of output handed to the stream at once, and only when it
  // has nothing queued (output_handoff.h): the stream copies what the
  // kernel does not take, so this bounds that copy.
  size_t stream_high_water_bytes = size_t{1} << 20;
  // A frame begun must arrive whole within this; else the connection closes
  // with DeadlineExceeded. The keepalive cannot see a peer that trickles
  // bytes. InfiniteDuration: no limit.
  absl::Duration read_timeout = absl::InfiniteDuration();
  // Nothing in flight either way, and no request, one-way message or answer
  // for this long: the driver says Goodbye (the peer sends its later
  // requests on a new connection) and closes once both sides are done.
  // Pings do not count. InfiniteDuration: never.
  absl::Duration idle_timeout = absl::InfiniteDuration();
  // How long a connection the protocol closed may take to write what it
  // queued before (see the class comment) before the socket is cut. After
  // a Goodbye exchange the wait for the peer's FIN is at least three
  // keepalive timeouts (a stall the peer survives must not become a reset).
  absl::Duration close_linger = absl::Seconds(1);
};

// What one connection did, beyond the protocol's own counters.
struct ConnectionDriverStats {
  protocol::ConnectionStats connection;
  // The protocol's ProtocolErrors summed: connections closed for the peer's
  // fault, counted once here for every owner.
  uint64_t protocol_errors = 0;
  uint64_t read_timeouts = 0;
  uint64_t idle_timeouts = 0;
  uint64_t pauses = 0;  // times reading stopped for an owner's bound
};

// The owner's side. All calls come from the driver's pump, on the loop's
// thread, never from inside a command the owner called.
class ConnectionHandler {
 public:
  // Every protocol event but Closed, in order. Views in it are valid only
  // during the call. The handler may call the driver's commands.
  virtual void OnEvent(protocol::Event& event) = 0;
  // Whether the driver may take one more event now. False pauses reading
  // (the protocol then buffers at most the frame it has) until Resume().
  virtual bool CanTakeEvent() { return true; }
  // Once per pump, after the events and before writing: the moment to move
  // queued work into the connection.
  virtual void OnPumped() {}
  // After each write of the pump: the output may have room again.
  virtual void OnFlushed() {}
  // The connection is over: OK when both sides said Goodbye, else why.
  // The last call; the socket is closed. Do not destroy the driver here.
  virtual void OnClosed(const absl::Status& status) = 0;

 protected:
  ~ConnectionHandler() = default;
};

class ConnectionDriver final : private StreamHandler, private TurnEndHandler {
 public:
  // `stream` is connected. Nothing happens before Start().
  ConnectionDriver(Loop& loop, std::unique_ptr<Stream> stream,
                   ConnectionDriverOptions options, ConnectionHandler& handler);
  ~ConnectionDriver() override;

  ConnectionDriver(const ConnectionDriver&) = delete;
  ConnectionDriver& operator=(const ConnectionDriver&) = delete;

  // Starts reading. With `pump_now`, pumps at once (a client has its Hello
  // and maybe requests to write); otherwise on a later turn.
  void Start(bool pump_now);

  // ---- Commands (protocol::Connection's, written at the end of the turn) ----
  [[nodiscard]] absl::StatusOr<CorrelationId> SendRequest(
      absl::string_view payload, const protocol::RequestOptions& options);
  [[nodiscard]] absl::Status SendOneWay(Endpoint endpoint,
                                        absl::string_view payload);
  [[nodiscard]] absl::Status SendReply(CorrelationId id,
                                       absl::string_view payload);
  [[nodiscard]] absl::Status SendErrorReply(CorrelationId id,
                                            const absl::Status& status);
  // Reply streams (protocol version 2; protocol::Connection's contracts).
  // An item of the stream answering `id`; ResourceExhausted when it is out
  // of credit (check StreamWritable; CreditReceived says when to look again).
  [[nodiscard]] absl::Status SendStreamItem(CorrelationId id,
                                            absl::string_view payload);
  bool StreamWritable(CorrelationId id) const {
    return connection_.StreamWritable(id);
  }
  // Ends the stream answering `id`, OK: one request fewer is being served.
  [[nodiscard]] absl::Status SendStreamEnd(CorrelationId id);
  // Gives `bytes` of the stream `id` this side requested back to its sender.
  [[nodiscard]] absl::Status GrantCredit(CorrelationId id, uint64_t bytes);
  // Forgets a received request unanswered (its deadline passed unserved).
  [[nodiscard]] absl::Status AbandonRequest(CorrelationId id);
  // Gives up on a request sent here: forgotten, and `cancel` is written on
  // a version 2 connection (protocol::Connection::CancelRequest).
  [[nodiscard]] absl::Status CancelRequest(CorrelationId id);
  // Says Goodbye and reads on (even when paused) until both sides are done.
  // FailedPrecondition when the protocol refuses (closed, or a server still
  // in its handshake).
  [[nodiscard]] absl::Status SendGoodbye(absl::string_view reason);

  // A bound the handler reported has lifted: read again.
  void Resume();
  // Closes the socket now; no call back follows. Idempotent.
  void Close();

  bool closed() const { return state_ == State::kClosed; }
  bool paused() const { return paused_; }
  // The protocol ended (its Closed event came out): commands fail.
  bool ending() const { return state_ != State::kOpen; }
  // Requests received and not yet answered or abandoned.
  size_t requests_being_served() const { return serving_; }
  const Address& peer_address() const { return peer_address_; }
  const protocol::Connection& connection() const { return connection_; }
  ConnectionDriverStats stats() const;

 private:
  enum class State { kOpen, kLingering, kClosed };

  // StreamHandler.
  absl::Span<char> ReadBuffer(size_t suggested) override;
  void OnRead(size_t n) override;
  void OnReadEnd(absl::Status status) override;
  void OnWritten(size_t n) override;
  void OnWriteError(absl::Status status) override;
  // TurnEndHandler: the turn's commands are written here, once.
  void OnTurnEnd() override;

  void PumpAtTurnEnd();
  void PumpSoon();
  // Takes events (as far as the handler's bounds allow), writes, and closes
  // the socket when the protocol is done. The one place all of that happens.
  void Pump();
  void Flush();
  void TransportClosed(absl::Status why);
  void Pause();
  void OnTimer();
  void ArmTimer();
  absl::Time TimeoutAt() const;
  void CheckTimeouts(absl::Time now);
  void NoteActivity() { last_activity_ = loop_.Now(); }
  // After a frame was queued: written at the end of the turn.
  void Sent();
  // After an answer or abandon: one request fewer is being served.
  [[nodiscard]] absl::Status Answered(absl::Status status);
  // After the protocol's Closed: write what it queued, then Finish.
  void Linger();
  void Finish();

  Loop& loop_;
  ConnectionHandler& handler_;
  const ConnectionDriverOptions options_;
  std::unique_ptr<Stream> stream_;
  const Address peer_address_;
  protocol::Connection connection_;
  std::unique_ptr<Timer> timer_;
  OutputHandoff handoff_;
  // Where bytes read while lingering are thrown away (ReadBuffer).
  static constexpr size_t kDiscardBytes = 4096;
  std::unique_ptr<char[]> discard_;

  State state_ = State::kOpen;
  absl::Status close_status_;
  size_t serving_ = 0;
  // While paused the protocol's keepalive clock stands still; after a
  // resume the bytes waiting in the kernel get a keepalive timeout to
  // arrive before the peer may be declared gone.
  absl::Time grace_until_ = absl::InfinitePast();
  // When the frame now arriving began (InfiniteFuture: none is), and the
  // last request, one-way message or answer (for the idle timeout).
  absl::Time partial_since_ = absl::InfiniteFuture();
  absl::Time last_activity_;
  absl::Time linger_until_ = absl::InfiniteFuture();
  uint64_t read_timeouts_ = 0;
  uint64_t idle_timeouts_ = 0;
  uint64_t pauses_ = 0;
  bool idle_closing_ = false;
  bool paused_ = false;
  bool transport_closed_ = false;
  // The stream can take no more writes (an error, or we closed it), the
  // peer's end of stream came, and our FIN was asked for.
  bool write_broken_ = false;
  bool read_ended_ = false;
  bool shutdown_ = false;
  bool pump_at_turn_end_ = false;
  bool delayed_once_ = false;  // Buggify: this turn-end pump was put off
  bool in_pump_ = false;
  bool repump_ = false;
};

// The sum of a connection's ProtocolErrors.
uint64_t TotalProtocolErrors(const protocol::ProtocolErrors& e);

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_CONNECTION_DRIVER_H_
