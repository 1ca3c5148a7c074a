#include "moonpool/chaos/sometimes.h"

#include "absl/strings/str_format.h"

namespace moonpool::chaos {
namespace {

// Per thread: one simulation runs per thread, and runners may run several
// threads of seeds at once.
thread_local AssertionRegistry* current_registry = nullptr;

}  // namespace

void AssertionRegistry::Point::Add(const Point& other) {
  is_always = is_always || other.is_always;
  reached += other.reached;
  held += other.held;
  if (first_failure.empty()) first_failure = other.first_failure;
}

void AssertionRegistry::Declare(absl::string_view name) {
  points_.try_emplace(std::string(name));
}

void AssertionRegistry::RecordSometimes(absl::string_view name, bool held) {
  Point& p = points_[std::string(name)];
  ++p.reached;
  if (held) ++p.held;
}

void AssertionRegistry::RecordAlways(absl::string_view name, bool held,
                                     absl::string_view detail) {
  Point& p = points_[std::string(name)];
  p.is_always = true;
  ++p.reached;
  if (held) {
    ++p.held;
    return;
  }
  ++always_failures_;
  if (p.first_failure.empty()) {
    p.first_failure =
        detail.empty() ? std::string("failed") : std::string(detail);
  }
}

void AssertionRegistry::Merge(const AssertionRegistry& other) {
  for (const auto& [name, q] : other.points_) points_[name].Add(q);
  always_failures_ += other.always_failures_;
}

std::vector<std::string> AssertionRegistry::NeverHeld() const {
  std::vector<std::string> out;
  for (const auto& [name, p] : points_) {
    if (!p.is_always && p.held == 0) out.push_back(name);
  }
  return out;
}

std::vector<std::string> AssertionRegistry::AlwaysFailures() const {
  std::vector<std::string> out;
  for (const auto& [name, p] : points_) {
    if (p.is_always && p.held < p.reached) out.push_back(name);
  }
  return out;
}

std::string AssertionRegistry::CoverageReport() const {
  std::string out;
  for (const auto& [name, p] : points_) {
    const char* mark = "";
    if (p.is_always && p.held < p.reached) {
      mark = "  FAILED";
    } else if (!p.is_always && p.held == 0) {
      mark = "  NEVER";
    }
    absl::StrAppendFormat(&out, "%10d/%-10d %-9s %s%s\n", p.held, p.reached,
                          p.is_always ? "always" : "sometimes", name, mark);
  }
  return out;
}

AssertionRegistry* CurrentAssertionRegistry() { return current_registry; }

ScopedAssertionRegistry::ScopedAssertionRegistry(AssertionRegistry* registry)
    : previous_(current_registry) {
  current_registry = registry;
}

ScopedAssertionRegistry::~ScopedAssertionRegistry() {
  current_registry = previous_;
}

bool Sometimes(bool cond, absl::string_view name) {
  if (current_registry != nullptr)
    current_registry->RecordSometimes(name, cond);
  return cond;
}

bool Always(bool cond, absl::string_view name, absl::string_view detail) {
  if (current_registry != nullptr) {
    current_registry->RecordAlways(name, cond, detail);
  }
  return cond;
}

}  // namespace moonpool::chaos
