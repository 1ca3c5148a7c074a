// Cancellation from the outside: a CancellationSource owns the decision, the
// CancellationTokens it hands out let any number of coroutines notice it.
//
//   CancellationSource source(loop);
//   scope.Spawn(Fetch(client, source.token()));
//   ...
//   source.Cancel("shutting down");       // Fetch gets CancelledError
//
//   Task<absl::Status> Fetch(Client& client, CancellationToken token) {
//     absl::StatusOr<Reply> r =
//         co_await WithCancellation(token, client.Call(...));
//     ...
//   }
//
// In this runtime cancelling a coroutine means destroying it (task.h); a
// token is how code that does not own a task asks for that. WithCancellation
// races the task against the token (select.h): when the token fires first,
// the task is destroyed at its suspension point (a Sleep in it stops its
// timer, a Future in it forgets its waiter) and the caller gets
// CancelledError. A coroutine can also poll `token.cancelled()`, or await
// `token.WhenCancelled()` in its own Select.
//
// Rules:
//   - Cancel() is idempotent and never re-entrant: coroutines waiting in
//     WhenCancelled resume on a later loop turn (Loop::Post), never inside
//     Cancel(). cancelled() is true as soon as Cancel() returns.
//   - Destroying the CancellationSource cancels it (kj's Canceler): work that
//     was given its tokens does not outlive its owner's interest in it.
//     Tokens stay valid after the source is gone.
//   - A default-constructed token is never cancelled; awaiting its
//     WhenCancelled suspends until the awaiting coroutine is destroyed.
//
// Ownership: the source and its tokens share one reference-counted state,
// allocated by the source. A token is a cheap copyable view (one pointer, a
// reference count bump). The source borrows the Loop: destroy it before the
// loop. Loop's thread only.
#ifndef MOONPOOL_DRIVER_CANCELLATION_H_
#define MOONPOOL_DRIVER_CANCELLATION_H_

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/awaitable.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/task.h"

namespace moonpool::driver {

namespace internal {

// A coroutine suspended in WhenCancelled, linked into the state's list.
struct CancelWaiter {
  CancelWaiter* prev = nullptr;
  CancelWaiter* next = nullptr;
  std::coroutine_handle<> handle;
  bool linked = false;
};

class CancellationState {
 public:
  explicit CancellationState(Loop& loop) : loop_(&loop) {}
  CancellationState(const CancellationState&) = delete;
  CancellationState& operator=(const CancellationState&) = delete;

  void Ref() { ++refs_; }
  void Unref() {
    if (--refs_ == 0) delete this;
  }

  bool cancelled() const { return cancelled_; }
  [[nodiscard]] absl::Status status() const {
    return cancelled_ ? absl::CancelledError(reason_) : absl::OkStatus();
  }

  void Cancel(absl::string_view reason) {
    if (cancelled_) return;
    cancelled_ = true;
    reason_ = std::string(reason);
    if (waiters_ != nullptr) {
      Ref();
      loop_->Post(WakeWaiters(this));
    }
  }

  void Add(CancelWaiter* waiter) {
    assert(!waiter->linked);
    waiter->prev = nullptr;
    waiter->next = waiters_;
    if (waiters_ != nullptr) waiters_->prev = waiter;
    waiters_ = waiter;
    waiter->linked = true;
  }

  void Remove(CancelWaiter* waiter) {
    if (!waiter->linked) return;
    if (waiter->prev != nullptr) {
      waiter->prev->next = waiter->next;
    } else {
      waiters_ = waiter->next;
    }
    if (waiter->next != nullptr) waiter->next->prev = waiter->prev;
    waiter->prev = waiter->next = nullptr;
    waiter->linked = false;
  }

 private:
  // The posted wake-up: owns a reference. Resuming one waiter may destroy
  // others (a Select destroying its losers); they leave the list as they go,
  // so the head is taken afresh each time.
  class WakeWaiters {
   public:
    explicit WakeWaiters(CancellationState* state) : state_(state) {}
    WakeWaiters(WakeWaiters&& other) noexcept
        : state_(std::exchange(other.state_, nullptr)) {}
    WakeWaiters& operator=(WakeWaiters&&) = delete;
    ~WakeWaiters() {
      if (state_ != nullptr) state_->Unref();
    }
    void operator()() {
      while (CancelWaiter* waiter = state_->waiters_) {
        state_->Remove(waiter);
        Resume(waiter->handle);
      }
    }

   private:
    CancellationState* state_;
  };

  ~CancellationState() = default;

