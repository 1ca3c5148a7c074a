// Buggify in the simulation: the list of every Buggify site the layers
// below declare, so that a SimLoop can declare each as a coverage point
// before the run (a site that never fired then shows as a hole in the
// coverage report, the way a fault kind that never happened does).
//
// What it is not: the decision. Code asks its Loop (driver::Loop::Buggify
// in driver/loop.h), and the pure layers get that decision through their
// options (protocol::BuggifyFn in protocol/buggify.h); nothing here is
// global or per thread. SimLoop answers from its seed when
// SimLoopOptions::buggify is on:
//   - the first time a site is asked in a run, it is enabled for the whole
//     run with probability SimLoopOptions::buggify_site_probability, so one
//     seed exercises a few sites hard rather than all of them a little;
//   - an enabled site then fires with buggify_fire_probability on each
//     evaluation;
//   - every evaluation is traced (TraceKind::kBuggify) and recorded as the
//     Sometimes point "buggify.<site>", held when it fired.
// The draws come from the simulation's one random source, so the same seed
// decides the same way every time, and adding a site changes the run a seed
// produces (as any new random draw does).
//
// Adding a site: name it in its layer's list (protocol::kBuggifySites is
// the model: a constant per site and an `inline constexpr
// absl::string_view kBuggifySites[]` in a header of that layer) and
// evaluate it through the Loop. A layer's first list is added to
// KnownBuggifySites in buggify.cc, one line.
#ifndef MOONPOOL_CHAOS_BUGGIFY_H_
#define MOONPOOL_CHAOS_BUGGIFY_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace moonpool::chaos {

// Every site of every layer's list, in layer order (protocol, driver,
// transport), each once.
std::vector<absl::string_view> KnownBuggifySites();

// The coverage point of `site`: "buggify.<site>".
std::string BuggifyPointName(absl::string_view site);

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_BUGGIFY_H_
