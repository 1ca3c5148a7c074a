#include "moonpool/chaos/workload.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "workloads/ping_pong_workload.h"

namespace moonpool::chaos {

WorkloadRegistry& WorkloadRegistry::Global() {
  // Built-ins are registered here rather than by static initialisers, which
  // a static library may drop.
  static WorkloadRegistry* registry = [] {
    auto* r = new WorkloadRegistry();
    r->Register("pingpong", [](const WorkloadOptions& o) {
      return std::unique_ptr<Workload>(std::make_unique<PingPongWorkload>(o));
    });
    return r;
  }();
  return *registry;
}

bool WorkloadRegistry::Register(std::string name, WorkloadFactory factory) {
  for (const auto& [n, f] : factories_) {
    if (n == name) return false;
  }
  factories_.emplace_back(std::move(name), std::move(factory));
  return true;
}

absl::StatusOr<std::unique_ptr<Workload>> WorkloadRegistry::Make(
    absl::string_view name, const WorkloadOptions& options) const {
  for (const auto& [n, f] : factories_) {
    if (n == name) return f(options);
  }
  return absl::NotFoundError(absl::StrCat(
      "no workload '", name, "'; known: ", absl::StrJoin(Names(), ", ")));
}

std::vector<std::string> WorkloadRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, f] : factories_) names.push_back(n);
  return names;
}

}  // namespace moonpool::chaos
