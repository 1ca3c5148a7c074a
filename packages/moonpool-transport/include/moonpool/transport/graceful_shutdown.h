// GracefulShutdown ends a program built on moonpool when it is asked to
// (SIGINT, SIGTERM): the first signal drains, a second one closes at once.
//
//   Drain (first signal, or Drain()):
//     1. every server added stops accepting and says Goodbye on each
//        connection, then serves what it had received
//        (ServerTransport::Close(/*drain=*/true), bounded by that server's
//        ServerOptions::drain_timeout); meanwhile the program's own drain
//        runs (SetDrain: a load generator waiting for its requests in
//        flight), bounded by GracefulShutdownOptions::drain_timeout;
//     2. when all of that has ended: on_closing, then every client added is
//        closed (ClientTransport::Close: Cancelled to what is still pending);
//     3. closed: the loop is stopped (unless stop_loop is false) and the
//        signals are no longer watched.
//   Close now (a second signal, or CloseNow()): the program's drain is
//     cancelled, on_closing runs, the clients are closed and every server is
//     closed at once (Close(/*drain=*/false), which also cuts a drain short);
//     then step 3.
//
//   UvLoop loop;
//   auto server = ServerTransport::Bind(loop, address, options);
//   auto shutdown = GracefulShutdown::Watch(loop);  // before saying "ready"
//   (*shutdown)->AddServer(**server);
//   ...spawn the handlers, print the address...
//   loop.Run();  // returns once the shutdown has closed the server
//
// A client that runs the loop itself until its work is done:
//
//   auto shutdown = GracefulShutdown::Watch(loop, {.stop_loop = false});
//   (*shutdown)->AddClient(client);
//   (*shutdown)->SetDrain([&] { return StopSendingAndWait(); });
//   loop.RunUntil([&] { return work_done; }, deadline);
//
// Watch before the program tells anyone it is ready (prints its address):
// until then a SIGTERM still has its default action and ends the process.
//
// Once closed, the signals have their default action again (signal_watch.h),
// so a program that is slow to exit afterwards can still be interrupted.
// Signals that arrive while a close now completes change nothing.
//
// What it is not: a process supervisor (it never exits the process: the
// program returns from its Run and reports), or usable on a simulated loop
// (process signals need a UvLoop, so Watch takes one).
//
// Ownership: made by Watch and owned by the caller; it borrows the loop and
// every transport added, which must outlive it (destroy it first). Destroying
// it stops watching and cancels a shutdown under way where it stands (its
// tasks are destroyed; what was closed stays closed). Loop's thread only.
#ifndef MOONPOOL_TRANSPORT_GRACEFUL_SHUTDOWN_H_
#define MOONPOOL_TRANSPORT_GRACEFUL_SHUTDOWN_H_

#include <signal.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "moonpool/driver/signal_watch.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::transport {

// What a signal did: started the drain, or closed at once.
enum class ShutdownStep { kDrain, kCloseNow };

struct GracefulShutdownOptions {
  // The signals watched. The first one received drains; any one after it
  // (the same or another) closes at once.
  std::vector<int> signals = {SIGINT, SIGTERM};
  // Bounds the program's own drain (SetDrain); when it passes, the drain
  // task is cancelled and the shutdown goes on. Servers are bounded by their
  // own ServerOptions::drain_timeout.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Once closed, Stop() the loop, so Run returns even if something else
  // (a timer, another listener) would keep it going. A program that waits
  // with RunUntil for its own work to end sets it to false.
  bool stop_loop = true;
  // Told of each signal that moves the shutdown on, before it acts: for a
  // log line ("draining", "closing now").
  absl::AnyInvocable<void(int signum, ShutdownStep step)> on_signal;
  // Called once, when the shutdown reaches its closing step: after the drain
  // (the servers are closed by then), or at the close now; before the
  // clients are closed. The last moment to read their state (a Peer's
  // stats) for a final report.
  absl::AnyInvocable<void()> on_closing;
};

class GracefulShutdown {
 public:
  enum class State {
    kWatching,  // no signal yet
    kDraining,  // the first signal came; servers and the program drain
    kClosing,   // closing; waiting for the servers' Close to end
    kClosed,    // everything closed; signals no longer watched
  };

  // Starts watching options.signals on `loop`. Errors: as
  // UvLoop::WatchSignals (InvalidArgument for signals that cannot be
  // watched), and InvalidArgument for a negative drain_timeout.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GracefulShutdown>> Watch(
      driver::UvLoop& loop, GracefulShutdownOptions options = {});

  GracefulShutdown(const GracefulShutdown&) = delete;
  GracefulShutdown& operator=(const GracefulShutdown&) = delete;
  ~GracefulShutdown();

  // Transports to end. REQUIRES: state() == kWatching; each added once.
  void AddServer(ServerTransport& server);
  void AddClient(ClientTransport& client);
  // The program's own drain: called when the drain starts; the Task it
  // returns ends when the program's work in flight is done (it stops
  // starting new work first). Destroyed unfinished at drain_timeout or at a
  // close now. REQUIRES: state() == kWatching.
  void SetDrain(absl::AnyInvocable<driver::Task<void>()> drain);

  // What the first and a second signal do, for a program that decides to end
  // by itself. Nothing is called back inside
  // these calls except on_closing (CloseNow); the rest happens on later
  // turns. Each does nothing once past its step. REQUIRES: not called from
  // inside the program's drain task.
  void Drain();
  void CloseNow();

  State state() const { return state_; }
  bool closed() const { return state_ == State::kClosed; }

 private:
  GracefulShutdown(driver::UvLoop& loop, GracefulShutdownOptions options);

  void OnSignal(int signum);
  driver::Task<void> DrainServer(ServerTransport& server);
  driver::Task<void> CloseServer(ServerTransport& server);
  driver::Task<void> DrainProgram();
  driver::Task<void> Settle();
  // One piece of the current step has ended; the last one moves on.
  void PieceDone();
  void Finish();

  driver::UvLoop& loop_;
  GracefulShutdownOptions options_;
  std::unique_ptr<driver::SignalWatch> watch_;
  std::vector<ServerTransport*> servers_;
  std::vector<ClientTransport*> clients_;
  absl::AnyInvocable<driver::Task<void>()> drain_;
  State state_ = State::kWatching;
  // Tasks of the current step still running (server closes, the program's
  // drain, the settling task).
  size_t pending_ = 0;
  bool program_draining_ = false;
  // The program's drain alone, so a close now can cancel it and nothing
  // else; declared after scope_ so it is destroyed first.
  driver::TaskScope scope_;
  driver::TaskScope program_scope_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_GRACEFUL_SHUTDOWN_H_