  Loop* loop_;
  uint32_t refs_ = 1;
  bool cancelled_ = false;
  std::string reason_;
  CancelWaiter* waiters_ = nullptr;
};

}  // namespace internal

// `co_await token.WhenCancelled()`: resumes (with nothing) once the token is
// cancelled; does not suspend if it already is. Movable until awaited.
class [[nodiscard]] WhenCancelledAwaitable {
 public:
  explicit WhenCancelledAwaitable(internal::CancellationState* state)
      : state_(state) {
    if (state_ != nullptr) state_->Ref();
  }
  WhenCancelledAwaitable(WhenCancelledAwaitable&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)) {
    assert(!other.waiter_.linked && "moving an awaited WhenCancelled");
  }
  WhenCancelledAwaitable& operator=(WhenCancelledAwaitable&&) = delete;
  ~WhenCancelledAwaitable() {
    if (state_ != nullptr) {
      state_->Remove(&waiter_);
      state_->Unref();
    }
  }

  bool await_ready() const noexcept {
    return state_ != nullptr && state_->cancelled();
  }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    if (state_ == nullptr) return;  // never cancelled: wait to be destroyed
    waiter_.handle = h;
    state_->Add(&waiter_);
  }
  void await_resume() const noexcept {}

 private:
  internal::CancellationState* state_;
  internal::CancelWaiter waiter_;
};

// A copyable view of a CancellationSource's decision.
class CancellationToken {
 public:
  // Never cancelled.
  CancellationToken() = default;
  CancellationToken(const CancellationToken& other) : state_(other.state_) {
    if (state_ != nullptr) state_->Ref();
  }
  CancellationToken(CancellationToken&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)) {}
  CancellationToken& operator=(CancellationToken other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~CancellationToken() {
    if (state_ != nullptr) state_->Unref();
  }

  bool cancelled() const { return state_ != nullptr && state_->cancelled(); }
  // OK while not cancelled; then CancelledError with the source's reason.
  [[nodiscard]] absl::Status status() const {
    return state_ != nullptr ? state_->status() : absl::OkStatus();
  }
  // An awaitable that completes once this token is cancelled.
  WhenCancelledAwaitable WhenCancelled() const {
    return WhenCancelledAwaitable(state_);
  }

 private:
  friend class CancellationSource;
  explicit CancellationToken(internal::CancellationState* state)
      : state_(state) {
    state_->Ref();
  }

  internal::CancellationState* state_ = nullptr;
};

// Owns a cancellation decision. Destroying it cancels it.
class CancellationSource {
 public:
  explicit CancellationSource(Loop& loop)
      : state_(new internal::CancellationState(loop)) {}
  CancellationSource(CancellationSource&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)) {}
  CancellationSource& operator=(CancellationSource&& other) noexcept {
    if (this != &other) {
      Release();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  ~CancellationSource() { Release(); }

  // Cancels every token of this source; coroutines waiting for it resume on
  // a later turn. Idempotent: the first reason stays. REQUIRES: not moved
  // from.
  void Cancel(absl::string_view reason = "cancelled") {
    assert(state_ != nullptr);
    state_->Cancel(reason);
  }
  bool cancelled() const { return state_ != nullptr && state_->cancelled(); }
  CancellationToken token() const {
    assert(state_ != nullptr);
    return CancellationToken(state_);
  }

 private:
  void Release() {
    if (state_ == nullptr) return;
    state_->Cancel("cancellation source destroyed");
    std::exchange(state_, nullptr)->Unref();
  }

  internal::CancellationState* state_;
};

namespace internal {

// What WithCancellation yields for a Task<T>: a Status for void and Status,
// the same StatusOr for a StatusOr, and StatusOr<T> otherwise.
template <typename T>
struct Cancellable {
  using type = absl::StatusOr<T>;
};
template <>
struct Cancellable<void> {
  using type = absl::Status;
};
template <>
struct Cancellable<absl::Status> {
  using type = absl::Status;
};
template <typename U>
struct Cancellable<absl::StatusOr<U>> {
  using type = absl::StatusOr<U>;
};

}  // namespace internal

// Runs `task` unless and until `token` is cancelled. If the token fires
// first, `task` is destroyed (cancelled at its suspension point) and the
// result is CancelledError with the source's reason; if the token is already
// cancelled, `task` never starts.
template <TaskValue T>
Task<typename internal::Cancellable<T>::type> WithCancellation(
    CancellationToken token, Task<T> task) {
  if (token.cancelled()) co_return token.status();
  auto result = co_await Select(std::move(task), token.WhenCancelled());
  if (result.index() == 1) co_return token.status();
  if constexpr (std::is_void_v<T>) {
    co_return absl::OkStatus();
  } else {
    co_return std::get<0>(std::move(result));
  }
}

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_CANCELLATION_H_
