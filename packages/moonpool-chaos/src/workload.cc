#include "moonpool/chaos/workload.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "workloads/ping_pong_workload.h"
#include "workloads/stream_workload.h"

namespace moonpool::chaos {

WorkloadRegistry& WorkloadRegistry::Global() {
  // Built-ins are registered here rather than by static initialisers, which
  // a static library may drop.
  static WorkloadRegistry* registry = [] {
    auto* r = new WorkloadRegistry();
    r->Register<PingPongWorkload>("pingpong");
    r->Register<StreamWorkload>("stream");
    return r;
  }();
  return *registry;
}

bool WorkloadRegistry::RegisterFactory(std::string name,
                                       WorkloadFactory factory) {
  if (Contains(name)) return false;
  factories_.emplace_back(std::move(name), std::move(factory));
  return true;
}

absl::StatusOr<std::unique_ptr<Workload>> WorkloadRegistry::Make(
    absl::string_view name, const WorkloadOptions& options) const {
  for (const auto& [n, f] : factories_) {
    if (n != name) continue;
    std::unique_ptr<Workload> w = f(options);
    if (w == nullptr) {
      return absl::InternalError(
          absl::StrCat("the factory of workload '", name, "' returned null"));
    }
    return w;
  }
  return absl::NotFoundError(absl::StrCat(
      "no workload '", name, "'; known: ", absl::StrJoin(Names(), ", ")));
}

std::vector<std::string> WorkloadRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, f] : factories_) names.push_back(n);
  return names;
}

bool WorkloadRegistry::Contains(absl::string_view name) const {
  for (const auto& [n, f] : factories_) {
    if (n == name) return true;
  }
  return false;
}

}  // namespace moonpool::chaos
