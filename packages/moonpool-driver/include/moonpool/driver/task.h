// Task<T> is a lazily started coroutine that produces a T (or nothing, for
// Task<void>), owned by exactly one Task object. Tasks are linear: they are
// moved, never copied, and each is awaited at most once.
//
//   Task<int> Answer() { co_return 42; }
//
//   Task<absl::Status> Check(Loop& loop) {
//     int a = co_await Answer();      // runs Answer() now, to its end
//     Task<int> b = Answer();         // made, not started
//     co_await Sleep(loop, absl::Milliseconds(5));
//     if (a + co_await std::move(b) != 84) co_return absl::InternalError("?");
//     co_return absl::OkStatus();
//   }
//
// Lifetimes, kj's rule: destroying a Task destroys its coroutine frame. If
// the coroutine is suspended, that cancels it at its suspension point: its
// locals are destroyed, and so is whatever it awaits (a Task it awaits is
// destroyed the same way, recursively; a Sleep stops its timer; a Future
// forgets the waiter). Nothing ever resumes a destroyed frame. This guards
// against the classic callback hazard, a completion arriving for an object
// that is gone: in this runtime the completion is forgotten with the waiter.
// Destroying a chain of N suspended awaits recurses N deep (the child must
// be gone before its parent's locals, which it may reference): keep
// suspended chains shallow (thousands, not hundreds of thousands).
//
// What a Task is not: it does not run by itself. It starts when awaited, or
// when handed to TaskScope::Spawn (task_scope.h) or Select (select.h). A Task
// never outlives its Loop when it is owned by a TaskScope; one you hold
// elsewhere must be destroyed before the loop, like any object of the loop.
//
// Errors travel as values: use Task<absl::Status> or
// Task<absl::StatusOr<T>>. An exception escaping a coroutine calls
// std::terminate.
//
// Cost: calling a coroutine allocates its frame (GCC never elides it); the
// block comes from a per-thread cache of recycled frames
// (internal/block_pool.h), so a steady state allocates nothing. Awaiting
// hands control to the task and back through the trampoline described in
// awaitable.h: the stack does not grow with the length of an await chain.
#ifndef MOONPOOL_DRIVER_TASK_H_
#define MOONPOOL_DRIVER_TASK_H_

#include <cassert>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "moonpool/driver/awaitable.h"
#include "moonpool/driver/internal/block_pool.h"

namespace moonpool::driver {

// What a Task may produce: nothing, or a movable object type.
template <typename T>
concept TaskValue = std::is_void_v<T> ||
    std::conjunction_v<std::is_object<T>, std::is_move_constructible<T>>;

template <TaskValue T = void>
class Task;

namespace internal {

// Told when a started Task reaches its end instead of an awaiting coroutine
// being resumed: how TaskScope and Select run tasks concurrently.
class TaskObserver {
 public:
  // Called inside the finished task's final suspension. The task's result is
  // ready; the observer may take it and may destroy the task. Returns the
  // coroutine the trampoline should run next, or null.
  virtual std::coroutine_handle<> OnTaskDone() noexcept = 0;

 protected:
  ~TaskObserver() = default;
};

class TaskPromiseBase {
 public:
  // Frames come from the per-thread block cache (internal/block_pool.h).
  static void* operator new(std::size_t size) {
    return BlockPool::Allocate(size);
  }
  static void operator delete(void* frame, std::size_t size) noexcept {
    BlockPool::Free(frame, size);
  }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> self) noexcept {
      TaskPromiseBase& promise = self.promise();
      if (promise.continuation_) {
        ScheduleNext(promise.continuation_);
        return;
      }
      if (promise.observer_ != nullptr) {
        // May destroy `self`: touch nothing of it afterwards.
        if (std::coroutine_handle<> next = promise.observer_->OnTaskDone()) {
          ScheduleNext(next);
        }
      }
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  // No exceptions as an error channel: one escaping a coroutine is a bug.
  void unhandled_exception() const noexcept { std::terminate(); }

  void set_continuation(std::coroutine_handle<> h) noexcept {
    continuation_ = h;
  }
  void set_observer(TaskObserver* observer) noexcept { observer_ = observer; }

 private:
  std::coroutine_handle<> continuation_;
  TaskObserver* observer_ = nullptr;
};

template <typename T>
class TaskPromise final : public TaskPromiseBase {
 public:
  Task<T> get_return_object() noexcept;

  template <typename U = T>
  requires std::constructible_from<T, U&&>
  void return_value(U&& value) noexcept(
      std::is_nothrow_constructible_v<T, U&&>) {
    result_.emplace(std::forward<U>(value));
  }

  // REQUIRES: the task has finished, and its result was not taken yet.
  T TakeResult() noexcept(std::is_nothrow_move_constructible_v<T>) {
    assert(result_.has_value());
    return std::move(*result_);
  }

 private:
  std::optional<T> result_;
};

template <>
class TaskPromise<void> final : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void TakeResult() const noexcept {}
};

// The runtime's access to a Task's coroutine (TaskScope, Select).
struct TaskAccess {
  template <typename T>
  static std::coroutine_handle<TaskPromise<T>> Release(Task<T>& task) {
    return std::exchange(task.handle_, nullptr);
  }
  template <typename T>
  static std::coroutine_handle<TaskPromise<T>> Handle(const Task<T>& task) {
    return task.handle_;
  }
};

// The awaiter of `co_await std::move(task)`: owns the task's frame from then
// on, so destroying the awaiting coroutine destroys the task too.
template <typename T>
class [[nodiscard]] TaskAwaiter {
 public:
  explicit TaskAwaiter(std::coroutine_handle<TaskPromise<T>> handle) noexcept
      : handle_(handle) {
    assert(handle_ && "awaiting an empty (moved-from) Task");
  }
  TaskAwaiter(const TaskAwaiter&) = delete;
  TaskAwaiter& operator=(const TaskAwaiter&) = delete;
  ~TaskAwaiter() { handle_.destroy(); }

  // A task is lazy: it has not run yet, so it is never ready here.
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().set_continuation(awaiting);
    ScheduleNext(handle_);
  }
  T await_resume() noexcept(std::is_nothrow_move_constructible_v<T> ||
                            std::is_void_v<T>) {
    return handle_.promise().TakeResult();
  }

 private:
  std::coroutine_handle<TaskPromise<T>> handle_;
};

}  // namespace internal

template <TaskValue T>
class [[nodiscard]] Task {
 public:
  using promise_type = internal::TaskPromise<T>;
  using value_type = T;

  // An empty task: valid() is false; it may only be assigned or destroyed.
  Task() noexcept = default;
  Task(Task&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      Reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  // Destroys the coroutine: cancels it if it is suspended.
  ~Task() { Reset(); }

  // False for a default-constructed or moved-from task.
  bool valid() const noexcept { return static_cast<bool>(handle_); }

  // `co_await std::move(task)` runs the task until it finishes and yields its
  // value; the awaiting coroutine suspends meanwhile. REQUIRES: valid().
  internal::TaskAwaiter<T> operator co_await() && noexcept {
    return internal::TaskAwaiter<T>(std::exchange(handle_, nullptr));
  }

 private:
  friend struct internal::TaskAccess;
  friend class internal::TaskPromise<T>;

  explicit Task(std::coroutine_handle<promise_type> handle) noexcept
      : handle_(handle) {}

  void Reset() noexcept {
    if (handle_) std::exchange(handle_, nullptr).destroy();
  }

  std::coroutine_handle<promise_type> handle_;
};

namespace internal {

template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}

inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(
      std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

}  // namespace internal

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_TASK_H_
