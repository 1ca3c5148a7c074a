// GracefulShutdown: each step is a set of tasks (one per server to close,
// the program's drain, and a settling task so that a step never completes
// inside the call that started it); pending_ counts them, and the last one
// to end moves the shutdown on.
#include "moonpool/transport/graceful_shutdown.h"

#include <utility>

#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"

namespace moonpool::transport {

absl::StatusOr<std::unique_ptr<GracefulShutdown>> GracefulShutdown::Watch(
    driver::UvLoop& loop, GracefulShutdownOptions options) {
  if (options.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "GracefulShutdown: negative drain_timeout");
  }
  std::vector<int> signals = options.signals;
  std::unique_ptr<GracefulShutdown> shutdown(
      new GracefulShutdown(loop, std::move(options)));
  absl::StatusOr<std::unique_ptr<driver::SignalWatch>> watch =
      loop.WatchSignals(
          signals, [s = shutdown.get()](int signum) { s->OnSignal(signum); });
  if (!watch.ok()) return watch.status();
  shutdown->watch_ = std::move(*watch);
  return shutdown;
}

GracefulShutdown::GracefulShutdown(driver::UvLoop& loop,
                                   GracefulShutdownOptions options)
    : loop_(loop),
      options_(std::move(options)),
      // The tasks are Task<void>: nothing can fail.
      scope_(loop, [](absl::Status) {}),
      program_scope_(loop, [](absl::Status) {}) {}

GracefulShutdown::~GracefulShutdown() = default;

void GracefulShutdown::AddServer(ServerTransport& server) {
  servers_.push_back(&server);
}

void GracefulShutdown::AddClient(ClientTransport& client) {
  clients_.push_back(&client);
}

void GracefulShutdown::SetDrain(
    absl::AnyInvocable<driver::Task<void>()> drain) {
  drain_ = std::move(drain);
}

void GracefulShutdown::OnSignal(int signum) {
  switch (state_) {
    case State::kWatching:
      if (options_.on_signal) options_.on_signal(signum, ShutdownStep::kDrain);
      Drain();
      break;
    case State::kDraining:
      if (options_.on_signal) {
        options_.on_signal(signum, ShutdownStep::kCloseNow);
      }
      CloseNow();
      break;
    case State::kClosing:
    case State::kClosed:
      break;
  }
}

void GracefulShutdown::Drain() {
  if (state_ != State::kWatching) return;
  state_ = State::kDraining;
  for (ServerTransport* server : servers_) {
    ++pending_;
    scope_.Spawn(DrainServer(*server));
  }
  if (drain_) {
    ++pending_;
    program_draining_ = true;
    program_scope_.Spawn(DrainProgram());
  }
  ++pending_;
  scope_.Spawn(Settle());
}

void GracefulShutdown::CloseNow() {
  if (state_ == State::kClosing || state_ == State::kClosed) return;
  state_ = State::kClosing;
  if (program_draining_) {
    program_draining_ = false;
    --pending_;
    program_scope_.Clear();
  }
  if (options_.on_closing) options_.on_closing();
  for (ClientTransport* client : clients_) client->Close();
  // A server still draining has its drain cut short: both its Close tasks
  // end.
  for (ServerTransport* server : servers_) {
    ++pending_;
    scope_.Spawn(CloseServer(*server));
  }
  ++pending_;
  scope_.Spawn(Settle());
}

driver::Task<void> GracefulShutdown::DrainServer(ServerTransport& server) {
  co_await server.Close(/*drain=*/true);
  PieceDone();
}

driver::Task<void> GracefulShutdown::CloseServer(ServerTransport& server) {
  co_await server.Close(/*drain=*/false);
  PieceDone();
}

driver::Task<void> GracefulShutdown::DrainProgram() {
  // The loser of the race is destroyed: the program's drain is cancelled
  // at the timeout.
  co_await driver::Select(drain_(),
                          driver::Sleep(loop_, options_.drain_timeout));
  program_draining_ = false;
  PieceDone();
}

driver::Task<void> GracefulShutdown::Settle() {
  PieceDone();
  co_return;
}

void GracefulShutdown::PieceDone() {
  if (--pending_ != 0) return;
  if (state_ == State::kDraining) {
    // The drain has ended: the servers are closed; now the clients.
    state_ = State::kClosing;
    if (options_.on_closing) options_.on_closing();
    for (ClientTransport* client : clients_) client->Close();
  }
  Finish();
}

void GracefulShutdown::Finish() {
  state_ = State::kClosed;
  // May run inside the watch's own callback, which the watch allows.
  watch_.reset();
  if (options_.stop_loop) loop_.Stop();
}

}  // namespace moonpool::transport
