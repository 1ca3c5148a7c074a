// ServerThreads: a thread per loop. The owner reaches a running loop only
// through UvLoop::PostFromAnyThread, under its slot's mutex, so that a post
// never races with the loop's destruction: the loop's thread clears the
// slot's pointer, under the same mutex, before it destroys anything.
#include "moonpool/transport/server_threads.h"

#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "moonpool/driver/task.h"

namespace moonpool::transport {

struct ServerThreads::Slot {
  std::thread thread;
  std::mutex mu;
  // Set while the loop runs (after its setup, until its Run returns).
  ServerLoop* running = nullptr;  // guarded by mu
  // Written on the loop's thread before it counts itself ended.
  ServerStats final_stats;
};

namespace {

using BoundPromise = std::promise<absl::StatusOr<driver::Address>>;

// Closes the loop's server, then stops the loop: its Run returns and the
// thread tears down what is left.
driver::Task<void> CloseAndStop(ServerLoop& s, bool drain) {
  co_await s.server.Close(drain);
  s.loop.Stop();
}

void AddOutcomeStats(protocol::OutcomeTableStats& a,
                     const protocol::OutcomeTableStats& b) {
  a.recorded += b.recorded;
  a.duplicates_running += b.duplicates_running;
  a.duplicates_completed += b.duplicates_completed;
  a.forgotten_answers += b.forgotten_answers;
  a.settled += b.settled;
  a.forgotten_by_bound += b.forgotten_by_bound;
  a.forgotten_by_time += b.forgotten_by_time;
  a.abandoned += b.abandoned;
  a.clients_refused += b.clients_refused;
  a.records += b.records;
  a.running += b.running;
  a.bytes += b.bytes;
  a.clients += b.clients;
}

}  // namespace

ServerStats SumServerStats(absl::Span<const ServerStats> stats) {
  ServerStats t;
  for (const ServerStats& s : stats) {
    t.connections_accepted += s.connections_accepted;
    t.connections_open += s.connections_open;
    t.connections_refused += s.connections_refused;
    t.accept_errors += s.accept_errors;
    t.tls_handshakes += s.tls_handshakes;
    t.tls_handshake_failures += s.tls_handshake_failures;
    t.tls_handshaking += s.tls_handshaking;
    t.requests_received += s.requests_received;
    t.one_way_received += s.one_way_received;
    t.replies_sent += s.replies_sent;
    t.error_replies_sent += s.error_replies_sent;
    t.expired_dropped += s.expired_dropped;
    t.orphaned_dropped += s.orphaned_dropped;
    t.unimplemented += s.unimplemented;
    t.cancels_received += s.cancels_received;
    t.cancelled_before_handler += s.cancelled_before_handler;
    t.backpressure_pauses += s.backpressure_pauses;
    t.protocol_errors += s.protocol_errors;
    t.keepalive_timeouts += s.keepalive_timeouts;
    t.read_timeouts += s.read_timeouts;
    t.idle_timeouts += s.idle_timeouts;
    t.bytes_in += s.bytes_in;
    t.bytes_out += s.bytes_out;
    t.requests_in_flight += s.requests_in_flight;
    t.queued_messages += s.queued_messages;
    t.queued_bytes += s.queued_bytes;
    t.paused_connections += s.paused_connections;
    AddOutcomeStats(t.exactly_once, s.exactly_once);
  }
  return t;
}

absl::StatusOr<std::unique_ptr<ServerThreads>> ServerThreads::Start(
    const driver::Address& address, ServerThreadsOptions options,
    ServerLoopSetup setup) {
  if (options.threads == 0) {
    return absl::InvalidArgumentError("ServerThreads: threads is 0");
  }
  if (!setup) {
    return absl::InvalidArgumentError("ServerThreads: no setup function");
  }
  if (options.threads > 1) {
    // Two loops with one incarnation would let a client resend an
    // exactly-once request to a loop that has no record of it.
    if (options.server.connection.incarnation != 0) {
      return absl::InvalidArgumentError(
          "ServerThreads: a fixed incarnation cannot be shared by several "
          "loops (leave ServerOptions::connection.incarnation 0)");
    }
    options.server.listen.reuse_port = true;
  }
  const size_t n = options.threads;
  std::unique_ptr<ServerThreads> threads(
      new ServerThreads(std::move(options), std::move(setup)));
  // All slots first: the loops' threads read the vector.
  for (size_t i = 0; i < n; ++i) {
    threads->slots_.push_back(std::make_unique<Slot>());
  }
  driver::Address bind_address = address;
  for (size_t i = 0; i < n; ++i) {
    BoundPromise bound;
    std::future<absl::StatusOr<driver::Address>> result = bound.get_future();
    threads->running_.fetch_add(1, std::memory_order_relaxed);
    threads->slots_[i]->thread =
        std::thread([t = threads.get(), i, bind_address, &bound] {
          t->RunLoop(i, bind_address, &bound);
        });
    // Loop i has bound and run its setup (or failed) before loop i + 1
    // starts: the setup is never called twice at once, and the later loops
    // bind the port loop 0 got.
    absl::StatusOr<driver::Address> a = result.get();
    if (!a.ok()) {
      threads->Stop(/*drain=*/false);
      return absl::Status(
          a.status().code(),
          absl::StrCat("ServerThreads: loop ", i, ": ", a.status().message()));
    }
    if (i == 0) {
      threads->address_ = *a;
      bind_address = *a;
    }
  }
  threads->setup_ = nullptr;  // every loop has used it
  threads->started_.store(true, std::memory_order_release);
  return threads;
}

ServerThreads::ServerThreads(ServerThreadsOptions options,
                             ServerLoopSetup setup)
    : options_(std::move(options)), setup_(std::move(setup)) {}

ServerThreads::~ServerThreads() { Stop(/*drain=*/false); }

void ServerThreads::RunLoop(size_t index, driver::Address address,
                            void* bound_arg) {
  BoundPromise& bound = *static_cast<BoundPromise*>(bound_arg);
  Slot& slot = *slots_[index];
  driver::UvLoopOptions loop_options = options_.loop;
  if (loop_options.seed.has_value()) *loop_options.seed += index;
  driver::UvLoop loop(loop_options);
  absl::StatusOr<std::unique_ptr<ServerTransport>> server =
      ServerTransport::Bind(loop, address, options_.server);
  if (!server.ok()) {
    LoopEnded();
    bound.set_value(server.status());  // last: Start may destroy us after it
    return;
  }
  driver::TaskScope scope(loop, [this, index](absl::Status s) {
    task_errors_.fetch_add(1, std::memory_order_relaxed);
    if (options_.on_task_error) options_.on_task_error(index, s);
  });
  ServerLoop s{index, loop, **server, scope};
  if (absl::Status set_up = setup_(s); !set_up.ok()) {
    scope.Clear();
    server->reset();
    LoopEnded();
    bound.set_value(std::move(set_up));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(slot.mu);
    slot.running = &s;
  }
  bound.set_value((*server)->address());
  loop.Run();  // until CloseAndStop stops it
  {
    std::lock_guard<std::mutex> lock(slot.mu);
    slot.running = nullptr;  // no post reaches the loop from here on
  }
  slot.final_stats = (*server)->stats();
  scope.Clear();
  server->reset();
  LoopEnded();
}

void ServerThreads::LoopEnded() {
  if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
      started_.load(std::memory_order_acquire) && options_.on_ended) {
    options_.on_ended();
  }
}

