// Endpoint names a destination at the receiver: the token an envelope carries
// to say which handler or queue it is for. kDefaultEndpoint (0) is the
// server's default queue.
//
// An endpoint is a strong type over a 64-bit integer so that it cannot be
// confused with a correlation id, a connection id or a byte count, and so that
// a call like Send(address, payload, endpoint) cannot silently take a number
// meant for another parameter. What a token means is up to the application:
// moonpool only carries it (on the wire it is a plain UInt64) and hands it to
// the receiver. It is not an address: it names nothing about where the
// receiver is (that is moonpool-driver's Address).
//
// Example:
//
//   constexpr moonpool::Endpoint kKeyValue(7);
//   moonpool::Envelope request = moonpool::Envelope::Request(
//       ids.Next(), kKeyValue, "get k", absl::Seconds(2));
//   assert(request.endpoint == kKeyValue);
//   assert(moonpool::Endpoint() == moonpool::kDefaultEndpoint);
#ifndef MOONPOOL_ENVELOPE_ENDPOINT_H_
#define MOONPOOL_ENVELOPE_ENDPOINT_H_

#include <compare>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace moonpool {

class Endpoint {
 public:
  // The default endpoint: the server's default queue.
  constexpr Endpoint() = default;
  constexpr explicit Endpoint(uint64_t value) : value_(value) {}

  // The token as it travels on the wire.
  constexpr uint64_t value() const { return value_; }

  friend constexpr auto operator<=>(Endpoint, Endpoint) = default;

  template <typename H>
  friend H AbslHashValue(H h, Endpoint endpoint) {
    return H::combine(std::move(h), endpoint.value_);
  }
  // "endpoint <value>", for messages and logs. Not load bearing: do not parse
  // it.
  std::string ToString() const { return absl::StrCat("endpoint ", value_); }
  friend std::ostream& operator<<(std::ostream& os, Endpoint endpoint) {
    return os << "endpoint " << endpoint.value_;
  }

 private:
  uint64_t value_ = 0;
};

// The default destination: the server's default message queue.
inline constexpr Endpoint kDefaultEndpoint{};

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_ENDPOINT_H_
