// Buggify marks a place where code may take a rare, legal path on purpose
// (a smaller buffer, an extra delay, an early retry) so that simulation
// reaches it, after FoundationDB's BUGGIFY.
//
//   if (Buggify("server.tiny_read_buffer")) read_size = 1;
//
// Outside a simulation it is always false and costs a thread-local load.
// Inside one whose SimLoopOptions::buggify is on, each site is first decided
// enabled or not for the whole run (with probability 1/4, from the seed), and
// an enabled site then fires with `fire_probability` each time it is
// evaluated. So one seed exercises a few sites hard rather than all of them
// a little, and the same seed decides the same way every time. Every
// evaluation of an enabled site records a Sometimes point "buggify.<site>"
// (held when it fired), so the coverage report shows which sites fired.
//
// The decision comes from the simulation's one random source, so adding a
// Buggify call changes the run a seed produces (as any new random draw does).
#ifndef MOONPOOL_CHAOS_BUGGIFY_H_
#define MOONPOOL_CHAOS_BUGGIFY_H_

#include "absl/strings/string_view.h"

namespace moonpool::chaos {

bool Buggify(absl::string_view site, double fire_probability = 0.25);

// True inside a simulation with buggify on (on this thread).
bool BuggifyEnabled();

namespace internal {

// What a simulation installs for Buggify on its thread.
class BuggifyHook {
 public:
  virtual bool Decide(absl::string_view site, double fire_probability) = 0;

 protected:
  ~BuggifyHook() = default;
};

// Installs `hook` for this thread and restores the previous one on
// destruction.
class ScopedBuggifyHook {
 public:
  explicit ScopedBuggifyHook(BuggifyHook* hook);
  ScopedBuggifyHook(const ScopedBuggifyHook&) = delete;
  ScopedBuggifyHook& operator=(const ScopedBuggifyHook&) = delete;
  ~ScopedBuggifyHook();

 private:
  BuggifyHook* previous_;
};

}  // namespace internal
}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_BUGGIFY_H_