void ServerThreads::Close(bool drain) {
  for (const std::unique_ptr<Slot>& slot : slots_) {
    std::lock_guard<std::mutex> lock(slot->mu);
    if (ServerLoop* s = slot->running) {
      s->loop.PostFromAnyThread(
          [s, drain] { s->scope.Spawn(CloseAndStop(*s, drain)); });
    }
  }
}

void ServerThreads::Wait() {
  for (const std::unique_ptr<Slot>& slot : slots_) {
    if (slot->thread.joinable()) slot->thread.join();
  }
}

absl::Status ServerThreads::Post(size_t index,
                                 absl::AnyInvocable<void(ServerLoop&)> fn) {
  if (index >= slots_.size()) {
    return absl::OutOfRangeError(absl::StrCat("ServerThreads: no loop ", index,
                                              " (of ", slots_.size(), ")"));
  }
  Slot& slot = *slots_[index];
  std::lock_guard<std::mutex> lock(slot.mu);
  ServerLoop* s = slot.running;
  if (s == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("ServerThreads: loop ", index, " has ended"));
  }
  s->loop.PostFromAnyThread([s, fn = std::move(fn)]() mutable { fn(*s); });
  return absl::OkStatus();
}

std::vector<ServerStats> ServerThreads::final_stats() const {
  std::vector<ServerStats> out;
  out.reserve(slots_.size());
  for (const std::unique_ptr<Slot>& slot : slots_) {
    out.push_back(slot->final_stats);
  }
  return out;
}

ServerStats ServerThreads::total_stats() const {
  return SumServerStats(final_stats());
}

}  // namespace moonpool::transport
