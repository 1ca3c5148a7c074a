#include "moonpool/driver/loop.h"

#include "moonpool/driver/task_scope.h"

namespace moonpool::driver {

// A Loop implementation calls DestroyTasks() first thing in its own
// destructor, while the timers and streams its tasks own can still be closed.
// By the time this runs that list is empty; if an implementation forgot, this
// is the last chance to keep frames from outliving the loop.
Loop::~Loop() { DestroyTasks(); }

protocol::BuggifyFn BuggifyFunction(Loop& loop) {
  return [&loop](absl::string_view site) { return loop.Buggify(site); };
}

protocol::AlwaysFn AlwaysFunction(Loop& loop) {
  return [&loop](bool held, absl::string_view name, absl::string_view detail) {
    loop.Always(held, name, detail);
  };
}

void Loop::DestroyTasks() {
  // Detach before clearing: destroying a task may create or destroy other
  // scopes (a task can own one), which edits this list; taking the head
  // afresh each time keeps the walk valid whatever they do.
  while (scopes_ != nullptr) {
    TaskScope* scope = scopes_;
    scope->DetachFromLoop();
    scope->Clear();
  }
}

}  // namespace moonpool::driver
