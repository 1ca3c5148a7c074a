// SimCore's scheduler, hosts and observation; SimLoop and SimHost, which
// forward to it. The network is in sim_network.cc, timers in sim_timer.cc.
#include "sim_core.h"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace moonpool::chaos {
namespace internal {
namespace {

absl::StatusOr<driver::Address> ParseIp(absl::string_view ip) {
  // Address::Parse wants a port; a bracketed form for IPv6.
  const bool v6 = ip.find(':') != absl::string_view::npos;
  absl::StatusOr<driver::Address> a = driver::Address::Parse(
      v6 ? absl::StrCat("[", ip, "]:0") : absl::StrCat(ip, ":0"));
  if (!a.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an IP literal: \"", ip, "\""));
  }
  return a;
}

// The sites Declare'd up front, so that a fault that never happened shows as
// a hole in the coverage report.
constexpr absl::string_view kFaultPoints[] = {
    "fault.latency_tail", "fault.stall",         "fault.clog",
    "fault.reset",        "fault.half_close",    "fault.connect_refused",
    "fault.connect_hang", "fault.partial_write", "fault.short_read",
    "fault.bit_flip",     "fault.host_killed",   "fault.resolve_failed",
    "fault.resolve_slow",
};

// The TLS stream's seed is the run's seed with this salt (any fixed value
// other than the plan's, seed_runner.cc).
constexpr uint64_t kTlsRandomSalt = 0x7f4a7c159e3779b9ULL;

}  // namespace

SimCore::SimCore(SimLoop* owner, SimLoopOptions options)
    : owner_(owner),
      options_(std::move(options)),
      rng_(options_.seed),
      tls_rng_(options_.seed ^ kTlsRandomSalt),
      trace_(options_.trace),
      registry_scope_(&assertions_) {
  for (absl::string_view name : kFaultPoints) assertions_.Declare(name);
  // Every known site, so that one never fired is a hole in the report.
  // Declaring draws nothing: a site is decided when first evaluated.
  if (options_.buggify) {
    for (absl::string_view site : KnownBuggifySites()) {
      assertions_.Declare(BuggifyPointName(site));
    }
  }
  (void)owner_;
}

SimCore::~SimCore() = default;

void SimCore::Shutdown() {
  // Tasks first (their frames own timers and streams), host by host, then
  // the SimLoop's own scopes are destroyed by ~SimLoop's DestroyTasks.
  for (auto& h : hosts_) h->facade->DestroyHostTasks();
  shutting_down_ = true;
  {
    // Posted work is destroyed unrun; destroying it may destroy what it
    // captured (streams, timers), which still works here.
    std::vector<absl::AnyInvocable<void()>> dropped;
    dropped.swap(posted_);
    dropped.clear();
  }
  assert(live_objects == 0 &&
         "a Timer, Stream or Listener outlived its SimLoop; destroy them "
         "first");
  events_.clear();
  connections_.clear();
}

// ---------------------------------------------------------------- hosts

absl::StatusOr<SimHost*> SimCore::AddHost(absl::string_view ip) {
  absl::StatusOr<driver::Address> a = ParseIp(ip);
  if (!a.ok()) return a.status();
  if (host_by_ip_.contains(*a)) {
    return absl::AlreadyExistsError(absl::StrCat("host ", ip, " exists"));
  }
  auto h = std::make_unique<HostState>();
  h->id = static_cast<uint32_t>(hosts_.size());
  h->ip = *a;
  h->facade.reset(new SimHost(this, h.get()));
  SimHost* facade = h->facade.get();
  host_by_ip_[*a] = h.get();
  hosts_.push_back(std::move(h));
  return facade;
}

SimHost* SimCore::FindHost(absl::string_view ip) {
  absl::StatusOr<driver::Address> a = ParseIp(ip);
  if (!a.ok()) return nullptr;
  auto it = host_by_ip_.find(*a);
  return it == host_by_ip_.end() ? nullptr : it->second->facade.get();
}

absl::Status SimCore::RestartHost(absl::string_view ip) {
  SimHost* h = FindHost(ip);
  if (h == nullptr) return absl::NotFoundError(absl::StrCat("no host ", ip));
  HostState* s = hosts_[h->id()].get();
  s->up = true;
  TraceEvent(TraceKind::kHostRestarted, s->id);
  return absl::OkStatus();
}

// ---------------------------------------------------------------- time

int64_t SimCore::ToNs(absl::Time t) const {
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  const absl::Duration d = t - options_.start;
  if (d <= absl::ZeroDuration()) return 0;
  if (d >= absl::Hours(24 * 365 * 100)) {
    return std::numeric_limits<int64_t>::max();
  }
  // Round up: a timer never fires before its time.
  return absl::ToInt64Nanoseconds(absl::Ceil(d, absl::Nanoseconds(1)));
}

