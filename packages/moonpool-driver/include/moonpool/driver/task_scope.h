// TaskScope owns tasks that run concurrently with the code that spawned them:
// the only way to detach work in this runtime, and so the only place where a
// task's error could otherwise be lost.
//
//   Task<absl::Status> ServeConnection(std::unique_ptr<Stream> stream);
//   Task<void> LogEverySecond(Loop& loop);
//
//   TaskScope scope(loop, [](absl::Status s) { Report(s); });  // required
//   scope.Spawn(ServeConnection(std::move(stream)));  // a failure: Report
//   scope.Spawn(LogEverySecond(loop));                 // cannot fail
//   loop.Run();  // the tasks start here, on the loop's next turns
//
// Rules (kj's TaskSet, with the libuv rule that nothing starts inside the
// call that asked for it):
//   - Spawn never runs the task inside the call: the task starts on a later
//     loop turn (through Loop::Post), in the order spawned.
//   - A finished task's frame is freed at once. A Task<absl::Status> that
//     finishes with a non-OK Status hands it to `on_error`, after its frame is
//     freed. The handler is required: detached work that fails must be heard.
//   - Destroying the scope destroys every task it still owns, cancelling each
//     at its suspension point (task.h). Tasks not started yet never start.
//   - The loop's destructor (Loop::DestroyTasks) does the same to every scope
//     still alive, so no frame outlives its loop; the scope is then detached:
//     it is empty, Spawn destroys what it is given without running it, and
//     destroying the scope later is still safe.
//
// Hazards this guards against: a frame that outlives the objects it points
// into (the owner destroys the scope, the scope destroys the frames), a task
// resumed after its loop is gone, and a failure nobody hears.
//
// Ownership: the scope owns its tasks; the tasks must not own the scope.
// REQUIRES: a task of the scope does not destroy the scope while the task
// itself is running (a coroutine cannot destroy itself); the error handler
// may destroy it. Loop's thread only.
#ifndef MOONPOOL_DRIVER_TASK_SCOPE_H_
#define MOONPOOL_DRIVER_TASK_SCOPE_H_

#include <cstddef>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/task.h"

namespace moonpool::driver {

namespace internal {
class SpawnedTask;
}  // namespace internal

class TaskScope {
 public:
  // `on_error` receives the non-OK Status of each failed Task<absl::Status>,
  // on the loop's thread, after that task's frame is freed. It may spawn,
  // and it may destroy the scope.
  TaskScope(Loop& loop, absl::AnyInvocable<void(absl::Status)> on_error);
  TaskScope(const TaskScope&) = delete;
  TaskScope& operator=(const TaskScope&) = delete;
  // Destroys the tasks still owned (cancelling them).
  ~TaskScope();

  // Takes `task` and starts it on a later loop turn. When the scope is
  // detached (its loop destroyed) or is being destroyed, the task is
  // destroyed at once without running. REQUIRES: task.valid().
  void Spawn(Task<void> task);
  void Spawn(Task<absl::Status> task);

  // Tasks spawned and not yet finished or destroyed.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Destroys every task the scope owns now (cancelling them); the scope stays
  // usable.
  void Clear();

 private:
  friend class Loop;
  friend class internal::SpawnedTask;

  void Adopt(std::coroutine_handle<> frame, internal::TaskPromiseBase& promise,
             internal::TaskPromise<absl::Status>* status_promise);
  void Link(internal::SpawnedTask* task);
  void Unlink(internal::SpawnedTask* task);
  void DetachFromLoop();
  void ReportError(absl::Status status);

  Loop* loop_;  // null once the loop has destroyed its tasks
  absl::AnyInvocable<void(absl::Status)> on_error_;
  internal::SpawnedTask* tasks_ = nullptr;  // intrusive list, newest first
  size_t size_ = 0;
  // Set while Clear() runs: a task destroyed by it may (through its
  // destructors) destroy this scope, and Clear must then stop at once.
  bool* destroyed_flag_ = nullptr;
  bool clearing_ = false;
  // The loop's intrusive list of scopes (Loop::scopes_).
  TaskScope* prev_scope_ = nullptr;
  TaskScope* next_scope_ = nullptr;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_TASK_SCOPE_H_
