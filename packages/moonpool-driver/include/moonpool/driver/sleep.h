// Sleep and SleepUntil: awaitables that resume the coroutine when the loop's
// clock reaches a time, through a Timer of the loop (Loop::CreateTimer).
//
//   co_await Sleep(loop, absl::Milliseconds(50));
//   co_await SleepUntil(loop, deadline);
//
// Rules:
//   - A sleep always suspends, at least until a later loop turn, even for a
//     time already past: a loop of zero sleeps yields to the loop each time
//     instead of starving it.
//   - Destroying the sleeping coroutine (cancelling it: destroying its Task,
//     losing a Select, a CancellationToken firing in WithCancellation)
//     destroys the timer, which stops it: nothing resumes the dead frame and
//     the loop has nothing left to wait for on its behalf.
//   - SleepUntil(loop, absl::InfiniteFuture()) arms no timer: it sleeps until
//     cancelled.
//
// Ownership: the awaitable owns its Timer, created when the coroutine
// suspends (one allocation of the loop's) and destroyed with the awaitable.
// It borrows the Loop, which must outlive it. Movable until awaited.
#ifndef MOONPOOL_DRIVER_SLEEP_H_
#define MOONPOOL_DRIVER_SLEEP_H_

#include <coroutine>
#include <memory>

#include "absl/time/time.h"
#include "moonpool/driver/awaitable.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/timer.h"

namespace moonpool::driver {

class [[nodiscard]] SleepAwaitable {
 public:
  SleepAwaitable(Loop& loop, absl::Time wake_at)
      : loop_(&loop), wake_at_(wake_at) {}
  SleepAwaitable(SleepAwaitable&&) = default;
  SleepAwaitable& operator=(SleepAwaitable&&) = default;

  absl::Time wake_at() const { return wake_at_; }

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    if (wake_at_ == absl::InfiniteFuture()) return;
    timer_ = loop_->CreateTimer([h] { Resume(h); });
    timer_->Start(wake_at_);
  }
  void await_resume() const noexcept {}

 private:
  Loop* loop_;
  absl::Time wake_at_;
  std::unique_ptr<Timer> timer_;
};

// Resumes after `duration` of the loop's clock (from Loop::Now()).
inline SleepAwaitable Sleep(Loop& loop, absl::Duration duration) {
  return SleepAwaitable(loop, loop.Now() + duration);
}

// Resumes once the loop's clock reaches `wake_at`.
inline SleepAwaitable SleepUntil(Loop& loop, absl::Time wake_at) {
  return SleepAwaitable(loop, wake_at);
}

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_SLEEP_H_
