// Timer is a reusable one-shot timer of a Loop: Start arms it for a time,
// Stop disarms it, and its callback runs on the loop's thread when the time
// comes. Re-arming a running timer moves it. Creating one may allocate;
// arming and disarming it does not.
//
// Destroying a Timer stops it; its callback never runs after Stop() or
// destruction returns.
#ifndef MOONPOOL_DRIVER_TIMER_H_
#define MOONPOOL_DRIVER_TIMER_H_

#include "absl/time/time.h"

namespace moonpool::driver {

class Timer {
 public:
  virtual ~Timer() = default;

  // Fires at `when` (at once, on the next turn, if it is not in the
  // future). Replaces any earlier Start.
  virtual void Start(absl::Time when) = 0;
  virtual void Stop() = 0;
  virtual bool active() const = 0;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_TIMER_H_
