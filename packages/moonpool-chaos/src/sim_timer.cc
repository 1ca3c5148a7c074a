// SimLoop's timers: an entry in the event queue, moved by Start and removed
// by Stop. A timer of a killed host stays armed but calls nothing back (the
// crashed process's timers die with it).
#include <memory>
#include <optional>
#include <utility>

#include "sim_core.h"

namespace moonpool::chaos::internal {
namespace {

class SimTimer final : public driver::Timer {
 public:
  SimTimer(SimCore* core, HostState* host, absl::AnyInvocable<void()> on_fire)
      : core_(core),
        host_(host),
        incarnation_(host->incarnation),
        id_(core->next_timer_id++),
        on_fire_(std::move(on_fire)) {
    ++core_->live_objects;
  }
  ~SimTimer() override {
    Stop();
    if (alive_flag_ != nullptr) *alive_flag_ = false;
    --core_->live_objects;
  }

  void Start(absl::Time when) override {
    Stop();
    active_ = true;
    // Armed for never: active, but nothing for the loop to wait for.
    if (when == absl::InfiniteFuture()) return;
    key_ = core_->Schedule(core_->ToNs(when), [this] { Fire(); });
  }
  void Stop() override {
    active_ = false;
    if (key_.has_value()) {
      core_->Cancel(*key_);
      key_.reset();
    }
  }
  bool active() const override { return active_; }

 private:
  void Fire() {
    key_.reset();
    active_ = false;
    if (host_->incarnation != incarnation_ || !on_fire_) return;
    core_->TraceEvent(TraceKind::kTimerFired, id_);
    // The callback may destroy this timer: run a moved-out copy, and put
    // it back only if the timer is still there.
    absl::AnyInvocable<void()> fn = std::move(on_fire_);
    bool alive = true;
    alive_flag_ = &alive;
    fn();
    if (!alive) return;
    alive_flag_ = nullptr;
    on_fire_ = std::move(fn);
  }

  SimCore* const core_;
  HostState* const host_;
  const uint64_t incarnation_;
  const uint64_t id_;
  absl::AnyInvocable<void()> on_fire_;
  std::optional<EventKey> key_;
  bool active_ = false;
  bool* alive_flag_ = nullptr;
};

}  // namespace

std::unique_ptr<driver::Timer> SimCore::CreateTimer(
    HostState* host, absl::AnyInvocable<void()> on_fire) {
  return std::make_unique<SimTimer>(this, host, std::move(on_fire));
}

}  // namespace moonpool::chaos::internal
