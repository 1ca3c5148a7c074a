// Address is a TCP endpoint: an IPv4 or IPv6 address and a port, as a value.
//
// It holds numbers only, never a host name: it is what a lookup yields and
// what a socket is given. Names live in HostPort (host_port.h), which the
// Loop resolves (Loop::Resolve: getaddrinfo on libuv's thread pool in
// UvLoop, a seeded simulated resolver in SimLoop, so simulation stays
// deterministic) into Addresses. Parse accepts "1.2.3.4:80", "[::1]:80" and,
// as the one convenience, "localhost:80" (127.0.0.1, without a lookup;
// HostPort::Parse resolves "localhost" instead), and says exactly what is
// wrong with anything else.
//
// Example:
//
//   absl::StatusOr<moonpool::driver::Address> a =
//       moonpool::driver::Address::Parse("[::1]:4500");
//   if (!a.ok()) return a.status();   // InvalidArgument, with the reason
//   std::string s = a->ToString();     // "[::1]:4500"
#ifndef MOONPOOL_DRIVER_ADDRESS_H_
#define MOONPOOL_DRIVER_ADDRESS_H_

#include <array>
#include <compare>
#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moonpool::driver {

class Address {
 public:
  enum class Family : uint8_t { kIpv4, kIpv6 };

  // 0.0.0.0:0.
  Address() = default;

  // "HOST:PORT" with HOST an IPv4 literal, a bracketed IPv6 literal or
  // "localhost", and PORT in 0..65535. InvalidArgument otherwise.
  [[nodiscard]] static absl::StatusOr<Address> Parse(
      absl::string_view host_port);
  static Address Ipv4(std::array<uint8_t, 4> bytes, uint16_t port);
  static Address Ipv6(std::array<uint8_t, 16> bytes, uint16_t port);
  // 127.0.0.1:port.
  static Address Loopback(uint16_t port) { return Ipv4({127, 0, 0, 1}, port); }

  Family family() const { return family_; }
  uint16_t port() const { return port_; }
  // 4 bytes for IPv4 (the rest zero), 16 for IPv6, network order.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  Address WithPort(uint16_t port) const {
    Address a = *this;
    a.port_ = port;
    return a;
  }

  // "1.2.3.4:80" or "[::1]:80": what Parse reads back.
  std::string ToString() const;
  // The host part alone: "1.2.3.4" or "::1".
  std::string HostString() const;

  friend auto operator<=>(const Address&, const Address&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Address& a) {
    return H::combine(std::move(h), a.family_, a.bytes_, a.port_);
  }
  friend std::ostream& operator<<(std::ostream& os, const Address& a) {
    return os << a.ToString();
  }

 private:
  Family family_ = Family::kIpv4;
  std::array<uint8_t, 16> bytes_{};
  uint16_t port_ = 0;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_ADDRESS_H_
