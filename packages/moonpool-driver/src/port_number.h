// The port part of "HOST:PORT", parsed the one way both Address::Parse and
// HostPort::Parse accept it. Private to the driver's sources.
#ifndef MOONPOOL_DRIVER_SRC_PORT_NUMBER_H_
#define MOONPOOL_DRIVER_SRC_PORT_NUMBER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moonpool::driver::internal {

// Digits only, 0..65535. Leading zeros are accepted ("080" is 80), signs and
// spaces are not. InvalidArgument "bad <what> \"<input>\": <why>" otherwise.
absl::StatusOr<uint16_t> ParsePortNumber(absl::string_view what,
                                         absl::string_view input,
                                         absl::string_view port);

}  // namespace moonpool::driver::internal

#endif  // MOONPOOL_DRIVER_SRC_PORT_NUMBER_H_