uint64_t SimCore::LoopRandom() {
  const uint64_t v = rng_.Next();
  TraceEvent(TraceKind::kRandom, v);
  return v;
}

void SimCore::FillTlsRandom(absl::Span<unsigned char> out) {
  // The driver asks for no bytes to learn whether this loop supplies them:
  // that draws nothing and leaves no record.
  if (out.empty()) return;
  size_t i = 0;
  while (i < out.size()) {
    uint64_t word = tls_rng_.Next();
    for (int b = 0; b < 8 && i < out.size(); ++b, ++i) {
      out[i] = static_cast<unsigned char>(word);
      word >>= 8;
    }
  }
  TraceEvent(TraceKind::kTlsRandom, out.size());
}

// ---------------------------------------------------------------- scheduling

EventKey SimCore::Schedule(int64_t t_ns, absl::AnyInvocable<void()> fn) {
  EventKey key{std::max(t_ns, now_ns_), next_seq_++};
  events_.emplace(key, std::move(fn));
  return key;
}

void SimCore::Cancel(const EventKey& key) { events_.erase(key); }

void SimCore::Post(absl::AnyInvocable<void()> fn) {
  if (shutting_down_) return;  // destroyed unrun on return
  posted_.push_back(std::move(fn));
}

void SimCore::ScheduleTurnEnd(driver::TurnEndHandler* handler) {
  turn_end_.push_back(handler);
}

void SimCore::CancelTurnEnd(driver::TurnEndHandler* handler) {
  for (driver::TurnEndHandler*& h : turn_end_) {
    if (h == handler) h = nullptr;
  }
  for (driver::TurnEndHandler*& h : turn_end_running_) {
    if (h == handler) h = nullptr;
  }
}

void SimCore::RunTurnEnd() {
  if (turn_end_.empty()) return;
  turn_end_running_.swap(turn_end_);
  uint64_t ran = 0;
  // Index, not iterator: a handler may cancel a later one.
  for (size_t i = 0; i < turn_end_running_.size(); ++i) {
    if (driver::TurnEndHandler* h = turn_end_running_[i]) {
      turn_end_running_[i] = nullptr;
      ++ran;
      h->OnTurnEnd();
    }
  }
  turn_end_running_.clear();
  TraceEvent(TraceKind::kTurnEnd, ran);
}

void SimCore::Turn() {
  Reap();  // what was closed outside the loop
  if (NothingReady()) {
    // Nothing to do now: time jumps to the next event.
    assert(!events_.empty());
    now_ns_ = std::max(now_ns_, events_.begin()->first.t_ns);
  }
  // (1) Events due now, except those scheduled from here on: a timer
  // re-armed for "now" by its own callback waits for the next turn. Events
  // scheduled during this phase are never earlier than now, so they sort
  // after every older event due now.
  const uint64_t snapshot = next_seq_;
  while (!events_.empty()) {
    auto it = events_.begin();
    if (it->first.t_ns > now_ns_ || it->first.seq >= snapshot) break;
    auto node = events_.extract(it);
    node.mapped()();
    Reap();
  }
  // (2) Work posted so far; what it posts waits for the next turn.
  if (!posted_.empty()) {
    draining_.swap(posted_);
    TraceEvent(TraceKind::kPostRun, draining_.size());
    for (absl::AnyInvocable<void()>& fn : draining_) {
      fn();
      Reap();
    }
    draining_.clear();
  }
  // (3) Turn ends.
  RunTurnEnd();
  Reap();
}

void SimCore::Run() {
  assert(!running_ && "Run/RunUntil called from inside the loop");
  running_ = true;
  while (!stop_requested_) {
    if (NothingReady() && events_.empty()) break;
    Turn();
  }
  running_ = false;
  stop_requested_ = false;
}

bool SimCore::RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  assert(!running_ && "Run/RunUntil called from inside the loop");
  bool result = done();
  if (result) return true;
  running_ = true;
  const int64_t deadline_ns = ToNs(deadline);
  while (!stop_requested_) {
    if (NothingReady() &&
        (events_.empty() || events_.begin()->first.t_ns > deadline_ns)) {
      // The next event lies beyond the deadline: time reaches the deadline
      // and stops there. With nothing scheduled and no deadline, nothing
      // can ever happen: return as Run would.
      if (deadline_ns != std::numeric_limits<int64_t>::max()) {
        now_ns_ = std::max(now_ns_, deadline_ns);
      }
      break;
    }
    Turn();
    result = done();
    if (result || now_ns_ >= deadline_ns) break;
  }
  running_ = false;
  stop_requested_ = false;
  return result;
}

