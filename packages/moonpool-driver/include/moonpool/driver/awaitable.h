// The rules every awaitable of the coroutine runtime keeps, the `Awaitable`
// concept, and `Resume`, the one way a loop callback may resume a coroutine.
//
// The model in one sentence: a coroutine runs only on the loop's thread, only
// from a loop callback, and never inside the call of another coroutine that
// woke it. Every awaitable here (Task, Future, Sleep, Select,
// CancellationToken::WhenCancelled) keeps these rules, and one you write
// yourself must keep them too:
//
//   1. Resume the waiting coroutine from a loop callback (a timer's, a
//      posted function's, a stream's) through moonpool::driver::Resume(h),
//      never h.resume() and never from inside a call made by some other
//      coroutine (a Set, a Cancel). Post the wake-up instead. This is what
//      makes Set() and Cancel() non-re-entrant, and what lets Select destroy
//      the losing branches knowing none of them is running.
//   2. Destroying a suspended coroutine destroys the awaiter it is suspended
//      on: the awaiter's destructor must make sure that nothing will ever
//      resume that handle again (stop the timer, leave the waiter list,
//      forget the handle). That is all cancellation is in this runtime.
//
// Why Resume rather than h.resume(): chains of awaits hand control from one
// coroutine to the next through a trampoline (internal::ScheduleNext), not
// through symmetric transfer, because GCC turns symmetric transfer into a
// real tail call only with sibling-call optimisation on and AddressSanitizer
// off. At -O0, -O1, or with ASan a chain of 100000 awaits would overflow the
// stack. The trampoline keeps the stack flat under every build, at the cost of
// a return and a thread-local load per hand-off. Resume runs that trampoline.
//
// What this is not: a scheduler. There is no run queue beyond the one
// coroutine a finishing await hands control to; everything else waits in the
// Loop (Post, timers, I/O callbacks).
#ifndef MOONPOOL_DRIVER_AWAITABLE_H_
#define MOONPOOL_DRIVER_AWAITABLE_H_

#include <cassert>
#include <concepts>
#include <coroutine>
#include <utility>

namespace moonpool::driver {

// An awaiter: what co_await finally talks to.
template <typename A>
concept Awaiter = requires(A& a, std::coroutine_handle<> h) {
  { a.await_ready() } -> std::convertible_to<bool>;
  a.await_suspend(h);
  a.await_resume();
};

// Anything `co_await std::move(a)` accepts in a coroutine of this runtime: an
// awaiter itself, or a type whose rvalue operator co_await gives one.
template <typename A>
concept Awaitable = Awaiter<std::remove_cvref_t<A>> || requires(A&& a) {
  { std::forward<A>(a).operator co_await() } -> Awaiter;
} || requires(A&& a) {
  { operator co_await(std::forward<A>(a)) } -> Awaiter;
};

namespace internal {

// The trampoline's one slot: the coroutine to run when the coroutine running
// now suspends. Constant-initialised, so reaching it is one thread-pointer
// relative load with no guard.
struct ResumeSlot {
  std::coroutine_handle<> next;
};
constinit inline thread_local ResumeSlot resume_slot;

// Called from an await_suspend that returns void: once the calling coroutine
// has suspended, the trampoline that resumed it runs `h`. This is how a Task
// starts its child and how a finishing Task wakes its awaiter.
inline void ScheduleNext(std::coroutine_handle<> h) noexcept {
  assert(!resume_slot.next && "two coroutines scheduled in one hand-off");
  resume_slot.next = h;
}

template <typename A>
decltype(auto) GetAwaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(a)); }) {
    return operator co_await(std::forward<A>(a));
  } else {
    return std::forward<A>(a);
  }
}

}  // namespace internal

// What `co_await std::declval<A>()` yields.
template <Awaitable A>
using AwaitResult =
    decltype(internal::GetAwaiter(std::declval<A>()).await_resume());

// Resumes the suspended coroutine `h` and runs, before returning, every
// coroutine that the resulting chain of awaits hands control to, until all of
// them are suspended or finished. Call it from loop callbacks only (rule 1
// above). Nested calls are allowed (Select starts its branches with one).
inline void Resume(std::coroutine_handle<> h) noexcept {
  internal::ResumeSlot& slot = internal::resume_slot;
  std::coroutine_handle<> saved = std::exchange(slot.next, nullptr);
  while (h) {
    h.resume();
    h = std::exchange(slot.next, nullptr);
  }
  slot.next = saved;
}

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_AWAITABLE_H_
