// Loop is the event loop interface that everything above moonpool-driver
// uses: the time, timers, posted callbacks, host-name resolution, TCP listen
// / connect / read / write / shutdown / close, a seeded random source,
// Buggify decisions, and running.
//
// Two implementations: UvLoop (uv_loop.h), on libuv, for production; and the
// simulated loop of moonpool-chaos, for deterministic tests. Code above the
// driver cannot tell them apart and must not try: it takes a Loop&.
//
// Threads: a loop and everything made from it (timers, streams, listeners,
// tasks) belong to the thread that runs it. The only call allowed from
// another thread is the one an implementation documents for waking it
// (UvLoop::PostFromAnyThread).
//
// Lifetimes (libuv's and kj's rules): an object made by a loop is owned by
// its creator through std::unique_ptr and must be destroyed before the loop;
// destroying it cancels it and no callback of it runs afterwards. A call that
// fails up front returns a Status and calls nothing back; no callback runs
// inside the call that started it. Tasks spawned on the loop (task.h) are
// destroyed, at their suspension points, when the loop is destroyed.
//
// Example:
//
//   moonpool::driver::UvLoop loop;
//   auto timer = loop.CreateTimer([&] { loop.Stop(); });
//   timer->Start(loop.Now() + absl::Milliseconds(10));
//   loop.Run();
#ifndef MOONPOOL_DRIVER_LOOP_H_
#define MOONPOOL_DRIVER_LOOP_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"
#include "moonpool/protocol/always.h"
#include "moonpool/protocol/buggify.h"

namespace moonpool::driver {

class TaskScope;

// Work to run once at the end of the current loop turn: after the turn's
// callbacks and posted work, before the loop waits for I/O. This is how
// writes are coalesced: a connection that has output marks itself, and
// however many requests the turn produced, it writes once. Implemented by
// the code that owns the work (Peer, a server connection).
class TurnEndHandler {
 public:
  virtual void OnTurnEnd() = 0;

 protected:
  ~TurnEndHandler() = default;
};

// Called once when a connect completes: OK, or why it failed (refused,
// unreachable, timed out).
using ConnectCallback = absl::AnyInvocable<void(absl::Status)>;

// Called once when a host-name lookup ends: the addresses found (never
// empty), or why there are none.
using ResolveCallback =
    absl::AnyInvocable<void(absl::StatusOr<std::vector<Address>>)>;

// A host-name lookup in progress (Loop::Resolve), owned by whoever asked.
// Destroying it abandons the lookup: its callback never runs afterwards,
// even when the implementation cannot stop the lookup itself (UvLoop's
// getaddrinfo runs on libuv's thread pool and may be past cancelling; its
// answer is then swallowed). This is how a caller bounds a lookup by a
// deadline: a timer of its own destroys the handle.
class Resolution {
 public:
  virtual ~Resolution() = default;
};

class Loop {
 public:
  Loop() = default;
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  virtual ~Loop();

  // The loop's time: monotonic, sampled at most twice per turn (when the
  // turn starts and after the poll returns), constant within a callback.
  virtual absl::Time Now() const = 0;
  // Seeded pseudo-random numbers; the seed is the implementation's option.
  // Not for keys: TLS takes OpenSSL's randomness (see FillTlsRandom).
  virtual uint64_t Random() = 0;

  // The two things TLS (tls_stream.h) would otherwise take from the system,
  // so that a simulated loop can replay a TLS run from its seed.
  // FillTlsRandom fills `out` and returns true to stand in for OpenSSL's
  // random source while this loop's TLS streams work; false (UvLoop, and the
  // default) leaves OpenSSL's own CSPRNG in charge. Only a loop that is never
  // used for real traffic may return true.
  virtual bool FillTlsRandom(absl::Span<unsigned char> out) {
    (void)out;
    return false;
  }
  // The calendar time certificates are checked against (validity dates).
  // The default, and UvLoop: the system clock. SimLoop: its virtual time.
  virtual absl::Time WallTime() const { return absl::Now(); }