void SimCore::Reap() {
  if (reap_.empty()) return;
  std::vector<uint64_t> ids;
  ids.swap(reap_);
  for (uint64_t id : ids) connections_.erase(id);
}

// ---------------------------------------------------------------- buggify

bool SimCore::Buggify(absl::string_view site) {
  if (!options_.buggify) return false;
  auto it = buggify_sites_.find(site);
  if (it == buggify_sites_.end()) {
    BuggifySite s;
    s.enabled = rng_.Bernoulli(options_.buggify_site_probability);
    // The site's FNV-1a hash: absl::Hash is salted per process, this is not.
    s.hash = 0xCBF29CE484222325ull;
    for (char ch : site) {
      s.hash = (s.hash ^ static_cast<uint8_t>(ch)) * 0x100000001B3ull;
    }
    s.point = BuggifyPointName(site);
    it = buggify_sites_.emplace(std::string(site), std::move(s)).first;
  }
  // A disabled site draws nothing more, but is still recorded as reached:
  // the report then tells a site never evaluated from one never enabled.
  const bool fire =
      it->second.enabled && rng_.Bernoulli(options_.buggify_fire_probability);
  TraceEvent(TraceKind::kBuggify, it->second.hash, fire);
  assertions_.RecordSometimes(it->second.point, fire);
  return fire;
}

// ---------------------------------------------------------------- checks

absl::Status SimCore::CheckInvariants() const {
  if (!violations_.empty()) {
    return absl::InternalError(absl::StrCat(
        violations_.size(), " stream integrity violation(s); first: ",
        violations_.front().ToString()));
  }
  if (assertions_.always_failures() > 0) {
    std::vector<std::string> failed = assertions_.AlwaysFailures();
    const auto& p = assertions_.points().at(failed.front());
    return absl::InternalError(absl::StrCat(
        assertions_.always_failures(), " Always assertion failure(s); first: ",
        failed.front(), ": ", p.first_failure));
  }
  return absl::OkStatus();
}

}  // namespace internal

std::string IntegrityViolation::ToString() const {
  return absl::StrCat("at ", absl::FormatTime(time, absl::UTCTimeZone()),
                      " connection ", connection, " direction ", direction,
                      ": ", what);
}

// ---------------------------------------------------------------- SimHost

SimHost::SimHost(internal::SimCore* core, internal::HostState* state)
    : core_(core), state_(state) {}
SimHost::~SimHost() { DestroyTasks(); }

const driver::Address& SimHost::address() const { return state_->ip; }
bool SimHost::up() const { return state_->up; }
uint32_t SimHost::id() const { return state_->id; }
absl::Time SimHost::Now() const { return core_->Now(); }
uint64_t SimHost::Random() { return core_->LoopRandom(); }
bool SimHost::FillTlsRandom(absl::Span<unsigned char> out) {
  core_->FillTlsRandom(out);
  return true;
}
absl::Time SimHost::WallTime() const { return core_->Now(); }
bool SimHost::Buggify(absl::string_view site) { return core_->Buggify(site); }
void SimHost::Always(bool held, absl::string_view name,
                     absl::string_view detail) {
  core_->Always(held, name, detail);
}
std::unique_ptr<driver::Timer> SimHost::CreateTimer(
    absl::AnyInvocable<void()> on_fire) {
  return core_->CreateTimer(state_, std::move(on_fire));
}
void SimHost::Post(absl::AnyInvocable<void()> fn) {
  core_->Post(std::move(fn));
}
void SimHost::ScheduleTurnEnd(driver::TurnEndHandler* handler) {
  core_->ScheduleTurnEnd(handler);
}
void SimHost::CancelTurnEnd(driver::TurnEndHandler* handler) {
  core_->CancelTurnEnd(handler);
}
absl::StatusOr<std::unique_ptr<driver::Listener>> SimHost::Listen(
    const driver::Address& address, const driver::ListenOptions& options,
    driver::AcceptCallback on_accept) {
  return core_->Listen(state_, address, options, std::move(on_accept));
}
absl::StatusOr<std::unique_ptr<driver::Stream>> SimHost::Connect(
    const driver::Address& address, driver::ConnectCallback on_connected) {
  return core_->Connect(state_, address, std::move(on_connected));
}
absl::StatusOr<std::unique_ptr<driver::Resolution>> SimHost::Resolve(
    absl::string_view host, uint16_t port, driver::ResolveCallback done) {
  return core_->Resolve(state_, host, port, std::move(done));
}
void SimHost::Run() { core_->Run(); }
bool SimHost::RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return core_->RunUntil(done, deadline);
}
void SimHost::Stop() { core_->Stop(); }

