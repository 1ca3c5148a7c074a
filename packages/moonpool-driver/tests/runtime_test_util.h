// Helpers shared by the coroutine runtime's tests: run a Task to its end on a
// loop, and small objects that record when they are destroyed (to see
// cancellation reach a frame's locals).
#ifndef MOONPOOL_DRIVER_TESTS_RUNTIME_TEST_UTIL_H_
#define MOONPOOL_DRIVER_TESTS_RUNTIME_TEST_UTIL_H_

#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"

namespace moonpool::driver::runtime_test {

// Sets `*flag` when destroyed: put one in a coroutine frame to see the frame
// go.
class DestroyFlag {
 public:
  explicit DestroyFlag(bool* flag) : flag_(flag) {}
  DestroyFlag(const DestroyFlag&) = delete;
  DestroyFlag& operator=(const DestroyFlag&) = delete;
  ~DestroyFlag() { *flag_ = true; }

 private:
  bool* flag_;
};

template <typename T>
using RunResult = internal::SelectAlternative<T>;

template <typename T>
Task<void> StoreResult(Task<T> task, std::optional<RunResult<T>>* out) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
    out->emplace();
  } else {
    out->emplace(co_await std::move(task));
  }
}

// A Task<void> that awaits `task` and drops its value: how a test spawns a
// task of another type.
template <typename T>
Task<void> Discard(Task<T> task) {
  co_await std::move(task);
}

// Spawns `task` on `loop` and runs the loop until it finishes or `timeout`
// of the loop's time passes. nullopt when it did not finish (the task is
// destroyed then).
template <typename T>
std::optional<RunResult<T>> RunTask(
    Loop& loop, Task<T> task, absl::Duration timeout = absl::Seconds(10)) {
  std::optional<RunResult<T>> out;
  TaskScope scope(loop, [](absl::Status status) {
    ADD_FAILURE() << "unexpected task error: " << status;
  });
  scope.Spawn(StoreResult(std::move(task), &out));
  loop.RunUntil([&] { return out.has_value(); }, loop.Now() + timeout);
  return out;
}

}  // namespace moonpool::driver::runtime_test

#endif  // MOONPOOL_DRIVER_TESTS_RUNTIME_TEST_UTIL_H_
