#include "moonpool/driver/task_scope.h"

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <utility>

#include "absl/status/status.h"
#include "moonpool/driver/awaitable.h"
#include "moonpool/driver/internal/block_pool.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/task.h"

namespace moonpool::driver {
namespace internal {

// One spawned task: the scope's list node and the observer of the task's
// end. Two references keep it: the scope's (dropped when the task finishes
// or is destroyed) and the posted start's (dropped when the loop runs or
// discards it), so a start that runs after the scope destroyed the task finds
// `frame_` empty instead of a dangling handle.
class SpawnedTask final : public TaskObserver {
 public:
  static void* operator new(std::size_t size) {
    return BlockPool::Allocate(size);
  }
  static void operator delete(void* block, std::size_t size) noexcept {
    BlockPool::Free(block, size);
  }

  SpawnedTask(TaskScope* scope, std::coroutine_handle<> frame,
              TaskPromise<absl::Status>* status_promise)
      : scope_(scope), frame_(frame), status_promise_(status_promise) {}

  std::coroutine_handle<> OnTaskDone() noexcept override {
    absl::Status status = status_promise_ != nullptr
                              ? status_promise_->TakeResult()
                              : absl::OkStatus();
    TaskScope* scope = scope_;
    std::coroutine_handle<> frame = std::exchange(frame_, nullptr);
    scope->Unlink(this);
    Unref();
    // We are inside the frame's final suspension: destroying it is allowed,
    // and nothing of it is touched afterwards.
    frame.destroy();
    if (!status.ok()) scope->ReportError(std::move(status));
    return nullptr;
  }

  void Start() {
    if (frame_) Resume(frame_);
  }

  void Unref() {
    if (--refs_ == 0) delete this;
  }

  TaskScope* scope_;
  std::coroutine_handle<> frame_;
  TaskPromise<absl::Status>* status_promise_;
  SpawnedTask* prev_ = nullptr;
  SpawnedTask* next_ = nullptr;

 private:
  ~SpawnedTask() = default;

  int refs_ = 2;
};

namespace {

// The posted start of a spawned task. Holds a reference, so the loop may run
// it or destroy it unrun (a loop being destroyed) with the same effect on
// memory. Fits AnyInvocable's inline storage: posting allocates nothing here.
class StartSpawnedTask {
 public:
  explicit StartSpawnedTask(SpawnedTask* task) : task_(task) {}
  StartSpawnedTask(StartSpawnedTask&& other) noexcept
      : task_(std::exchange(other.task_, nullptr)) {}
  StartSpawnedTask& operator=(StartSpawnedTask&&) = delete;
  ~StartSpawnedTask() {
    if (task_ != nullptr) task_->Unref();
  }

  void operator()() { task_->Start(); }

 private:
  SpawnedTask* task_;
};

}  // namespace
}  // namespace internal

TaskScope::TaskScope(Loop& loop,
                     absl::AnyInvocable<void(absl::Status)> on_error)
    : loop_(&loop), on_error_(std::move(on_error)) {
  assert(on_error_ && "a TaskScope needs an error handler");
  next_scope_ = loop.scopes_;
  if (next_scope_ != nullptr) next_scope_->prev_scope_ = this;
  loop.scopes_ = this;
}

TaskScope::~TaskScope() {
  if (destroyed_flag_ != nullptr) {
    // Destroyed by one of its own tasks' destructors while Clear() ran: tell
    // that Clear to stop, and finish its work here.
    *destroyed_flag_ = true;
    destroyed_flag_ = nullptr;
    clearing_ = false;
  }
  Clear();
  clearing_ = true;  // Spawn from here on destroys what it is given.
  if (loop_ != nullptr) DetachFromLoop();
}

void TaskScope::Spawn(Task<void> task) {
  std::coroutine_handle<internal::TaskPromise<void>> handle =
      internal::TaskAccess::Release(task);
  assert(handle && "spawning an empty Task");
  Adopt(handle, handle.promise(), nullptr);
}

void TaskScope::Spawn(Task<absl::Status> task) {
  std::coroutine_handle<internal::TaskPromise<absl::Status>> handle =
      internal::TaskAccess::Release(task);
  assert(handle && "spawning an empty Task");
  Adopt(handle, handle.promise(), &handle.promise());
}

void TaskScope::Adopt(std::coroutine_handle<> frame,
                      internal::TaskPromiseBase& promise,
                      internal::TaskPromise<absl::Status>* status_promise) {
  if (loop_ == nullptr || clearing_) {
    frame.destroy();
    return;
  }
  auto* task = new internal::SpawnedTask(this, frame, status_promise);
  promise.set_observer(task);
  Link(task);
  loop_->Post(internal::StartSpawnedTask(task));
}

void TaskScope::Clear() {
  if (clearing_) return;  // The outer Clear finishes the job.
  clearing_ = true;
  bool destroyed = false;
  destroyed_flag_ = &destroyed;
  while (tasks_ != nullptr) {
    internal::SpawnedTask* task = tasks_;
    Unlink(task);
    std::coroutine_handle<> frame = std::exchange(task->frame_, nullptr);
    task->Unref();
    frame.destroy();  // May run destructors that destroy this scope.
    if (destroyed) return;
  }
  destroyed_flag_ = nullptr;
  clearing_ = false;
}

void TaskScope::Link(internal::SpawnedTask* task) {
  task->prev_ = nullptr;
  task->next_ = tasks_;
  if (tasks_ != nullptr) tasks_->prev_ = task;
  tasks_ = task;
  ++size_;
}

void TaskScope::Unlink(internal::SpawnedTask* task) {
  if (task->prev_ != nullptr) {
    task->prev_->next_ = task->next_;
  } else {
    tasks_ = task->next_;
  }
  if (task->next_ != nullptr) task->next_->prev_ = task->prev_;
  task->prev_ = task->next_ = nullptr;
  --size_;
}

void TaskScope::DetachFromLoop() {
  if (prev_scope_ != nullptr) {
    prev_scope_->next_scope_ = next_scope_;
  } else {
    loop_->scopes_ = next_scope_;
  }
  if (next_scope_ != nullptr) next_scope_->prev_scope_ = prev_scope_;
  prev_scope_ = next_scope_ = nullptr;
  loop_ = nullptr;
}

void TaskScope::ReportError(absl::Status status) {
  on_error_(std::move(status));
}

}  // namespace moonpool::driver
