// Private to UvLoop: the loop's implementation (UvLoop::Impl) and the
// heap-allocated state behind each Timer, Stream and Listener. This is the
// only header that includes uv.h, and only UvLoop's .cc files include it.
//
// The one rule every state here follows is libuv's two-phase close. The
// object the user owns (UvTimer, UvStream, UvListener) is a thin handle on a
// state that embeds the uv handle, its requests and their buffers. Destroying
// or closing the user's object marks the state `closed`, drops its callbacks
// and calls uv_close; from then on libuv may still call into the state (a
// write or connect request completes with UV_ECANCELED, then the close
// callback runs), so the state outlives its owner until libuv's close
// callback deletes it. Every callback from libuv checks `closed` first, which
// is how "after Close returns, nothing is called back" holds.
#ifndef MOONPOOL_DRIVER_SRC_UV_INTERNAL_H_
#define MOONPOOL_DRIVER_SRC_UV_INTERNAL_H_

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"
#include "moonpool/driver/uv_loop.h"

namespace moonpool::driver {
namespace internal {

// A libuv error (negative errno) as a Status whose message is
// "<what>: <uv_strerror> (<uv_err_name>)". The code, most specific first:
//   ECONNREFUSED ECONNRESET ECONNABORTED EPIPE ETIMEDOUT ENETUNREACH
//   EHOSTUNREACH ENETDOWN ENOTCONN EADDRNOTAVAIL EAI_AGAIN  -> Unavailable
//   EADDRINUSE                                -> AlreadyExists (not retried
//                                                blindly: someone holds it)
//   EACCES EPERM                              -> PermissionDenied
//   EINVAL EAFNOSUPPORT                       -> InvalidArgument
//   ECANCELED                                 -> Cancelled
//   EMFILE ENFILE ENOMEM ENOBUFS              -> ResourceExhausted
//   anything else                             -> Unknown
// UV_EOF is not an error; callers turn it into OkStatus before calling this.
absl::Status UvStatus(int uv_error, absl::string_view what);

// Address <-> struct sockaddr. `storage` is large enough for either family.
void ToSockaddr(const Address& address, sockaddr_storage* storage);
Address FromSockaddr(const sockaddr_storage& storage);
// The local / remote address of a TCP handle; Address() when the OS cannot
// say (a peer that already reset, say).
Address LocalAddressOf(const uv_tcp_t* tcp);
Address PeerAddressOf(const uv_tcp_t* tcp);

// Closes `handle` and deletes the State that embeds it (handle->data) in
// libuv's close callback, once libuv is done with it.
template <typename State>
void CloseAndDelete(uv_handle_t* handle) {
  uv_close(handle, [](uv_handle_t* h) { delete static_cast<State*>(h->data); });
}

struct TimerState;
struct StreamState;
struct ListenerState;

}  // namespace internal

class UvLoop::Impl {
 public:
  explicit Impl(const UvLoopOptions& options);
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl();

  uv_loop_t* uv() { return &loop_; }
  size_t read_buffer_bytes() const { return read_buffer_bytes_; }

  // --- Time. See uv_loop.cc for when the cached time moves.
  absl::Time Now() const;
  // Samples the clock now (never backwards).
  void RefreshTime() const;
  // The delay to give uv_timer_start so that the timer fires no earlier
  // than `when` on our clock: libuv counts from its own cached millisecond
  // clock, which may lag ours. Rounds up; UINT64_MAX for "never".
  uint64_t TimerDelayMs(absl::Time when) const;

  uint64_t Random() { return rng_(); }

  // --- Posted work and timers due at once, drained by the idle handle.
  void Post(absl::AnyInvocable<void()> fn);
  void ScheduleTurnEnd(TurnEndHandler* handler);
  void CancelTurnEnd(TurnEndHandler* handler);
  void PostFromAnyThread(absl::AnyInvocable<void()> fn);
  void AddDueTimer(internal::TimerState* timer);
  void RemoveDueTimer(internal::TimerState* timer);

  // --- Running.
  void Run();
  bool RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline);
  void Stop();
  // Drops queued callbacks, closes the loop's own handles, runs libuv until
  // every close callback has run and closes the uv loop. Called by ~UvLoop
  // after the tasks are gone.
  void Shutdown();

  // --- Factories (uv_timer.cc, uv_stream.cc, uv_listener.cc).
  std::unique_ptr<Timer> CreateTimer(absl::AnyInvocable<void()> on_fire);
  absl::StatusOr<std::unique_ptr<Listener>> Listen(const Address& address,
                                                   const ListenOptions& options,
                                                   AcceptCallback on_accept);
  absl::StatusOr<std::unique_ptr<Stream>> Connect(const Address& address,
                                                  ConnectCallback on_connected);
  // uv_resolve.cc.
  absl::StatusOr<std::unique_ptr<Resolution>> Resolve(absl::string_view host,
                                                      uint16_t port,
                                                      ResolveCallback done);

  // Timers, streams, listeners and resolutions handed to the user and not yet
  // destroyed: all must be gone before the loop is (checked in debug).
  int live_objects = 0;

 private:
  int Turn();
  void DrainPosted();
  void UpdateIdle();
  // Runs the turn-end handlers; from the prepare handle, before the poll.
  void RunTurnEnd();
  // Runs what PostFromAnyThread queued; true if there was any.
  bool DrainRemote();

