// Promise<T> / Future<T>: a one-shot channel from callback code to a
// coroutine. The Promise end is fulfilled once, from any code on the loop's
// thread; the Future end is awaited once and yields absl::StatusOr<T>
// (absl::Status for T = void).
//
//   auto [promise, future] = MakePromise<Pong>(loop);
//   stream_handler.on_pong = [p = std::move(promise)](Pong pong) mutable {
//     p.Set(std::move(pong));
//   };
//   absl::StatusOr<Pong> pong = co_await std::move(future);
//
// Rules:
//   - Set() never resumes the waiting coroutine inside the call: the
//     resumption is posted to the loop (Loop::Post) and runs on a later turn.
//     So Set() is never re-entrant into its caller, whatever the waiter does
//     when it wakes (kj's rule: fulfilling a promise runs no continuation).
//     The posted resumption allocates nothing.
//   - Awaiting a Future that is already fulfilled does not suspend.
//   - A Promise destroyed unfulfilled fulfils the Future with
//     CancelledError("promise destroyed before it was fulfilled"): a waiter
//     always hears an outcome, never silence.
//   - Destroying the coroutine that awaits the Future (cancelling it) makes
//     the shared state forget it: a later Set() stores its value for nobody
//     and resumes nothing. Destroying an unawaited Future is allowed too.
//
// Ownership: the Promise and the Future share one reference-counted state
// (one allocation per pair, from the runtime's per-thread block cache, so a
// steady stream of hand-offs allocates nothing), freed when both ends, and any
// posted resumption, are gone. Neither end is copyable; both are movable, and a
// moved-from end is empty (it may only be assigned or destroyed).
//
// What it is not: thread-safe (loop's thread only), a broadcast (one
// waiter), or reusable (one value).
#ifndef MOONPOOL_DRIVER_PROMISE_H_
#define MOONPOOL_DRIVER_PROMISE_H_

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moonpool/driver/awaitable.h"
#include "moonpool/driver/internal/block_pool.h"
#include "moonpool/driver/loop.h"

namespace moonpool::driver {

// What a Promise may carry: nothing (void), or a movable value that is not
// itself a Status (a fallible void is Promise<void>, fulfilled with a Status).
template <typename T>
concept PromiseValue = std::is_void_v<T> ||
    std::conjunction_v<std::is_object<T>, std::is_move_constructible<T>,
                       std::negation<std::is_same<T, absl::Status>>>;

template <PromiseValue T>
class Promise;
template <PromiseValue T>
class Future;
template <PromiseValue T>
std::pair<Promise<T>, Future<T>> MakePromise(Loop& loop);

namespace internal {

template <typename T>
using PromiseResult =
    std::conditional_t<std::is_void_v<T>, absl::Status, absl::StatusOr<T>>;

// The state a Promise/Future pair shares. References: the promise's, the
// future's (passed on to its awaiter) and a posted resumption's.
template <typename T>
class PromiseState {
 public:
  using Result = PromiseResult<T>;

  static void* operator new(std::size_t size) {
    return BlockPool::Allocate(size);
  }
  static void operator delete(void* block, std::size_t size) noexcept {
    BlockPool::Free(block, size);
  }

  explicit PromiseState(Loop& loop) : loop_(&loop) {}
  PromiseState(const PromiseState&) = delete;
  PromiseState& operator=(const PromiseState&) = delete;

  void Ref() { ++refs_; }
  void Unref() {
    if (--refs_ == 0) delete this;
  }

  bool fulfilled() const { return result_.has_value(); }

  void Fulfil(Result result) {
    assert(!fulfilled() && "a Promise is fulfilled at most once");
    result_.emplace(std::move(result));
    if (waiter_) {
      Ref();
      loop_->Post(ResumeWaiter(this));
    }
  }

  void set_waiter(std::coroutine_handle<> h) { waiter_ = h; }
  void forget_waiter() { waiter_ = nullptr; }
  Result TakeResult() { return std::move(*result_); }

 private:
  // The posted resumption: owns a reference, so it is safe whether it runs
  // after the waiter was destroyed or is destroyed unrun with the loop.
  class ResumeWaiter {
   public:
    explicit ResumeWaiter(PromiseState* state) : state_(state) {}
    ResumeWaiter(ResumeWaiter&& other) noexcept
        : state_(std::exchange(other.state_, nullptr)) {}
    ResumeWaiter& operator=(ResumeWaiter&&) = delete;
    ~ResumeWaiter() {
      if (state_ != nullptr) state_->Unref();
    }
    void operator()() {
      if (std::coroutine_handle<> h = std::exchange(state_->waiter_, nullptr)) {
        Resume(h);
      }
    }

