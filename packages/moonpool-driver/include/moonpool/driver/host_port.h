// HostPort names a TCP server the way people write it: a host, which is a
// DNS name ("db1.example") or an IP literal, and a port. It is a value; it
// resolves nothing by itself. The Loop resolves a name (Loop::Resolve:
// libuv's getaddrinfo in UvLoop, a simulated resolver in SimLoop), and a Peer
// does so again on every connect attempt, so a name that moves is followed.
// A literal needs no lookup and is used as it is.
//
// What it is not: an Address (that is one resolved endpoint, numbers only),
// a URL (no scheme, no path), or a cache of lookups.
//
// Every Address converts to a HostPort implicitly, so an API that takes a
// `const HostPort&` accepts the Address callers already have.
//
// Example:
//
//   absl::StatusOr<HostPort> h = HostPort::Parse("db1.example:4500");
//   if (!h.ok()) return h.status();         // InvalidArgument, with the reason
//   h->host();                              // "db1.example"
//   h->is_literal();                        // false: resolved when used
//   HostPort l = Address::Loopback(80);     // "127.0.0.1:80", a literal
#ifndef MOONPOOL_DRIVER_HOST_PORT_H_
#define MOONPOOL_DRIVER_HOST_PORT_H_

#include <compare>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/address.h"

namespace moonpool::driver {

class HostPort {
 public:
  // 0.0.0.0:0, as Address() is.
  HostPort() : HostPort(Address()) {}
  // The literal `address`. Implicit on purpose: see the file comment.
  HostPort(const Address& address);  // NOLINT(google-explicit-constructor)

  // "NAME:PORT", "1.2.3.4:PORT" or "[IPV6]:PORT", PORT in 0..65535. A NAME
  // is letters, digits, '-' and '_' in dot-separated labels of 1 to 63
  // characters, 253 at most in all (one trailing dot allowed); it is kept in
  // lower case (DNS names are case-insensitive). "localhost" is a name like
  // any other: it resolves through the system's resolver (/etc/hosts), which
  // may answer ::1 as well as 127.0.0.1. InvalidArgument, saying what is
  // wrong, for anything else.
  [[nodiscard]] static absl::StatusOr<HostPort> Parse(
      absl::string_view host_port);
  // The same from the two parts: `host` is a name or an IP literal (IPv6
  // without brackets).
  [[nodiscard]] static absl::StatusOr<HostPort> FromParts(
      absl::string_view host, uint16_t port);

  // The name in lower case, or the literal's canonical text ("::1", no
  // brackets).
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  // True for an IP literal: then literal() is the address, and nothing is
  // looked up.
  bool is_literal() const { return literal_.has_value(); }
  const std::optional<Address>& literal() const { return literal_; }

  // "db1.example:4500", "1.2.3.4:80" or "[::1]:80": what Parse reads back.
  std::string ToString() const;

  friend bool operator==(const HostPort& a, const HostPort& b) {
    return a.port_ == b.port_ && a.host_ == b.host_;
  }
  friend std::strong_ordering operator<=>(const HostPort& a,
                                          const HostPort& b) {
    if (auto c = a.host_.compare(b.host_); c != 0) {
      return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
    }
    return a.port_ <=> b.port_;
  }
  template <typename H>
  friend H AbslHashValue(H h, const HostPort& hp) {
    return H::combine(std::move(h), hp.host_, hp.port_);
  }
  friend std::ostream& operator<<(std::ostream& os, const HostPort& hp) {
    return os << hp.ToString();
  }

 private:
  HostPort(std::string host, uint16_t port, std::optional<Address> literal)
      : host_(std::move(host)), port_(port), literal_(literal) {}

  // Canonical: two HostPorts naming the same thing compare equal (the
  // literal is derived from host_ and port_, so it is not compared).
  std::string host_;
  uint16_t port_ = 0;
  std::optional<Address> literal_;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_HOST_PORT_H_
