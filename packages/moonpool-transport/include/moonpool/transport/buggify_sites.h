// The Buggify sites of moonpool-transport (Loop::Buggify; the model and the
// rules are in moonpool/protocol/buggify.h). Each forces a rare but legal
// path of the server; a simulation declares each as the coverage point
// "buggify.<site>".
#ifndef MOONPOOL_TRANSPORT_BUGGIFY_SITES_H_
#define MOONPOOL_TRANSPORT_BUGGIFY_SITES_H_

#include "absl/strings/string_view.h"

namespace moonpool::transport {
namespace buggify_sites {

// An accepted connection may have one request in flight at a time (its
// max_requests_in_flight_per_connection is 1): reading pauses after every
// request until it is answered.
inline constexpr absl::string_view kBoundOfOne = "transport.bound_of_one";
}  // namespace buggify_sites

inline constexpr absl::string_view kBuggifySites[] = {
    buggify_sites::kBoundOfOne,
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_BUGGIFY_SITES_H_
