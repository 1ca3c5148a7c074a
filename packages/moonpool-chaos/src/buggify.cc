#include "moonpool/chaos/buggify.h"

namespace moonpool::chaos {
namespace {

thread_local internal::BuggifyHook* current_hook = nullptr;

}  // namespace

bool Buggify(absl::string_view site, double fire_probability) {
  if (current_hook == nullptr) return false;
  return current_hook->Decide(site, fire_probability);
}

bool BuggifyEnabled() { return current_hook != nullptr; }

namespace internal {

ScopedBuggifyHook::ScopedBuggifyHook(BuggifyHook* hook)
    : previous_(current_hook) {
  current_hook = hook;
}

ScopedBuggifyHook::~ScopedBuggifyHook() { current_hook = previous_; }

}  // namespace internal
}  // namespace moonpool::chaos
