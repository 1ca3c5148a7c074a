// UvLoop's timers. Each Timer owns a uv_timer_t (inside a TimerState that
// outlives it until libuv's close callback), so arming and disarming never
// allocate.
//
// Two cases libuv 1.44 does not handle the way the Timer contract needs:
//   - A time not in the future. libuv would run a zero-delay timer in the
//     timer phase now under way if started from a timer callback, again and
//     again (its clock does not move within the phase): a timer that keeps
//     re-arming itself for "now" would starve the loop. Such timers go to the
//     loop's due list instead, drained with the posted work (uv_loop.h).
//   - Millisecond rounding. libuv counts whole milliseconds from its cached
//     clock, ours has nanoseconds; the delay is rounded up, and if the timer
//     still comes a hair early by our clock (the clock is sampled lazily), the
//     clock is sampled again before firing, and as a last resort the timer is
//     re-armed. So when a timer fires, Now() >= the time it was started for.
#include <cassert>
#include <utility>

#include "uv_internal.h"

namespace moonpool::driver {
namespace internal {
namespace {

void OnUvTimer(uv_timer_t* handle) {
  auto* t = static_cast<TimerState*>(handle->data);
  if (t->closed || !t->active) return;
  UvLoop::Impl* loop = t->loop;
  if (loop->Now() < t->when) {
    loop->RefreshTime();
    if (loop->Now() < t->when) {
      uint64_t delay = loop->TimerDelayMs(t->when);
      uv_timer_start(&t->uv, OnUvTimer, delay > 0 ? delay : 1, 0);
      return;
    }
  }
  t->Fire();
}

}  // namespace

TimerState::TimerState(UvLoop::Impl* loop_in,
                       absl::AnyInvocable<void()> on_fire_in)
    : loop(loop_in), on_fire(std::move(on_fire_in)) {
  uv_timer_init(loop->uv(), &uv);  // cannot fail
  uv.data = this;
}

void TimerState::Start(absl::Time when_in) {
  assert(!closed);
  Stop();
  when = when_in;
  active = true;
  if (when <= loop->Now()) {
    loop->AddDueTimer(this);
  } else if (const uint64_t delay = loop->TimerDelayMs(when);
             delay != UINT64_MAX) {
    uv_timer_start(&uv, OnUvTimer, delay, 0);
  }
  // Otherwise armed for never (InfiniteFuture): active, but nothing for
  // the loop to wait for, so it does not keep Run going.
}

void TimerState::Stop() {
  if (!active) return;
  active = false;
  uv_timer_stop(&uv);
  loop->RemoveDueTimer(this);
}

void TimerState::Fire() {
  active = false;
  if (!on_fire) return;
  firing = true;
  on_fire();
  firing = false;
  // Closed from inside its own callback: the callback could not be destroyed
  // while it ran; it can now.
  if (closed) on_fire = nullptr;
}

void TimerState::Close() {
  Stop();
  closed = true;
  if (!firing) on_fire = nullptr;
  CloseAndDelete<TimerState>(reinterpret_cast<uv_handle_t*>(&uv));
}

}  // namespace internal

namespace {

class UvTimer final : public Timer {
 public:
  explicit UvTimer(internal::TimerState* state) : state_(state) {
    ++state_->loop->live_objects;
  }
  ~UvTimer() override {
    --state_->loop->live_objects;
    state_->Close();
  }

  void Start(absl::Time when) override { state_->Start(when); }
  void Stop() override { state_->Stop(); }
  bool active() const override { return state_->active; }

 private:
  internal::TimerState* const state_;  // deletes itself after Close
};

}  // namespace

std::unique_ptr<Timer> UvLoop::Impl::CreateTimer(
    absl::AnyInvocable<void()> on_fire) {
  return std::make_unique<UvTimer>(
      new internal::TimerState(this, std::move(on_fire)));
}

}  // namespace moonpool::driver
