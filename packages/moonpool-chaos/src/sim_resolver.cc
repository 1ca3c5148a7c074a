// SimLoop's resolver: a table of names (SimLoop::SetHostName) answered after
// a simulated round trip, with two faults of the plan (a failed lookup, a
// slow one). Like a timer, a lookup is an entry in the event queue: the
// handle removes it when destroyed, so its callback never runs after that,
// and a lookup of a killed host calls nothing back.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "moonpool/driver/host_port.h"
#include "sim_core.h"

namespace moonpool::chaos::internal {
namespace {

// FNV-1a, for the trace: absl::Hash is salted per process, this is not.
uint64_t NameHash(absl::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char ch : name) h = (h ^ static_cast<uint8_t>(ch)) * 0x100000001B3ull;
  return h;
}

class SimResolution final : public driver::Resolution {
 public:
  SimResolution(SimCore* core, HostState* host, uint64_t id,
                driver::ResolveCallback done)
      : core_(core),
        host_(host),
        incarnation_(host->incarnation),
        id_(id),
        done_(std::move(done)) {
    ++core_->live_objects;
  }
  ~SimResolution() override {
    if (key_.has_value()) core_->Cancel(*key_);
    --core_->live_objects;
  }

  // Answers at `t_ns`: with `failure` if it is set, else from the table.
  void Schedule(int64_t t_ns, std::string name, uint16_t port,
                std::optional<absl::Status> failure) {
    key_ = core_->Schedule(t_ns, [this, name = std::move(name), port,
                                  failure = std::move(failure)] {
      key_.reset();
      // A crashed process hears nothing more.
      if (host_->incarnation != incarnation_ || !done_) return;
      absl::StatusOr<std::vector<driver::Address>> result =
          failure.has_value()
              ? absl::StatusOr<std::vector<driver::Address>>(*failure)
              : core_->LookUp(*host_, name, port);
      core_->TraceEvent(TraceKind::kResolved, id_,
                        result.ok() ? result->size() : 0);
      driver::ResolveCallback done = std::move(done_);
      // May destroy this handle: nothing after it.
      done(std::move(result));
    });
  }

 private:
  SimCore* const core_;
  HostState* const host_;
  const uint64_t incarnation_;
  const uint64_t id_;
  driver::ResolveCallback done_;
  std::optional<EventKey> key_;
};

}  // namespace

int64_t SimCore::DrawResolveLatency() {
  // To the name server and back.
  return DrawLatency() + DrawLatency();
}

absl::Status SimCore::SetHostName(absl::string_view name,
                                  std::vector<std::string> ips) {
  absl::StatusOr<driver::HostPort> hp = driver::HostPort::FromParts(name, 0);
  if (!hp.ok()) return hp.status();
  if (hp->is_literal()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", name, "\" is an IP literal, not a name"));
  }
  std::vector<driver::Address> addresses;
  for (const std::string& ip : ips) {
    absl::StatusOr<driver::HostPort> a = driver::HostPort::FromParts(ip, 0);
    if (!a.ok() || !a->is_literal()) {
      return absl::InvalidArgumentError(
          absl::StrCat("not an IP literal: \"", ip, "\""));
    }
    addresses.push_back(*a->literal());
  }
  if (addresses.empty()) {
    names_.erase(hp->host());
  } else {
    names_[hp->host()] = std::move(addresses);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<driver::Address>> SimCore::LookUp(
    const HostState& host, const std::string& name, uint16_t port) const {
  std::vector<driver::Address> out;
  if (auto it = names_.find(name); it != names_.end()) {
    for (const driver::Address& a : it->second) out.push_back(a.WithPort(port));
  } else if (name == "localhost") {
    out.push_back(host.ip.WithPort(port));
  } else {
    return absl::NotFoundError(absl::StrCat(
        "resolving ", name, ": no such name (simulated resolver)"));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<driver::Resolution>> SimCore::Resolve(
    HostState* host, absl::string_view name, uint16_t port,
    driver::ResolveCallback done) {
  if (name.empty()) {
    return absl::InvalidArgumentError("resolving: empty host name");
  }
  absl::StatusOr<driver::HostPort> hp = driver::HostPort::FromParts(name, port);
  if (!hp.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resolving ", name, ": ", hp.status().message()));
  }
  if (!host->up) {
    return absl::UnavailableError(
        absl::StrCat("resolving ", name, ": host is down"));
  }
  const uint64_t id = next_resolution_id++;
  auto r = std::make_unique<SimResolution>(this, host, id, std::move(done));
  TraceEvent(TraceKind::kResolve, id, NameHash(hp->host()), host->id);
  if (hp->is_literal()) {
    // No lookup, no fault: the literal itself, on the next turn.
    r->Schedule(now_ns_, hp->host(), port, std::nullopt);
    return std::unique_ptr<driver::Resolution>(std::move(r));
  }
  const ChaosConfig& chaos = options_.chaos;
  std::optional<absl::Status> failure;
  int64_t delay = DrawResolveLatency();
  if (rng_.Bernoulli(chaos.resolve_failed_probability)) {
    TraceEvent(TraceKind::kFaultResolveFailed, id);
    assertions_.RecordSometimes("fault.resolve_failed", true);
    failure = absl::UnavailableError(
        absl::StrCat("resolving ", hp->host(),
                     ": the name server did not answer (simulated fault)"));
  } else if (rng_.Bernoulli(chaos.resolve_slow_probability)) {
    const absl::Duration slow =
        chaos.resolve_slow_max > chaos.resolve_slow_min
            ? rng_.UniformDuration(chaos.resolve_slow_min,
                                   chaos.resolve_slow_max)
            : chaos.resolve_slow_min;
    delay = absl::ToInt64Nanoseconds(slow);
    TraceEvent(TraceKind::kFaultResolveSlow, id, delay);
    assertions_.RecordSometimes("fault.resolve_slow", true);
  }
  r->Schedule(now_ns_ + delay, hp->host(), port, std::move(failure));
  return std::unique_ptr<driver::Resolution>(std::move(r));
}

}  // namespace moonpool::chaos::internal