  // Whether the Buggify site `site` takes its rare but legal path this time
  // (after FoundationDB's BUGGIFY: a tiny buffer, an early ping, a delayed
  // flush), so that a simulation reaches paths an ordinary run seldom does.
  // Sites are named "<layer>.<what>" and listed by their layer
  // (protocol/buggify.h shows how). UvLoop answers false, always, at the cost
  // of a virtual call. The simulated loop answers from its seed: a site is
  // enabled or not for the whole run the first time it is asked, and an
  // enabled site then fires on some of its evaluations; each evaluation is
  // recorded for the coverage report. Code must be correct whatever the
  // answer: a site only picks among paths that are all legal.
  virtual bool Buggify(absl::string_view site) = 0;

  // Records whether the run-time invariant `name` held this time (an
  // Always point, after FoundationDB's and Antithesis's: names and rules in
  // moonpool/protocol/always.h). A false one changes nothing here; the
  // simulated loop records it and fails the run. UvLoop records nothing.
  virtual void Always(bool held, absl::string_view name,
                      absl::string_view detail) {
    (void)held;
    (void)name;
    (void)detail;
  }

  virtual std::unique_ptr<Timer> CreateTimer(
      absl::AnyInvocable<void()> on_fire) = 0;
  // Runs `fn` later on the loop's thread, in the order posted: never inside
  // the call that posted it, and never in the same drain as the posted work
  // that posted it, so a chain of posts cannot starve sockets: the loop
  // polls for I/O between every few links (UvLoop: at most two links per
  // turn, one drained before the turn's poll and one after it; SimLoop:
  // one per turn).
  virtual void Post(absl::AnyInvocable<void()> fn) = 0;

  // Runs `handler->OnTurnEnd()` once at the end of this turn (or of the
  // next, when called from inside OnTurnEnd). The caller schedules a handler
  // at most once until it runs; a handler destroyed while scheduled must be
  // cancelled first.
  virtual void ScheduleTurnEnd(TurnEndHandler* handler) = 0;
  virtual void CancelTurnEnd(TurnEndHandler* handler) = 0;

  // Binds and listens. InvalidArgument for a bad address, the OS error
  // (address in use, permission) otherwise.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Listener>> Listen(
      const Address& address, const ListenOptions& options,
      AcceptCallback on_accept) = 0;
  // Starts connecting to `address`. The Stream is usable (SetHandler,
  // Write queues) at once; `on_connected` runs once, unless the Stream is
  // destroyed first.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Stream>> Connect(
      const Address& address, ConnectCallback on_connected) = 0;

  // Looks `host` up for TCP and calls `done` once, on a later turn, with
  // every address found, each with `port`, in the order the resolver gives
  // them (duplicates removed), unless the returned handle is destroyed
  // first. `host` is a DNS name or an IP literal (IPv6 without brackets); a
  // literal is answered with itself, without a lookup. Outcomes: NotFound
  // (no such name, or it has no address), Unavailable (the resolver could
  // not answer now: worth asking again later), ResourceExhausted. Each
  // message starts with "resolving <host>: ". Fails up front, calling
  // nothing, with InvalidArgument for an empty host, Unavailable when the
  // loop cannot start a lookup. A lookup is not bounded by the Loop: the
  // caller bounds it by destroying the handle. UvLoop: uv_getaddrinfo;
  // SimLoop: its simulated resolver (sim_loop.h).
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Resolution>> Resolve(
      absl::string_view host, uint16_t port, ResolveCallback done) = 0;

  // Runs until Stop() or until nothing is left to wait for.
  virtual void Run() = 0;
  // Runs until `done()` is true (checked after every turn) or the loop's
  // time reaches `deadline`; returns done().
  virtual bool RunUntil(absl::FunctionRef<bool()> done,
                        absl::Time deadline) = 0;
  // Makes Run / RunUntil return after the current turn.
  virtual void Stop() = 0;

 protected:
  // Destroys every task still suspended in a TaskScope of this loop.
  // Implementations call it first thing in their destructor, while timers
  // and streams the tasks own can still be closed.
  void DestroyTasks();

 private:
  friend class TaskScope;
  TaskScope* scopes_ = nullptr;  // intrusive list of live scopes
};

// `loop`'s Buggify as the pure layers take it: set it as
// protocol::ConnectionOptions::buggify where a Connection is made. REQUIRES:
// `loop` outlives every copy of the result.
protocol::BuggifyFn BuggifyFunction(Loop& loop);
// `loop`'s Always as the pure layers take it (protocol::ConnectionOptions::
// always). REQUIRES: `loop` outlives every copy of the result.
protocol::AlwaysFn AlwaysFunction(Loop& loop);

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_LOOP_H_
