// SignalWatch: process signals (SIGINT, SIGTERM, ...) delivered as callbacks
// on a UvLoop's thread, made by UvLoop::WatchSignals. It is how a program
// built on moonpool hears "please stop" without a signal handler of its own:
// libuv's handler only writes to a pipe, and the callback runs later, from
// the loop, where the program may touch its transports.
//
//   absl::StatusOr<std::unique_ptr<SignalWatch>> watch =
//       loop.WatchSignals({SIGINT, SIGTERM}, [&](int signum) {
//         scope.Spawn(server->Close(/*drain=*/true));
//       });
//
// Rules (the Loop lifetime rules of loop.h):
//   - The callback runs on the loop's thread, on a later turn, never inside
//     the raise() or kill() that sent the signal, nor inside WatchSignals.
//     Each delivery is one call: two signals are two calls, even when both
//     arrive before the loop wakes (the kernel itself merges a signal sent
//     again before its handler has run, as POSIX allows).
//   - Destroying the watch stops it: no callback runs afterwards, not even
//     for a signal that arrived before the destruction and was not yet
//     delivered. The callback may destroy its own watch.
//   - A watch does not by itself keep Run going (like PostFromAnyThread's
//     wake-up): a program that waits only for signals keeps something else
//     alive, such as its listener.
//   - While watched, a signal's default action (ending the process) and any
//     handler or SIG_IGN the program had are replaced by libuv's handler,
//     in every thread that does not block the signal. When the last watch of
//     a signal in the process ends, libuv sets it back to SIG_DFL (not to
//     what the program had before).
//
// What it is not: a way to run code inside the signal handler, or part of
// the Loop interface (a simulated loop has no process signals; code that
// must run on either takes a callback from its caller instead).
//
// Ownership: the caller owns the watch through std::unique_ptr and must
// destroy it before the UvLoop (asserted in debug builds, as for timers).
#ifndef MOONPOOL_DRIVER_SIGNAL_WATCH_H_
#define MOONPOOL_DRIVER_SIGNAL_WATCH_H_

#include <vector>

#include "absl/functional/any_invocable.h"

namespace moonpool::driver {

// Called with the signal's number (SIGINT, ...).
using SignalCallback = absl::AnyInvocable<void(int signum)>;

class SignalWatch {
 public:
  SignalWatch() = default;
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;
  // Stops watching; see the rules above.
  virtual ~SignalWatch() = default;

  // The signals watched, in the order given to WatchSignals.
  virtual const std::vector<int>& signals() const = 0;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_SIGNAL_WATCH_H_
