// Peer drives one protocol Connection toward one address over a Loop:
// connect, handshake, a read pump into the protocol, a write pump out of it,
// the protocol's timer armed on the loop, reconnection with exponential
// backoff and jitter, and the request queue kept across a stall and across a
// reconnect. It is moonpool's FlowTransport "Peer": the client side of one
// link.
//
// What it guarantees (DESIGN.md section 6), for every Request accepted:
// `done` runs exactly once, on the loop's thread, never inside Request, with
//   - the reply's payload, or the handler's error Status;
//   - DeadlineExceeded when its deadline passes (once written, or queued
//     while connected but unable to write);
//   - Unavailable when it was never written and the peer stayed unreachable
//     until its deadline;
//   - Aborted ("maybe delivered") when it was written on a connection that
//     then died, unless it is idempotent: then it is sent again on the next
//     connection. A request the peer said it did not process (Goodbye) or
//     whose bytes never left is always sent again;
//   - FailedPrecondition when the peer speaks another protocol version;
//   - Cancelled when the Peer is closed or destroyed.
// A stall (no bytes move) is not a close: requests wait in bounded queues
// until their deadline or until the keepalive declares the peer gone.
//
// What it is not: a server (ServerTransport accepts), or thread-safe.
// Lifetime: owned by its creator; must be destroyed before its Loop.
// Destroying it closes it (Cancelled to everything pending).
#ifndef MOONPOOL_DRIVER_PEER_H_
#define MOONPOOL_DRIVER_PEER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/output_handoff.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::driver {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(50);
  double multiplier = 2.0;
  absl::Duration max = absl::Seconds(5);
  // Each delay is scaled by a factor drawn uniformly in [1 - jitter,
  // 1 + jitter] from the loop's seeded random source.
  double jitter = 0.2;
  // A connection that lived this long resets the delay to `initial`.
  absl::Duration reset_after = absl::Seconds(5);
};

struct PeerOptions {
  // Settings of each connection (keepalive, bounds, peer name,
  // incarnation). The role is always client; `ids` is the Peer's own.
  protocol::ConnectionOptions connection;
  BackoffOptions backoff;
  // A connect that has not completed by then counts as failed.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Requests (and one-way messages) waiting for a connection, and their
  // payload bytes. Past either, Request returns ResourceExhausted.
  size_t max_queued_requests = 4096;
  size_t max_queued_bytes = size_t{64} << 20;
  // Largest slice of output handed to the stream at once, and only when
  // it has nothing queued (driver/output_handoff.h): the stream copies what
  // the kernel does not take, so this bounds that copy; the rest waits in
  // the protocol's bounded output.
  size_t stream_high_water_bytes = size_t{1} << 20;
};

struct PeerRequestOptions {
  // On the loop's clock. InfiniteFuture(): now + the connection's
  // default_request_timeout.
  absl::Time deadline = absl::InfiniteFuture();
  bool idempotent = false;
  uint64_t endpoint = 0;
};

// The outcome of one request: the reply payload (valid only during the
// call) or why there is none.
using ReplyCallback =
    absl::AnyInvocable<void(absl::StatusOr<absl::string_view>)>;

struct PeerStats {
  uint64_t connect_attempts = 0;
  uint64_t connections = 0;  // established (TCP connected)
  uint64_t handshakes = 0;
  uint64_t requests = 0;  // accepted by Request
  uint64_t retries = 0;   // sent again after a connection ended
  uint64_t replies = 0;   // outcomes that were replies or error replies
  uint64_t failures = 0;  // outcomes that were not
  uint64_t keepalive_timeouts = 0;
  uint64_t protocol_errors = 0;  // connections closed for the peer's fault
};

enum class PeerState { kConnecting, kConnected, kBackingOff, kClosed };

class Peer final : private StreamHandler, private TurnEndHandler {
 public:
  // Starts connecting at once.
  Peer(Loop& loop, Address address, PeerOptions options = {});
  ~Peer() override;

  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Sends a request; see the class comment for the outcomes `done` gets.
  // Fails up front, without calling `done`: FailedPrecondition when closed,
  // ResourceExhausted when the queue is full, DeadlineExceeded when the
  // deadline has passed.
  absl::Status Request(std::string payload, const PeerRequestOptions& options,
                       ReplyCallback done);
  // Sends a message that expects no answer, queued like a request. It is
  // sent at most once: lost if the connection dies before it is written.
  absl::Status SendOneWay(uint64_t endpoint, std::string payload);

  // Fails everything pending with Cancelled, closes the connection (with a
  // Goodbye if it is open) and stops reconnecting. Idempotent.
  void Close();

  PeerState state() const { return state_; }
  const Address& address() const { return address_; }
  const PeerStats& stats() const { return stats_; }
  // The last reason a connection attempt or connection ended.
  const absl::Status& last_error() const { return last_error_; }
  // Requests accepted and without an outcome yet.
  size_t pending_requests() const { return queue_.size() + in_flight_.size(); }

 private:
  struct Pending {
    std::string payload;
    PeerRequestOptions options;
    ReplyCallback done;    // empty for one-way messages
    bool written = false;  // was written on some connection
  };

  // StreamHandler.
  absl::Span<char> ReadBuffer(size_t suggested) override;
  void OnRead(size_t n) override;
  void OnReadEnd(absl::Status status) override;
  void OnWritten(size_t n) override;
  void OnWriteError(absl::Status status) override;

  // TurnEndHandler: writes what requests of this turn produced, once.
  void OnTurnEnd() override;
  void ScheduleFlush();

  void StartConnect();
  void OnConnected(absl::Status status);
  void ScheduleReconnect(const absl::Status& why);
  // Drains the connection's events, moves queued requests into it, writes
  // its output, re-arms the timer, and tears the connection down when it is
  // over. The one place all of that happens.
  void Pump();
  void HandleEvent(protocol::Event& event);
  void SubmitQueued();
  void Flush();
  void TearDown();
  void OnTimer();
  void ArmTimer();
  void ExpireQueued(absl::Time now);
  void Complete(Pending& p, absl::StatusOr<absl::string_view> outcome);
  // Sends `p` on the connection; on failure `p` is left intact.
  absl::Status Submit(Pending& p);
  void SchedulePump();
  absl::Time ResolveDeadline(absl::Time deadline) const;

  Loop& loop_;
  const Address address_;
  PeerOptions options_;
  CorrelationIdGenerator ids_;
  PeerState state_ = PeerState::kConnecting;
  absl::Status last_error_;
  PeerStats stats_;

  std::unique_ptr<Stream> stream_;
  std::unique_ptr<protocol::Connection> connection_;
  absl::Time connected_at_;
  // The connection's output on its way into the stream.
  OutputHandoff handoff_;
  int backoff_attempts_ = 0;
  absl::Time reconnect_at_ = absl::InfiniteFuture();
  absl::Time connect_deadline_ = absl::InfiniteFuture();
  std::unique_ptr<Timer> timer_;
  // Runs Pump on the next turn (see SchedulePump).
  std::unique_ptr<Timer> pump_timer_;
  bool in_pump_ = false;
  bool flush_scheduled_ = false;
  bool repump_ = false;
  // Where the next retried request goes in queue_: retries keep their order
  // and go before requests that were never sent.
  size_t retry_position_ = 0;

  std::deque<Pending> queue_;
  size_t queued_bytes_ = 0;
  absl::flat_hash_map<uint64_t, Pending> in_flight_;
};

absl::string_view PeerStateName(PeerState state);

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_PEER_H_
