// Buggify for the pure layers: the decision function a Connection (and any
// other Sans-I/O code) takes through its options, and the names of this
// layer's Buggify sites. After FoundationDB's BUGGIFY: a site is a place
// where the code may take a rare but legal path on purpose (a tiny receive
// buffer, a ping sent early) so that a simulation reaches it.
//
// What it is not: a source of randomness or of global state. The pure
// layers read no clock and draw no random number; whether a site fires is
// the environment's answer. The driver's Loop gives it
// (driver::Loop::Buggify: never in production's UvLoop, decided by the seed
// in the simulation), and the driver passes it down:
//
//   ConnectionOptions options;
//   options.buggify = driver::BuggifyFunction(loop);   // driver/loop.h
//
// An empty BuggifyFn never fires, so tests and production code that set
// nothing get the ordinary paths.
//
// Every site fires only where its path keeps the layer's contracts: code
// that uses the layer cannot tell a fired site from an unlucky network,
// except through the documented looseness of the call (e.g.
// Connection::PrepareReceive may offer less than asked).
//
// Declaring a site: add its name to the layer's list (kBuggifySites below
// for this layer; each layer above keeps its own list in its own header, in
// the same form) and evaluate it by that constant. A simulation declares
// every listed site as a coverage point up front (moonpool-chaos's
// buggify.h gathers the lists), so a site that never fired in a sweep shows
// as a hole in the coverage report instead of being silently absent.
#ifndef MOONPOOL_PROTOCOL_BUGGIFY_H_
#define MOONPOOL_PROTOCOL_BUGGIFY_H_

#include <functional>

#include "absl/strings/string_view.h"

namespace moonpool::protocol {

// Answers whether the site named `site` takes its rare path this time. May
// answer differently on each call. Empty: never. Copyable, so that options
// holding it can be copied for each new connection; whatever it refers to
// (a Loop) must outlive every copy.
using BuggifyFn = std::function<bool(absl::string_view site)>;

// True when `fn` is set and fires for `site`.
inline bool Buggify(const BuggifyFn& fn, absl::string_view site) {
  return fn && fn(site);
}

// The sites of moonpool-protocol. Names are "<layer>.<what>", stable: the
// coverage report and the sweep's --require-coverage name them.
namespace buggify_sites {

// Connection::PrepareReceive offers a 1-byte span, whatever was asked: the
// next frame arrives a byte at a time, its header split across reads.
inline constexpr absl::string_view kTinyReceiveBuffer =
    "protocol.tiny_receive_buffer";
// The keepalive ping is due after half the interval of silence instead of
// the whole: pings go out early (still only after silence, so a peer that
// is sending never sees extra pings, and the ping-flood bound is safe).
inline constexpr absl::string_view kEarlyPing = "protocol.early_ping";
// The output's storage is given back every time the output is empty before
// a frame is encoded (a retention threshold of 0), not only after large
// frames: every frame then lands in fresh storage.
inline constexpr absl::string_view kReleaseIdleOutput =
    "protocol.release_idle_output";
// Connection::NextWakeup answers halfway to what is due (down to a
// millisecond ahead): the driver wakes early, AdvanceTime finds nothing to
// do, and the driver arms its timer again.
inline constexpr absl::string_view kEarlyWakeup = "protocol.early_wakeup";

}  // namespace buggify_sites

// Every site above; a simulation declares each as "buggify.<site>".
inline constexpr absl::string_view kBuggifySites[] = {
    buggify_sites::kTinyReceiveBuffer,
    buggify_sites::kEarlyPing,
    buggify_sites::kReleaseIdleOutput,
    buggify_sites::kEarlyWakeup,
};

}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_BUGGIFY_H_
