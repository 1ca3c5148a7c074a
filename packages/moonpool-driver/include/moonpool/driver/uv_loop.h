// UvLoop is the production Loop (loop.h), on libuv. It is the only part of
// moonpool that includes uv.h, and it does so only in its .cc files.
//
// What it adds to the Loop contract:
//   - Writes try the kernel at once (uv_try_write) and queue the rest as one
//     gathered write; bytes written while a write is in flight are coalesced
//     into the next one. OnWritten reports only queued bytes. A write the
//     kernel takes at once, a read, and a timer re-arm allocate nothing.
//   - Reads go into the buffer the StreamHandler provides (zero copy into a
//     protocol's receive buffer). ReadBuffer may be asked again without an
//     OnRead in between (the socket had nothing after all); the newest span
//     is the one used.
//   - A closed handle never calls back after Close; its memory is freed in
//     libuv's close callback.
//   - Connect: a failed connect is reported by the connect callback alone;
//     bytes queued before it are dropped and Write / StartReading return
//     the error from then on. Every stream has TCP_NODELAY set.
//   - Errors carry libuv's text ("connect to 127.0.0.1:9: connection refused
//     (ECONNREFUSED)") and these codes: refused, reset, broken pipe, timed
//     out, unreachable -> Unavailable; address in use -> AlreadyExists;
//     EACCES/EPERM -> PermissionDenied; EINVAL, or a listen address this
//     host lacks -> InvalidArgument; out of descriptors or memory ->
//     ResourceExhausted; anything else -> Unknown.
//   - Now() is CLOCK_MONOTONIC with nanosecond resolution, offset to read as
//     the wall clock when the loop was made. It is sampled lazily at most
//     twice per turn: on the first use after the turn begins and on the
//     first use after the poll for I/O returns (libuv's own two updates);
//     within one phase it does not move. When a Timer fires, Now() is at or
//     past the time it was started for.
//   - Posted work is drained at most twice per turn: in libuv's idle phase,
//     before the poll for I/O, and in its check phase, right after the
//     poll's callbacks (so a reply that resumes its requester runs without
//     waiting for another poll). Work posted during a drain waits for the
//     next one, and the poll always runs between two drains, so a chain of
//     posts cannot starve sockets. While work is queued the idle handle is
//     active, so the poll does not block.
//   - Timers started for a time not in the future fire on the loop's next
//     drain of posted work, in the order started; one re-armed for "now"
//     from its own callback fires on the drain after, so like a chain of
//     posts it cannot starve the loop. A timer armed for
//     absl::InfiniteFuture() is active but does not keep Run going. Timers
//     due in the same millisecond may fire in the order they were started
//     rather than by their sub-millisecond times.
//   - PostFromAnyThread is the one call allowed from another thread
//     (uv_async). It does not by itself keep Run going: work that has
//     arrived runs before Run reports that nothing is left, but a Run with
//     nothing else to wait for does not wait for future posts.
//   - Destroying the loop destroys suspended tasks, then destroys queued
//     posted work without running it, then closes what is left. Timers,
//     streams and listeners must be gone by then (asserted in debug builds).
//   - Writing to a reset connection raises SIGPIPE on Linux; the first
//     UvLoop made sets SIGPIPE to ignored unless the program has its own
//     disposition for it.
//   - Resolve is uv_getaddrinfo (AF_UNSPEC, SOCK_STREAM, AI_ADDRCONFIG;
//     AI_NUMERICHOST for a literal, so that one never waits for a server),
//     on libuv's thread pool. EAI_NONAME and EAI_NODATA -> NotFound,
//     EAI_AGAIN and EAI_FAIL and the rest -> Unavailable, EAI_MEMORY ->
//     ResourceExhausted, with gai's text. Destroying the Resolution calls
//     uv_cancel; a lookup already running finishes on its thread and its
//     answer is dropped. The system resolver has its own timeouts
//     (resolv.conf): destroying the loop waits for lookups still running.
//   - Run / RunUntil must not be called from inside the loop's callbacks.
//
// Example:
//
//   moonpool::driver::UvLoop loop;   // or UvLoop(UvLoopOptions{.seed = 42})
//   auto listener = loop.Listen(Address::Loopback(0), {}, on_accept);
//   loop.Run();
#ifndef MOONPOOL_DRIVER_UV_LOOP_H_
#define MOONPOOL_DRIVER_UV_LOOP_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/signal_watch.h"

namespace moonpool::driver {

struct UvLoopOptions {
  // Seed of Random(); nullopt draws one from std::random_device.
  std::optional<uint64_t> seed;
  // Size suggested to StreamHandler::ReadBuffer.
  size_t read_buffer_bytes = 64 * 1024;
};

class UvLoop final : public Loop {
 public:
  explicit UvLoop(UvLoopOptions options = {});
  // Destroys suspended tasks, closes what is left and runs libuv until every
  // handle's close callback has run: nothing leaks.
  ~UvLoop() override;

  absl::Time Now() const override;
  uint64_t Random() override;
  // Production takes no rare path on purpose: false, without a lookup.
  bool Buggify(absl::string_view site) override {
    (void)site;
    return false;
  }
  std::unique_ptr<Timer> CreateTimer(
      absl::AnyInvocable<void()> on_fire) override;
  void Post(absl::AnyInvocable<void()> fn) override;
  void ScheduleTurnEnd(TurnEndHandler* handler) override;
  void CancelTurnEnd(TurnEndHandler* handler) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Listener>> Listen(
      const Address& address, const ListenOptions& options,
      AcceptCallback on_accept) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Stream>> Connect(
      const Address& address, ConnectCallback on_connected) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Resolution>> Resolve(
      absl::string_view host, uint16_t port, ResolveCallback done) override;
  void Run() override;
  bool RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  void Stop() override;

  // Runs `fn` on the loop's thread on a later turn. The only UvLoop call
  // that is safe from any thread.
  void PostFromAnyThread(absl::AnyInvocable<void()> fn);

  // Calls `on_signal(signum)` from the loop each time the process receives
  // one of `signals`, until the returned watch is destroyed (signal_watch.h
  // has the rules). InvalidArgument for an empty or repeated list or a
  // signal that cannot be caught (SIGKILL, SIGSTOP, out of range).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<SignalWatch>> WatchSignals(
      absl::Span<const int> signals, SignalCallback on_signal);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_UV_LOOP_H_
