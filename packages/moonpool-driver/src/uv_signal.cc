// UvLoop's signal watches: one uv_signal_t per signal, inside a state that
// outlives the user's SignalWatch until libuv has closed every handle.
//
// libuv catches the signal with a process-wide handler that only writes a
// message to the loop's signal pipe; the loop reads the pipe in its poll
// phase and calls back once per message, so the callback runs on the loop's
// thread and each delivery is one call. Destroying the watch marks the state
// closed before any handle is closed, and every callback checks that first:
// messages already in the pipe are read and dropped.
#include <signal.h>

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "uv_internal.h"

namespace moonpool::driver {
namespace internal {
namespace {

struct SignalState {
  SignalState(UvLoop::Impl* loop_in, std::vector<int> signals_in,
              SignalCallback on_signal_in)
      : loop(loop_in),
        signals(std::move(signals_in)),
        on_signal(std::move(on_signal_in)),
        handles(signals.size()) {}

  // Stops every handle, drops the callback (unless it is running: then it
  // goes after it returns) and closes the handles; the state deletes itself
  // once the last close callback has run.
  void Close() {
    closed = true;
    if (!firing) on_signal = nullptr;
    for (size_t i = 0; i < initialized; ++i) {
      uv_signal_stop(&handles[i]);
      uv_close(reinterpret_cast<uv_handle_t*>(&handles[i]), [](uv_handle_t* h) {
        auto* state = static_cast<SignalState*>(h->data);
        if (--state->open_handles == 0) delete state;
      });
    }
    if (initialized == 0) delete this;
  }

  static void OnSignal(uv_signal_t* handle, int signum) {
    auto* state = static_cast<SignalState*>(handle->data);
    if (state->closed || !state->on_signal) return;
    state->firing = true;
    state->on_signal(signum);
    state->firing = false;
    // Closed from inside its own callback: the callback could not be
    // destroyed while it ran; it can now.
    if (state->closed) state->on_signal = nullptr;
  }

  UvLoop::Impl* const loop;
  const std::vector<int> signals;
  SignalCallback on_signal;
  // Sized once: libuv holds pointers into it.
  std::vector<uv_signal_t> handles;
  size_t initialized = 0;   // handles[0, initialized) are open
  size_t open_handles = 0;  // not yet through their close callback
  bool firing = false;
  bool closed = false;
};

class UvSignalWatch final : public SignalWatch {
 public:
  explicit UvSignalWatch(SignalState* state) : state_(state) {
    ++state_->loop->live_objects;
  }
  ~UvSignalWatch() override {
    --state_->loop->live_objects;
    state_->Close();
  }

  const std::vector<int>& signals() const override { return state_->signals; }

 private:
  SignalState* const state_;  // deletes itself after Close
};

absl::Status CheckSignals(absl::Span<const int> signals) {
  if (signals.empty()) {
    return absl::InvalidArgumentError("WatchSignals: no signal given");
  }
  for (size_t i = 0; i < signals.size(); ++i) {
    const int s = signals[i];
    if (s <= 0 || s >= NSIG || s == SIGKILL || s == SIGSTOP) {
      return absl::InvalidArgumentError(
          absl::StrCat("WatchSignals: signal ", s, " cannot be caught"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (signals[j] == s) {
        return absl::InvalidArgumentError(
            absl::StrCat("WatchSignals: signal ", s, " given twice"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace internal

absl::StatusOr<std::unique_ptr<SignalWatch>> UvLoop::WatchSignals(
    absl::Span<const int> signals, SignalCallback on_signal) {
  if (absl::Status s = internal::CheckSignals(signals); !s.ok()) return s;
  auto* state = new internal::SignalState(
      impl_.get(), std::vector<int>(signals.begin(), signals.end()),
      std::move(on_signal));
  // The watch takes the state from here on: on failure its destructor
  // closes the handles started so far, and nothing was called back.
  auto watch = std::make_unique<internal::UvSignalWatch>(state);
  for (int signum : state->signals) {
    uv_signal_t* handle = &state->handles[state->initialized];
    if (int r = uv_signal_init(impl_->uv(), handle); r != 0) {
      return internal::UvStatus(r, absl::StrCat("watch signal ", signum));
    }
    handle->data = state;
    ++state->initialized;
    ++state->open_handles;
    // Unreferenced: a watch alone does not keep Run going.
    uv_unref(reinterpret_cast<uv_handle_t*>(handle));
    if (int r =
            uv_signal_start(handle, &internal::SignalState::OnSignal, signum);
        r != 0) {
      return internal::UvStatus(r, absl::StrCat("watch signal ", signum));
    }
  }
  return watch;
}

}  // namespace moonpool::driver
