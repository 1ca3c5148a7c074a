#include "moonpool/wire/endpoint_token.h"

#include <xxhash.h>

namespace moonpool::wire {

Endpoint EndpointToken(absl::string_view name) {
  return Endpoint(XXH3_64bits(name.data(), name.size()));
}

}  // namespace moonpool::wire
