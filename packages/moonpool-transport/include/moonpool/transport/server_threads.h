// ServerThreads runs one server on several cores: N threads, each with its
// own driver::UvLoop and its own ServerTransport, all listening on one port
// with SO_REUSEPORT (DESIGN.md section 2: more cores means more loops, one
// per thread; the library takes no locks). The kernel spreads the incoming
// connections over the N listeners by their addresses (a hash of the
// 4-tuple), and a connection stays on the loop that accepted it.
//
//   ServerThreadsOptions options;
//   options.threads = 4;
//   auto servers = ServerThreads::Start(
//       Address::Loopback(0), std::move(options),
//       [](ServerLoop& s) -> absl::Status {  // once per loop, on its thread
//         s.scope.Spawn(MyHandler(s.server));
//         return s.server.Handle(kMethod, MyMethodHandler);
//       });
//   ...(*servers)->address() is the port they share...
//   (*servers)->Stop(/*drain=*/true);  // Close(drain) on each loop, joined
//
// Start brings the loops up one after the other: loop 0 binds the address
// (port 0: any free port), the others bind the port it got; each thread then
// calls the setup function with its ServerLoop, before its loop runs. The
// setup registers methods (Handle) or spawns NextMessage handlers into the
// loop's TaskScope. It is called from each thread in turn, never two at
// once, so it may write per-loop state indexed by ServerLoop::index without
// a lock.
//
// Nothing is shared between the loops by the library: each has its own
// connections, queue, bounds (ServerOptions apply per loop: max_connections
// 1024 with 4 loops admits up to 4096), exactly-once records and counters.
// State a handler shares across loops is the application's to guard (a
// mutex, atomics), or better, to keep per loop and combine at the end, as
// total_stats() does for the counters. Handlers on one loop see only that
// loop's ServerTransport.
//
// Exactly-once across loops: each loop's server draws its own incarnation,
// so a client whose new connection lands on another loop sees another
// incarnation and fails its maybe-delivered exactly-once request with
// Aborted, as after a server restart; it never runs twice. For this reason
// Start refuses a fixed, non-zero ServerOptions::connection.incarnation for
// more than one loop.
//
// What it is not: a load balancer (the kernel places connections, by address
// alone, not by load), or a way to share one ServerTransport between threads.
// SO_REUSEPORT lets any process of the same user bind the port too; such a
// process would take a share of the connections.
//
// Threads and ownership: made by Start and owned by the caller, whose thread
// calls Close, Wait, Stop and the destructor (never from one of the loops).
// Post is safe from any thread. Each loop, its ServerTransport and its
// TaskScope live on the loop's thread and end there: when its server's
// Close ends, the loop stops, the scope's tasks are destroyed, then the
// server, then the loop. The setup function is destroyed when the last loop
// has started. Destroying the ServerThreads closes every loop at once
// (Close(/*drain=*/false)) and joins the threads.
#ifndef MOONPOOL_TRANSPORT_SERVER_THREADS_H_
#define MOONPOOL_TRANSPORT_SERVER_THREADS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_stats.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::transport {

// One loop of a ServerThreads, as its setup function and Post see it. Every
// reference is valid on the loop's thread until that loop ends.
struct ServerLoop {
  size_t index;  // 0 .. threads - 1; loop 0 bound the port first
  driver::UvLoop& loop;
  ServerTransport& server;
  // Tasks spawned here are destroyed when the loop ends, before the server.
  driver::TaskScope& scope;
};

// Sets up one loop's server; a non-OK Status makes Start fail.
using ServerLoopSetup = absl::AnyInvocable<absl::Status(ServerLoop&)>;

struct ServerThreadsOptions {
  // Loops, one thread each; at least 1.
  size_t threads = 1;
  // Each loop's server (bounds are per loop). With more than one loop,
  // listen.reuse_port is set, and connection.incarnation must be 0.
  ServerOptions server;
  // Each loop's UvLoop; a seed, when given, is offset by the loop's index,
  // so that the loops draw different incarnations.
  driver::UvLoopOptions loop;
  // Told of a task in a loop's scope that ended with an error, on that
  // loop's thread: several loops may call it at once. Unset: counted only
  // (task_errors()).
  absl::AnyInvocable<void(size_t index, const absl::Status& status) const>
      on_task_error;
  // Called once, on the thread of the last loop to end, when every loop has
  // ended after a successful Start (not when Start fails). Only thread-safe
  // calls belong here: UvLoop::PostFromAnyThread to wake the owner's own
  // loop, for one.
  absl::AnyInvocable<void() const> on_ended;
};

class ServerThreads {
 public:
  // Starts options.threads loops serving `address` (see the file comment).
  // Errors: InvalidArgument for threads 0 or a fixed incarnation with more
  // than one loop; a loop's Bind error or its setup's Status, prefixed with
  // the loop's index (the loops already started are closed and joined).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ServerThreads>> Start(
      const driver::Address& address, ServerThreadsOptions options,
      ServerLoopSetup setup);

  ServerThreads(const ServerThreads&) = delete;
  ServerThreads& operator=(const ServerThreads&) = delete;
  // Close(/*drain=*/false), then Wait().
  ~ServerThreads();

  // The address every loop listens on, with the real port.
  const driver::Address& address() const { return address_; }
  size_t size() const { return slots_.size(); }

  // Asks every loop still running to close its server
  // (ServerTransport::Close(drain): with `drain`, Goodbye and up to
  // ServerOptions::drain_timeout to answer what was received); each loop
  // ends when its Close does. Returns at once. A Close(false) after a
  // Close(true) cuts the drains short.
  void Close(bool drain);
  // Blocks until every loop has ended and its thread is joined.
  void Wait();
  void Stop(bool drain = true) {
    Close(drain);
    Wait();
  }
  // Every loop has ended (its final counters are in total_stats()).
  bool ended() const { return running_.load(std::memory_order_acquire) == 0; }

  // Runs `fn` on loop `index`'s thread, on a later turn, with its ServerLoop
  // (to read its counters, for one). Safe from any thread.
  // FailedPrecondition when that loop has ended; OutOfRange for a bad index.
  [[nodiscard]] absl::Status Post(size_t index,
                                  absl::AnyInvocable<void(ServerLoop&)> fn);

  // Each loop's counters as its server closed, and their sum (gauges
  // included). REQUIRES: ended().
  std::vector<ServerStats> final_stats() const;
  ServerStats total_stats() const;
  // Tasks of the loops' scopes that ended with an error.
  uint64_t task_errors() const {
    return task_errors_.load(std::memory_order_relaxed);
  }

 private:
  struct Slot;

  explicit ServerThreads(ServerThreadsOptions options, ServerLoopSetup setup);
  // The body of loop `index`'s thread. `bound` gets the bound address, or
  // why the loop could not start.
  void RunLoop(size_t index, driver::Address address, void* bound);
  void LoopEnded();

  ServerThreadsOptions options_;
  ServerLoopSetup setup_;
  driver::Address address_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<size_t> running_{0};
  // Start succeeded: on_ended may be called.
  std::atomic<bool> started_{false};
  std::atomic<uint64_t> task_errors_{0};
};

// The sum of `stats`, field by field (counters and gauges alike): the
// figures of one server that runs on several loops.
ServerStats SumServerStats(absl::Span<const ServerStats> stats);

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SERVER_THREADS_H_
