// Always for the pure layers: how a Connection reports an invariant it
// checks at run time (after FoundationDB's and Antithesis's Always), without
// depending on whoever records it.
//
// What it is not: an assert. A false Always changes nothing in the
// connection's behaviour (the code that follows it handles the case, e.g. by
// closing the connection with a Status); it is recorded where a recorder is
// installed, so a simulation fails the run that broke it. The driver passes
// its Loop's recorder down (driver::AlwaysFunction(loop)): the simulated loop
// records into its assertion registry, UvLoop does nothing. An empty AlwaysFn
// records nothing.
//
// Names are "<layer>.<what>", stable, listed below, like Buggify sites.
#ifndef MOONPOOL_PROTOCOL_ALWAYS_H_
#define MOONPOOL_PROTOCOL_ALWAYS_H_

#include <functional>

#include "absl/strings/string_view.h"

namespace moonpool::protocol {

// Records that the invariant `name` held (or not) this time; `detail` says
// what was seen when it did not. Copyable, like BuggifyFn; whatever it
// refers to must outlive every copy.
using AlwaysFn = std::function<void(bool held, absl::string_view name,
                                    absl::string_view detail)>;

// Reports `held` for `name` through `fn` (if set); returns `held`.
inline bool Always(const AlwaysFn& fn, bool held, absl::string_view name,
                   absl::string_view detail = {}) {
  if (fn) fn(held, name, detail);
  return held;
}

namespace always_points {

// A reply stream's sender never gets more than the credit ahead: each item
// is sent, and arrives, while the payload bytes sent (received) minus the
// bytes granted back are below the stream's credit (DESIGN.md section 5).
// Checked by both ends, at every item.
inline constexpr absl::string_view kStreamWithinCredit =
    "protocol.stream_within_credit";

}  // namespace always_points
}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_ALWAYS_H_