  uv_loop_t loop_;
  // Active only while posted_ or the due-timer list is non-empty; an active
  // idle handle makes libuv poll without blocking.
  uv_idle_t idle_;
  bool idle_active_ = false;
  // Runs just before libuv polls: marks the cached time stale so the first
  // Now() after the poll samples the clock again.
  uv_prepare_t prepare_;
  // Drains posted work queued during the poll's callbacks (see uv_loop.cc).
  uv_check_t check_;
  // Wakes the loop for PostFromAnyThread. Unreferenced: it alone does not
  // keep Run going.
  uv_async_t async_;
  const size_t read_buffer_bytes_;

  // Monotonic nanoseconds on uv_hrtime's clock, and the absl::Time that
  // base_ns_ stands for (the wall clock when the loop was made).
  int64_t base_ns_;
  absl::Time base_time_;
  mutable int64_t now_ns_;
  mutable absl::Time now_time_;  // now_ns_ as a time (RefreshTime)
  mutable bool time_stale_ = true;

  std::mt19937_64 rng_;

  // Post's FIFO and the batch being run; swapped each drain so neither
  // reallocates once warm, and so work posted while draining waits a turn.
  std::vector<absl::AnyInvocable<void()>> posted_;
  std::vector<absl::AnyInvocable<void()>> draining_;
  // Turn-end handlers scheduled, and the batch being run (null entries were
  // cancelled). Swapped like posted_.
  std::vector<TurnEndHandler*> turn_end_;
  std::vector<TurnEndHandler*> turn_end_running_;
  // Timers started for a time not in the future: an intrusive FIFO, so
  // arming one allocates nothing. Each entry carries the drain generation
  // it was queued in; a drain runs only older ones.
  internal::TimerState* due_head_ = nullptr;
  internal::TimerState* due_tail_ = nullptr;
  uint64_t drain_generation_ = 0;

  std::mutex remote_mu_;
  std::vector<absl::AnyInvocable<void()>> remote_;  // guarded by remote_mu_
  std::vector<absl::AnyInvocable<void()>> remote_draining_;

  // Arms RunUntil's deadline so a turn never blocks past it.
  internal::TimerState* deadline_timer_ = nullptr;

  bool running_ = false;
  bool stop_requested_ = false;
  bool shutting_down_ = false;
};

namespace internal {

struct TimerState {
  TimerState(UvLoop::Impl* loop, absl::AnyInvocable<void()> on_fire);

  void Start(absl::Time when);
  void Stop();
  // Stops, drops the callback (unless it is running: then it goes with the
  // state) and closes the handle; the state deletes itself later.
  void Close();
  // Runs the callback now (the time has come).
  void Fire();

  uv_timer_t uv;
  UvLoop::Impl* const loop;
  absl::AnyInvocable<void()> on_fire;
  absl::Time when = absl::InfiniteFuture();
  bool active = false;
  bool firing = false;
  bool closed = false;
  // Membership of the loop's due list.
  TimerState* due_prev = nullptr;
  TimerState* due_next = nullptr;
  bool on_due_list = false;
  uint64_t due_generation = 0;
};

struct StreamState {
  enum class Phase { kConnecting, kConnected, kFailed };

  StreamState(UvLoop::Impl* loop, Phase phase, Address peer);

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }

  void SetHandler(StreamHandler* h);
  absl::Status StartReading();
  void StopReading();
  absl::StatusOr<size_t> Write(absl::Span<const char> bytes);
  absl::StatusOr<size_t> WriteGathered(
      absl::Span<const absl::Span<const char>> pieces);
  size_t QueuedBytes() const;
  void Shutdown();
  void Close();

  // Issues the next uv_write from in_flight at in_flight_offset.
  absl::Status StartWrite();
  void MaybeShutdown();
  absl::Status StartUvRead();
  void OnConnected(int status);
  void OnWriteDone(int status);
  void ReportWriteError(absl::Status status);

  uv_tcp_t tcp;
  UvLoop::Impl* const loop;
  Address peer;  // set at accept for accepted streams
  StreamHandler* handler = nullptr;
  Phase phase;
  bool closed = false;

  uv_connect_t connect_req;
  ConnectCallback on_connected;

  // Set by a failed connect or a failed write; Write returns it from then
  // on and nothing more is written.
  absl::Status broken;

  bool want_reading = false;  // StartReading called and not stopped
  bool reading = false;       // uv_read_start in effect
  bool read_ended = false;    // OnReadEnd delivered

  // Writes. in_flight holds the bytes of the one uv_write in flight (from
  // in_flight_offset, write_chunk of them); pending collects what Write is
  // given meanwhile and becomes the next in_flight, so every burst of small
  // writes leaves as one gathered write.
  uv_write_t write_req;
  bool write_in_flight = false;
  std::string in_flight;
  size_t in_flight_offset = 0;
  size_t write_chunk = 0;
  std::string pending;

  bool shutdown_requested = false;
  bool shutdown_sent = false;
  uv_shutdown_t shutdown_req;
};

struct ListenerState {
  ListenerState(UvLoop::Impl* loop, AcceptCallback on_accept);

  void Deliver(absl::StatusOr<std::unique_ptr<Stream>> stream);
  void Close();

  uv_tcp_t tcp;
  UvLoop::Impl* const loop;
  AcceptCallback on_accept;
  Address address;
  bool accepting = false;
  bool closed = false;
};

// Wraps an accepted or connecting StreamState in the Stream the user owns.
std::unique_ptr<Stream> MakeUvStream(StreamState* state, Address local);

}  // namespace internal
}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_SRC_UV_INTERNAL_H_