   private:
    PromiseState* state_;
  };

  ~PromiseState() = default;

  Loop* loop_;
  uint32_t refs_ = 2;
  std::coroutine_handle<> waiter_;
  std::optional<Result> result_;
};

template <typename T>
class [[nodiscard]] FutureAwaiter {
 public:
  explicit FutureAwaiter(PromiseState<T>* state) : state_(state) {
    assert(state_ != nullptr && "awaiting an empty (moved-from) Future");
  }
  FutureAwaiter(const FutureAwaiter&) = delete;
  FutureAwaiter& operator=(const FutureAwaiter&) = delete;
  ~FutureAwaiter() {
    state_->forget_waiter();
    state_->Unref();
  }

  bool await_ready() const noexcept { return state_->fulfilled(); }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    state_->set_waiter(h);
  }
  PromiseResult<T> await_resume() { return state_->TakeResult(); }

 private:
  PromiseState<T>* state_;
};

}  // namespace internal

// The writing end. Dropping it unfulfilled fulfils the Future with
// CancelledError.
template <PromiseValue T>
class Promise {
 public:
  // An empty promise; valid() is false.
  Promise() = default;
  Promise(Promise&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)) {}
  Promise& operator=(Promise&& other) noexcept {
    if (this != &other) {
      Abandon();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  ~Promise() { Abandon(); }

  bool valid() const { return state_ != nullptr; }
  // True once Set was called (the Promise stays valid until destroyed).
  bool fulfilled() const { return state_ != nullptr && state_->fulfilled(); }

  // Fulfils the future: with a value or an error Status (Promise<T>), or with
  // a Status (Promise<void>; OK by default). The waiter, if any, resumes on a
  // later loop turn, never inside this call.
  // REQUIRES: valid() && !fulfilled().
  void Set(internal::PromiseResult<T> result) {
    assert(valid());
    state_->Fulfil(std::move(result));
  }
  void Set() requires std::is_void_v<T> { Set(absl::OkStatus()); }

 private:
  friend std::pair<Promise<T>, Future<T>> MakePromise<T>(Loop& loop);
  explicit Promise(internal::PromiseState<T>* state) : state_(state) {}

  void Abandon() {
    if (state_ == nullptr) return;
    if (!state_->fulfilled()) {
      state_->Fulfil(
          absl::CancelledError("promise destroyed before it was fulfilled"));
    }
    std::exchange(state_, nullptr)->Unref();
  }

  internal::PromiseState<T>* state_ = nullptr;
};

// The reading end: `co_await std::move(future)` yields absl::StatusOr<T>
// (absl::Status for T = void), once.
template <PromiseValue T>
class [[nodiscard]] Future {
 public:
  // An empty future; valid() is false.
  Future() = default;
  Future(Future&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)) {}
  Future& operator=(Future&& other) noexcept {
    if (this != &other) {
      if (state_ != nullptr) state_->Unref();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  ~Future() {
    if (state_ != nullptr) state_->Unref();
  }

  bool valid() const { return state_ != nullptr; }
  // True once the promise was fulfilled (or abandoned): awaiting will not
  // suspend.
  bool ready() const { return state_ != nullptr && state_->fulfilled(); }

  // REQUIRES: valid().
  internal::FutureAwaiter<T> operator co_await() && noexcept {
    return internal::FutureAwaiter<T>(std::exchange(state_, nullptr));
  }

 private:
  friend std::pair<Promise<T>, Future<T>> MakePromise<T>(Loop& loop);
  explicit Future(internal::PromiseState<T>* state) : state_(state) {}

  internal::PromiseState<T>* state_ = nullptr;
};

// A connected Promise/Future pair bound to `loop`, whose Post delivers the
// wake-up. One allocation.
template <PromiseValue T>
std::pair<Promise<T>, Future<T>> MakePromise(Loop& loop) {
  auto* state = new internal::PromiseState<T>(loop);  // two references
  return {Promise<T>(state), Future<T>(state)};
}

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_PROMISE_H_
