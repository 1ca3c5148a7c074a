// The Buggify sites of moonpool-driver (Loop::Buggify; the model and the
// rules are in moonpool/protocol/buggify.h). Each forces a rare but legal
// path of the connection driver or the Peer; a simulation declares each as
// the coverage point "buggify.<site>", so one that never fires in a sweep
// shows as a hole.
#ifndef MOONPOOL_DRIVER_BUGGIFY_SITES_H_
#define MOONPOOL_DRIVER_BUGGIFY_SITES_H_

#include "absl/strings/string_view.h"

namespace moonpool::driver {
namespace buggify_sites {

// The end-of-turn write waits one more turn: commands of two turns go out
// in one write, and a reply waits a turn longer than it needs to.
inline constexpr absl::string_view kFlushNextTurn = "driver.flush_next_turn";
// The first slice handed to the stream is one byte: a frame's header is
// split across two writes (and two reads at the peer).
inline constexpr absl::string_view kSplitWrite = "driver.split_write";
// A connection's output goes to the stream in slices of 64 bytes (its
// stream_high_water_bytes), for the whole connection.
inline constexpr absl::string_view kSmallSlices = "driver.small_slices";
// A reconnect waits the longest backoff (BackoffOptions::max), whatever the
// attempt count.
inline constexpr absl::string_view kLongestBackoff = "driver.longest_backoff";
// A request that could go straight onto the open connection is queued
// instead, and sent from the Peer's next turn.
inline constexpr absl::string_view kQueueFirst = "driver.queue_first";

}  // namespace buggify_sites

inline constexpr absl::string_view kBuggifySites[] = {
    buggify_sites::kFlushNextTurn, buggify_sites::kSplitWrite,
    buggify_sites::kSmallSlices,   buggify_sites::kLongestBackoff,
    buggify_sites::kQueueFirst,
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_BUGGIFY_SITES_H_
