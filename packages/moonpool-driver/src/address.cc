// Address parsing and printing. Literals only: inet_pton and inet_ntop from
// the C library do the address syntax (strict dotted quad, RFC 4291 IPv6 text
// forms); this file adds the HOST:PORT framing around them and an error
// message for every way that framing can be wrong. No uv.h here: Address is
// also used by the simulated loop.
#include "moonpool/driver/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "port_number.h"

namespace moonpool::driver {
namespace {

absl::Status Invalid(absl::string_view input, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad address \"", input, "\": ", why));
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view input,
                                   absl::string_view port) {
  return internal::ParsePortNumber("address", input, port);
}

// True when `host` can only have been meant as a dotted IPv4 literal, so the
// error can say "not a valid IPv4 address" rather than "names are not
// resolved".
bool LooksNumeric(absl::string_view host) {
  for (char c : host) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<Address> Address::Parse(absl::string_view host_port) {
  const absl::string_view input = host_port;
  if (input.empty()) return Invalid(input, "empty (expected HOST:PORT)");

  if (input.front() == '[') {
    const size_t close = input.find(']');
    if (close == absl::string_view::npos) {
      return Invalid(input, "missing ']' after the IPv6 address");
    }
    const absl::string_view host = input.substr(1, close - 1);
    const absl::string_view rest = input.substr(close + 1);
    if (rest.empty()) {
      return Invalid(input, "missing port (expected [IPV6]:PORT)");
    }
    if (rest.front() != ':') {
      return Invalid(input, "expected ':' and a port after ']'");
    }
    if (host.empty()) return Invalid(input, "empty IPv6 address in brackets");
    std::string host_z(host);  // inet_pton wants a terminated string
    std::array<uint8_t, 16> bytes{};
    if (inet_pton(AF_INET6, host_z.c_str(), bytes.data()) != 1) {
      in_addr v4;
      if (inet_pton(AF_INET, host_z.c_str(), &v4) == 1) {
        return Invalid(input,
                       "brackets are for IPv6 only; write IPv4 as 1.2.3.4:80");
      }
      if (absl::StrContains(host, '%')) {
        return Invalid(input, "IPv6 zone ids (%...) are not supported");
      }
      return Invalid(
          input, absl::StrCat("\"", host, "\" is not a valid IPv6 address"));
    }
    absl::StatusOr<uint16_t> port = ParsePort(input, rest.substr(1));
    if (!port.ok()) return port.status();
    return Ipv6(bytes, *port);
  }

  const size_t colon = input.rfind(':');
  if (colon == absl::string_view::npos) {
    return Invalid(input, "missing port (expected HOST:PORT)");
  }
  if (input.find(':') != colon) {
    return Invalid(input,
                   "an IPv6 address with a port must be in brackets, as in "
                   "[::1]:80");
  }
  const absl::string_view host = input.substr(0, colon);
  if (host.empty()) return Invalid(input, "missing host before ':'");
  absl::StatusOr<uint16_t> port = ParsePort(input, input.substr(colon + 1));
  if (!port.ok()) return port.status();

  if (absl::EqualsIgnoreCase(host, "localhost")) return Loopback(*port);
  std::string host_z(host);
  std::array<uint8_t, 4> bytes{};
  if (inet_pton(AF_INET, host_z.c_str(), bytes.data()) == 1) {
    return Ipv4(bytes, *port);
  }
  if (LooksNumeric(host)) {
    return Invalid(input, absl::StrCat("\"", host,
                                       "\" is not a valid IPv4 address "
                                       "(expected four numbers 0..255)"));
  }
  return Invalid(input, absl::StrCat("\"", host,
                                     "\" is a host name, not an address; "
                                     "use HostPort::Parse for names"));
}

Address Address::Ipv4(std::array<uint8_t, 4> bytes, uint16_t port) {
  Address a;
  a.family_ = Family::kIpv4;
  std::memcpy(a.bytes_.data(), bytes.data(), bytes.size());
  a.port_ = port;
  return a;
}

Address Address::Ipv6(std::array<uint8_t, 16> bytes, uint16_t port) {
  Address a;
  a.family_ = Family::kIpv6;
  a.bytes_ = bytes;
  a.port_ = port;
  return a;
}

std::string Address::HostString() const {
  char text[INET6_ADDRSTRLEN] = {};
  const int af = family_ == Family::kIpv4 ? AF_INET : AF_INET6;
  // Cannot fail: the family is valid and the buffer is the largest size.
  inet_ntop(af, bytes_.data(), text, sizeof(text));
  return text;
}

std::string Address::ToString() const {
  if (family_ == Family::kIpv4) return absl::StrCat(HostString(), ":", port_);
  return absl::StrCat("[", HostString(), "]:", port_);
}

namespace internal {

absl::StatusOr<uint16_t> ParsePortNumber(absl::string_view what,
                                         absl::string_view input,
                                         absl::string_view port) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad ", what, " \"", input, "\": ", why));
  };
  if (port.empty()) {
    return invalid("missing port after ':' (expected HOST:PORT)");
  }
  uint32_t value = 0;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return invalid(
          absl::StrCat("port \"", port, "\" is not a decimal number"));
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) {
      return invalid(absl::StrCat("port ", port, " is out of range 0..65535"));
    }
  }
  return static_cast<uint16_t>(value);
}

}  // namespace internal

}  // namespace moonpool::driver
