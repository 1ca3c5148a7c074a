// UvLoop's core: time, posted work, the cross-thread queue, running and the
// clean shutdown. Timers, streams and listeners live in uv_timer.cc,
// uv_stream.cc and uv_listener.cc.
//
// Time. Now() is uv_hrtime (CLOCK_MONOTONIC, nanoseconds), cached and
// sampled again at most twice per turn, at the two points where libuv itself
// updates its clock: when a turn begins, and when the poll for I/O returns.
// The sample is lazy (taken by the first Now() after one of those points),
// so a turn that never asks for the time never reads the clock, and within a
// phase every caller sees the same time. It never goes backwards. It is
// offset so that it reads as the wall clock at the time the loop was made,
// which keeps traces readable; it does not follow later wall-clock changes.
//
// A turn is one uv_run(UV_RUN_ONCE): timers, idle (posted work and timers
// that were already due), poll for I/O and its callbacks, closing handles,
// timers again.
#include "moonpool/driver/uv_loop.h"

#include <signal.h>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "uv_internal.h"

namespace moonpool::driver {
namespace {

// Writing to a socket the peer has reset raises SIGPIPE, whose default
// action ends the process; libuv leaves that to the application. A network
// library has to turn it off: once per process, and only if the program has
// not installed its own disposition.
void IgnoreSigpipeOnce() {
  static const bool done = [] {
    struct sigaction current;
    if (sigaction(SIGPIPE, nullptr, &current) == 0 &&
        current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
    return true;
  }();
  (void)done;
}

uint64_t SeedFrom(const UvLoopOptions& options) {
  if (options.seed.has_value()) return *options.seed;
  std::random_device device;
  return (uint64_t{device()} << 32) ^ uint64_t { device() };
}

}  // namespace

UvLoop::Impl::Impl(const UvLoopOptions& options)
    : read_buffer_bytes_(options.read_buffer_bytes > 0
                             ? options.read_buffer_bytes
                             : 64 * 1024),
      rng_(SeedFrom(options)) {
  IgnoreSigpipeOnce();
  if (int r = uv_loop_init(&loop_); r != 0) {
    // The constructor cannot report a Status; a process that cannot make an
    // epoll instance cannot do anything useful either.
    std::fprintf(stderr, "moonpool UvLoop: uv_loop_init failed: %s\n",
                 uv_strerror(r));
    std::abort();
  }
  loop_.data = this;
  base_ns_ = static_cast<int64_t>(uv_hrtime());
  base_time_ = absl::Now();
  now_ns_ = base_ns_;
  now_time_ = base_time_;

  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, [](uv_prepare_t* p) {
    Impl* impl = static_cast<Impl*>(p->data);
    impl->time_stale_ = true;
    impl->RunTurnEnd();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
  // Work posted by I/O callbacks (a reply resuming its requester) runs in
  // the check phase right after them, not after another poll: that poll
  // would be one more epoll_wait per hop, a few microseconds each on a VM.
  // The turn-end work that posted work scheduled (the next request's write)
  // runs there too, after it: left to the next iteration's prepare phase,
  // it would keep the idle handle on into that iteration, and libuv (this
  // build, like 1.45) then polls without blocking once more before it
  // sleeps: one extra epoll_wait per request at one request in flight.
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, [](uv_check_t* c) {
    Impl* impl = static_cast<Impl*>(c->data);
    if (impl->idle_active_) impl->DrainPosted();
    impl->RunTurnEnd();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_async_init(&loop_, &async_, [](uv_async_t* a) {
    static_cast<Impl*>(a->data)->DrainRemote();
  });
  async_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));

  deadline_timer_ = new internal::TimerState(this, nullptr);
}

UvLoop::Impl::~Impl() = default;

// ---------------------------------------------------------------- time

absl::Time UvLoop::Impl::Now() const {
  if (time_stale_) RefreshTime();
  return now_time_;
}

void UvLoop::Impl::RefreshTime() const {
  const auto t = static_cast<int64_t>(uv_hrtime());
  if (t > now_ns_) now_ns_ = t;
  // Converted here, once per sample, not in every Now(): a request reads
  // the time several times a turn, and absl::Time arithmetic is not free.
  now_time_ = base_time_ + absl::Nanoseconds(now_ns_ - base_ns_);
  time_stale_ = false;
}

uint64_t UvLoop::Impl::TimerDelayMs(absl::Time when) const {
  // Both clocks count from the same origin (CLOCK_MONOTONIC and its coarse
  // variant), so uv_now converts to our scale exactly.
  const auto uv_now_ns = static_cast<int64_t>(uv_now(&loop_)) * 1'000'000;
  const absl::Duration from_uv_now =
      (when - base_time_) - absl::Nanoseconds(uv_now_ns - base_ns_);
  if (from_uv_now <= absl::ZeroDuration()) return 0;
  if (from_uv_now >= absl::Hours(24 * 365 * 1000)) return UINT64_MAX;
  return static_cast<uint64_t>(absl::ToInt64Milliseconds(
      absl::Ceil(from_uv_now, absl::Milliseconds(1))));
}

// ---------------------------------------------------------------- posting

void UvLoop::Impl::Post(absl::AnyInvocable<void()> fn) {
  // During shutdown nothing runs any more; fn is destroyed unrun on return.
  if (shutting_down_) return;
  posted_.push_back(std::move(fn));
  UpdateIdle();
}

void UvLoop::Impl::AddDueTimer(internal::TimerState* timer) {
  assert(!timer->on_due_list);
  timer->on_due_list = true;
  timer->due_generation = drain_generation_;
  timer->due_prev = due_tail_;
  timer->due_next = nullptr;
  if (due_tail_ != nullptr) {
    due_tail_->due_next = timer;
  } else {
    due_head_ = timer;
  }
  due_tail_ = timer;
  UpdateIdle();
}

void UvLoop::Impl::RemoveDueTimer(internal::TimerState* timer) {
  if (!timer->on_due_list) return;
  if (timer->due_prev != nullptr) {
    timer->due_prev->due_next = timer->due_next;
  } else {
    due_head_ = timer->due_next;
  }
  if (timer->due_next != nullptr) {
    timer->due_next->due_prev = timer->due_prev;
  } else {
    due_tail_ = timer->due_prev;
  }
  timer->due_prev = timer->due_next = nullptr;
  timer->on_due_list = false;
  // The idle handle is left running until the next drain settles it: an
  // extra non-blocking poll is cheaper than restarting it each time.
}

void UvLoop::Impl::ScheduleTurnEnd(TurnEndHandler* handler) {
  turn_end_.push_back(handler);
}

void UvLoop::Impl::CancelTurnEnd(TurnEndHandler* handler) {
  for (TurnEndHandler*& h : turn_end_) {
    if (h == handler) h = nullptr;
  }
  for (TurnEndHandler*& h : turn_end_running_) {
    if (h == handler) h = nullptr;
  }
}

void UvLoop::Impl::RunTurnEnd() {
  if (turn_end_.empty()) return;
  turn_end_running_.swap(turn_end_);
  // Index, not iterator: a handler may cancel a later one.
  for (size_t i = 0; i < turn_end_running_.size(); ++i) {
    if (TurnEndHandler* h = turn_end_running_[i]) {
      turn_end_running_[i] = nullptr;
      h->OnTurnEnd();
    }
  }
  turn_end_running_.clear();
  // Handlers scheduled from inside OnTurnEnd run at the end of the next
  // turn, which must then not block in its poll.
  UpdateIdle();
}

void UvLoop::Impl::UpdateIdle() {
  const bool want =
      !posted_.empty() || due_head_ != nullptr || !turn_end_.empty();
  if (want == idle_active_ || shutting_down_) return;
  if (want) {
    uv_idle_start(&idle_, [](uv_idle_t* h) {
      static_cast<Impl*>(h->data)->DrainPosted();
    });
  } else {
    uv_idle_stop(&idle_);
  }
  idle_active_ = want;
}

void UvLoop::Impl::DrainPosted() {
  // What is queued from here on belongs to the next drain.
  const uint64_t generation = ++drain_generation_;
  while (due_head_ != nullptr && due_head_->due_generation < generation) {
    internal::TimerState* timer = due_head_;
    RemoveDueTimer(timer);
    timer->Fire();
  }
  draining_.swap(posted_);
  for (absl::AnyInvocable<void()>& fn : draining_) fn();
  draining_.clear();
  UpdateIdle();
}

void UvLoop::Impl::PostFromAnyThread(absl::AnyInvocable<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(remote_mu_);
    remote_.push_back(std::move(fn));
  }
  uv_async_send(&async_);
}

bool UvLoop::Impl::DrainRemote() {
  {
    std::lock_guard<std::mutex> lock(remote_mu_);
    remote_draining_.swap(remote_);
  }
  const bool ran = !remote_draining_.empty();
  for (absl::AnyInvocable<void()>& fn : remote_draining_) fn();
  remote_draining_.clear();
  return ran;
}

// ---------------------------------------------------------------- running

int UvLoop::Impl::Turn() {
  time_stale_ = true;
  int alive = uv_run(&loop_, UV_RUN_ONCE);
  time_stale_ = true;
  // The async handle is unreferenced, so libuv does not poll for a
  // cross-thread post when nothing else is alive: run what has already
  // arrived rather than report "nothing left" with work queued.
  if (alive == 0 && DrainRemote()) alive = 1;
  return alive;
}

void UvLoop::Impl::Run() {
  assert(!running_ && "Run/RunUntil called from inside the loop");
  running_ = true;
  while (true) {
    const int alive = Turn();
    if (stop_requested_ || alive == 0) break;
  }
  running_ = false;
  stop_requested_ = false;
}

bool UvLoop::Impl::RunUntil(absl::FunctionRef<bool()> done,
                            absl::Time deadline) {
  assert(!running_ && "Run/RunUntil called from inside the loop");
  // Already done: no turn at all.
  bool result = done();
  if (result) return true;
  running_ = true;
  const bool bounded = deadline != absl::InfiniteFuture();
  // The deadline timer keeps uv_run from blocking past the deadline (and a
  // deadline already passed still gets one non-blocking turn).
  if (bounded) deadline_timer_->Start(deadline);
  while (true) {
    const int alive = Turn();
    result = done();
    if (result || stop_requested_ || alive == 0) break;
    if (bounded && Now() >= deadline) break;
  }
  deadline_timer_->Stop();
  running_ = false;
  stop_requested_ = false;
  return result;
}

// Called outside Run / RunUntil, the request waits for the next one, which
// then returns without a turn (libuv's uv_stop does the same).
void UvLoop::Impl::Stop() {
  stop_requested_ = true;
  uv_stop(&loop_);
}

// ---------------------------------------------------------------- shutdown

void UvLoop::Impl::Shutdown() {
  // Posted work is destroyed unrun. Destroying it may destroy objects it
  // captured (timers, streams), which is why the handles are still open.
  shutting_down_ = true;
  {
    std::vector<absl::AnyInvocable<void()>> dropped;
    dropped.swap(posted_);
    dropped.clear();
    std::lock_guard<std::mutex> lock(remote_mu_);
    dropped.swap(remote_);
  }
  deadline_timer_->Close();
  deadline_timer_ = nullptr;

  assert(live_objects == 0 &&
         "a Timer, Stream or Listener outlived its UvLoop; destroy them "
         "first");
  assert(due_head_ == nullptr);

  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  // Release builds only reach here with live handles if the user broke the
  // lifetime rule; closing them still lets the uv loop close (their states
  // leak, which beats a use after free).
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  [[maybe_unused]] const int rc = uv_loop_close(&loop_);
  assert(rc == 0 && "uv_loop_close: handles still open after shutdown");
}

// ---------------------------------------------------------------- UvLoop

UvLoop::UvLoop(UvLoopOptions options)
    : impl_(std::make_unique<Impl>(options)) {}

UvLoop::~UvLoop() {
  // Tasks first: their frames own timers and streams that need the loop.
  DestroyTasks();
  impl_->Shutdown();
}

absl::Time UvLoop::Now() const { return impl_->Now(); }
uint64_t UvLoop::Random() { return impl_->Random(); }

std::unique_ptr<Timer> UvLoop::CreateTimer(absl::AnyInvocable<void()> on_fire) {
  return impl_->CreateTimer(std::move(on_fire));
}

void UvLoop::Post(absl::AnyInvocable<void()> fn) { impl_->Post(std::move(fn)); }

void UvLoop::ScheduleTurnEnd(TurnEndHandler* handler) {
  impl_->ScheduleTurnEnd(handler);
}

void UvLoop::CancelTurnEnd(TurnEndHandler* handler) {
  impl_->CancelTurnEnd(handler);
}

void UvLoop::PostFromAnyThread(absl::AnyInvocable<void()> fn) {
  impl_->PostFromAnyThread(std::move(fn));
}

absl::StatusOr<std::unique_ptr<Listener>> UvLoop::Listen(
    const Address& address, const ListenOptions& options,
    AcceptCallback on_accept) {
  return impl_->Listen(address, options, std::move(on_accept));
}

absl::StatusOr<std::unique_ptr<Stream>> UvLoop::Connect(
    const Address& address, ConnectCallback on_connected) {
  return impl_->Connect(address, std::move(on_connected));
}

absl::StatusOr<std::unique_ptr<Resolution>> UvLoop::Resolve(
    absl::string_view host, uint16_t port, ResolveCallback done) {
  return impl_->Resolve(host, port, std::move(done));
}

void UvLoop::Run() { impl_->Run(); }

bool UvLoop::RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return impl_->RunUntil(done, deadline);
}

void UvLoop::Stop() { impl_->Stop(); }

}  // namespace moonpool::driver
