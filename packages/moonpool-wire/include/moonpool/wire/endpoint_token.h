// The token of a named endpoint (DESIGN.md section 5, "Named endpoints"): a
// method named "Service/Method" travels as XXH3_64bits(name) with seed 0 in
// the envelope's `endpoint` field, so any client, in any language, computes
// it from the name alone. Token 0 is the server's default queue: a name that
// hashes to 0 cannot be served (the transport refuses to register it).
//
// What it is not: a check of the name's syntax (the transport's Method does
// that where a method is declared and registered), or a registry.
#ifndef MOONPOOL_WIRE_ENDPOINT_TOKEN_H_
#define MOONPOOL_WIRE_ENDPOINT_TOKEN_H_

#include "absl/strings/string_view.h"
#include "moonpool/envelope/endpoint.h"

namespace moonpool::wire {

// XXH3_64bits(name), seed 0, as an Endpoint.
Endpoint EndpointToken(absl::string_view name);

}  // namespace moonpool::wire

#endif  // MOONPOOL_WIRE_ENDPOINT_TOKEN_H_