// ---------------------------------------------------------------- SimLoop

SimLoop::SimLoop(SimLoopOptions options)
    : core_(std::make_unique<internal::SimCore>(this, std::move(options))) {
  absl::StatusOr<SimHost*> h = core_->AddHost(core_->options().default_host);
  assert(h.ok() && "SimLoopOptions::default_host is not an IP literal");
  (void)h;
}

SimLoop::~SimLoop() {
  DestroyTasks();
  core_->Shutdown();
}

absl::StatusOr<SimHost*> SimLoop::AddHost(absl::string_view ip) {
  return core_->AddHost(ip);
}
SimHost* SimLoop::FindHost(absl::string_view ip) { return core_->FindHost(ip); }
SimHost& SimLoop::default_host() { return *core_->default_host()->facade; }
absl::Status SimLoop::KillHost(absl::string_view ip) {
  return core_->KillHost(ip);
}
absl::Status SimLoop::RestartHost(absl::string_view ip) {
  return core_->RestartHost(ip);
}
const ChaosConfig& SimLoop::chaos() const { return core_->options().chaos; }
void SimLoop::set_chaos(const ChaosConfig& config) { core_->chaos() = config; }
void SimLoop::TestOnlyPlantFault(PlantedFault fault) {
  core_->PlantFault(fault);
}
uint64_t SimLoop::seed() const { return core_->options().seed; }
const Trace& SimLoop::trace() const { return core_->trace(); }
void SimLoop::TraceUser(uint64_t a, uint64_t b, uint64_t c) {
  core_->TraceEvent(TraceKind::kUser, a, b, c);
}
AssertionRegistry& SimLoop::assertions() { return core_->assertions(); }
const std::vector<IntegrityViolation>& SimLoop::violations() const {
  return core_->violations();
}
absl::Status SimLoop::CheckInvariants() const {
  return core_->CheckInvariants();
}
uint64_t SimLoop::wire_hash() const { return core_->wire_hash(); }
size_t SimLoop::pending_events() const { return core_->pending_events(); }
size_t SimLoop::live_connections() const { return core_->live_connections(); }
SimRandom& SimLoop::random_source() { return core_->rng(); }

absl::Time SimLoop::Now() const { return core_->Now(); }
uint64_t SimLoop::Random() { return core_->LoopRandom(); }
bool SimLoop::FillTlsRandom(absl::Span<unsigned char> out) {
  core_->FillTlsRandom(out);
  return true;
}
absl::Time SimLoop::WallTime() const { return core_->Now(); }
bool SimLoop::Buggify(absl::string_view site) { return core_->Buggify(site); }
void SimLoop::Always(bool held, absl::string_view name,
                     absl::string_view detail) {
  core_->Always(held, name, detail);
}
std::unique_ptr<driver::Timer> SimLoop::CreateTimer(
    absl::AnyInvocable<void()> on_fire) {
  return core_->CreateTimer(core_->default_host(), std::move(on_fire));
}
void SimLoop::Post(absl::AnyInvocable<void()> fn) {
  core_->Post(std::move(fn));
}
void SimLoop::ScheduleTurnEnd(driver::TurnEndHandler* handler) {
  core_->ScheduleTurnEnd(handler);
}
void SimLoop::CancelTurnEnd(driver::TurnEndHandler* handler) {
  core_->CancelTurnEnd(handler);
}
absl::StatusOr<std::unique_ptr<driver::Listener>> SimLoop::Listen(
    const driver::Address& address, const driver::ListenOptions& options,
    driver::AcceptCallback on_accept) {
  return core_->Listen(core_->default_host(), address, options,
                       std::move(on_accept));
}
absl::StatusOr<std::unique_ptr<driver::Stream>> SimLoop::Connect(
    const driver::Address& address, driver::ConnectCallback on_connected) {
  return core_->Connect(core_->default_host(), address,
                        std::move(on_connected));
}
absl::StatusOr<std::unique_ptr<driver::Resolution>> SimLoop::Resolve(
    absl::string_view host, uint16_t port, driver::ResolveCallback done) {
  return core_->Resolve(core_->default_host(), host, port, std::move(done));
}
absl::Status SimLoop::SetHostName(absl::string_view name,
                                  std::vector<std::string> ips) {
  return core_->SetHostName(name, std::move(ips));
}
void SimLoop::Run() { core_->Run(); }
bool SimLoop::RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return core_->RunUntil(done, deadline);
}
void SimLoop::Stop() { core_->Stop(); }

}  // namespace moonpool::chaos
