// Select runs several awaitables at once, waits for the first to finish, and
// cancels (destroys) the others: a race.
//
//   std::variant<absl::StatusOr<Pong>, std::monostate> r =
//       co_await Select(std::move(pong_future), Sleep(loop, absl::Seconds(1)));
//   if (r.index() == 1) return absl::DeadlineExceededError("no pong");
//   absl::StatusOr<Pong> pong = std::get<0>(std::move(r));
//
// The result is a std::variant with one alternative per argument, in order;
// its index() names the winner and holds the winner's value (std::monostate
// for a void one). Alternatives may repeat a type (two Task<int>): read them
// with std::get<I>, by index.
//
// Arguments are Tasks, or any other Awaitable (Future, Sleep,
// CancellationToken::WhenCancelled, another Select), which Select wraps in a
// Task (one more frame each). Select takes them by value, so it owns them:
// pass temporaries or std::move.
//
// Rules:
//   - Branches start in argument order, inside the co_await. If one finishes
//     while starting (it never suspends), it wins: later branches never start.
//   - The losers are destroyed, each cancelled at its suspension point
//     (task.h), before the awaiting coroutine resumes. Their side effects up
//     to that point stay done; a loser never finishes later.
//   - When two branches could both finish on the same loop turn, the one the
//     loop wakes first wins, and the other is destroyed before it runs: the
//     outcome is decided by the loop's own order, so it is deterministic on a
//     deterministic loop.
//   - Destroying the awaiting coroutine while it waits destroys every branch.
//
// What it is not: a join (use sequential co_awaits, or TaskScope), and it
// does not use the loop: a Select of branches that never wake never wakes.
#ifndef MOONPOOL_DRIVER_SELECT_H_
#define MOONPOOL_DRIVER_SELECT_H_

#include <array>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "moonpool/driver/awaitable.h"
#include "moonpool/driver/task.h"

namespace moonpool::driver {

namespace internal {

template <typename T>
using SelectAlternative =
    std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <typename A>
struct TaskValueOf {
  using type = AwaitResult<A>;
  static constexpr bool kIsTask = false;
};
template <typename T>
struct TaskValueOf<Task<T>> {
  using type = T;
  static constexpr bool kIsTask = true;
};

// `co_return` of a void expression evaluates it and returns void, so this
// serves void awaitables too.
template <typename A>
Task<AwaitResult<A>> AwaitInTask(A awaitable) {
  co_return co_await std::move(awaitable);
}

}  // namespace internal

// Wraps any awaitable in a Task that awaits it: how a Future, a Sleep or a
// cancellation can be a branch of Select or part of a spawned task. A Task is
// returned as it is. Takes the awaitable by value (pass it moved).
template <Awaitable A>
Task<typename internal::TaskValueOf<A>::type> AsTask(A awaitable) {
  if constexpr (internal::TaskValueOf<A>::kIsTask) {
    return awaitable;  // implicitly moved
  } else {
    return internal::AwaitInTask(std::move(awaitable));
  }
}

// The awaitable Select returns. Movable until awaited; once awaited it stays
// where it is until it is destroyed.
template <typename... Ts>
class [[nodiscard]] SelectAwaitable {
  static_assert(sizeof...(Ts) >= 1, "Select of nothing");

 public:
  using Result = std::variant<internal::SelectAlternative<Ts>...>;

  explicit SelectAwaitable(Task<Ts>... tasks) : tasks_(std::move(tasks)...) {}
  SelectAwaitable(SelectAwaitable&& other) noexcept
      : tasks_(std::move(other.tasks_)) {
    assert(!other.parent_ && "moving a Select that is being awaited");
  }
  SelectAwaitable& operator=(SelectAwaitable&&) = delete;

  bool await_ready() const noexcept { return false; }

  // Starts the branches in order; returns false (resume at once) when one
  // finished while starting.
  bool await_suspend(std::coroutine_handle<> parent) noexcept {
    parent_ = parent;
    starting_ = true;
    StartAll(std::index_sequence_for<Ts...>());
    starting_ = false;
    return winner_ == kNoWinner;
  }

  Result await_resume() { return TakeWinner(std::index_sequence_for<Ts...>()); }

 private:
  static constexpr size_t kNoWinner = sizeof...(Ts);

  class Branch final : public internal::TaskObserver {
   public:
    std::coroutine_handle<> OnTaskDone() noexcept override {
      return select_->OnBranchDone(index_);
    }
    SelectAwaitable* select_ = nullptr;
    size_t index_ = 0;
  };

  template <size_t... Is>
  void StartAll(std::index_sequence<Is...>) {
    // Short-circuits: stops starting branches once one has won.
    (void)(StartBranch<Is>() && ...);
  }

  template <size_t I>
  bool StartBranch() {
    auto& task = std::get<I>(tasks_);
    auto handle = internal::TaskAccess::Handle(task);
    assert(handle && "a Select branch is an empty Task");
    branches_[I].select_ = this;
    branches_[I].index_ = I;
    handle.promise().set_observer(&branches_[I]);
    Resume(handle);
    return winner_ == kNoWinner;
  }

  // Runs inside the winner's final suspension.
  std::coroutine_handle<> OnBranchDone(size_t index) noexcept {
    assert(winner_ == kNoWinner);
    winner_ = index;
    DestroyLosers(std::index_sequence_for<Ts...>());
    // While starting, await_suspend is still on the stack and returns false
    // to resume the parent; afterwards the trampoline resumes it.
    return starting_ ? nullptr : parent_;
  }

  template <size_t... Is>
  void DestroyLosers(std::index_sequence<Is...>) {
    ((Is != winner_ ? (void)(std::get<Is>(tasks_) = Task<Ts>()) : (void)0),
     ...);
  }

  template <size_t... Is>
  Result TakeWinner(std::index_sequence<Is...>) {
    using Taker = Result (*)(SelectAwaitable&);
    static constexpr Taker kTakers[] = {&SelectAwaitable::Take<Is>...};
    assert(winner_ != kNoWinner);
    return kTakers[winner_](*this);
  }

  template <size_t I>
  static Result Take(SelectAwaitable& self) {
    auto handle = internal::TaskAccess::Handle(std::get<I>(self.tasks_));
    if constexpr (std::is_void_v<std::tuple_element_t<I, std::tuple<Ts...>>>) {
      return Result(std::in_place_index<I>);
    } else {
      return Result(std::in_place_index<I>, handle.promise().TakeResult());
    }
  }

  std::tuple<Task<Ts>...> tasks_;
  std::array<Branch, sizeof...(Ts)> branches_;
  std::coroutine_handle<> parent_;
  size_t winner_ = kNoWinner;
  bool starting_ = false;
};

// Races the arguments; see the top of this file.
template <Awaitable... As>
SelectAwaitable<typename internal::TaskValueOf<As>::type...> Select(
    As... awaitables) {
  return SelectAwaitable<typename internal::TaskValueOf<As>::type...>(
      AsTask(std::move(awaitables))...);
}

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_SELECT_H_
