// HostPort parsing. Literals go through Address::Parse (so the literal
// syntax and its error messages are Address's); this file adds host names:
// their syntax (RFC 1123 labels, plus '_' which real zones use) and the
// HOST:PORT framing around them.
#include "moonpool/driver/host_port.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "port_number.h"

namespace moonpool::driver {
namespace {

absl::Status Invalid(absl::string_view input, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad host:port \"", input, "\": ", why));
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view input,
                                   absl::string_view port) {
  return internal::ParsePortNumber("host:port", input, port);
}

// Why `host` is not a host name, or empty if it is one.
std::string NameError(absl::string_view host) {
  if (host.empty()) return "empty host name";
  if (host.size() > 254 || (host.size() == 254 && host.back() != '.')) {
    return "host name longer than 253 characters";
  }
  absl::string_view rest = host;
  if (rest.back() == '.') rest.remove_suffix(1);  // a rooted name
  size_t label = 0;
  for (size_t i = 0; i <= rest.size(); ++i) {
    if (i == rest.size() || rest[i] == '.') {
      if (label == 0) return "empty label in host name (\"..\" or a leading .)";
      if (label > 63) return "host name label longer than 63 characters";
      if (rest[i - 1] == '-' || rest[i - label] == '-') {
        return "host name label starts or ends with '-'";
      }
      label = 0;
      continue;
    }
    const auto c = static_cast<unsigned char>(rest[i]);
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') {
      return absl::StrCat("character '", absl::CHexEscape(rest.substr(i, 1)),
                          "' is not allowed in a host name");
    }
    ++label;
  }
  return "";
}

bool LooksNumeric(absl::string_view host) {
  for (char c : host) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

HostPort::HostPort(const Address& address)
    : host_(address.HostString()), port_(address.port()), literal_(address) {}

absl::StatusOr<HostPort> HostPort::Parse(absl::string_view host_port) {
  const absl::string_view input = host_port;
  if (input.empty()) return Invalid(input, "empty (expected HOST:PORT)");
  const size_t colon = input.rfind(':');
  // Brackets, or more than one colon: an IPv6 literal or a mistake, which
  // Address says best.
  if (input.front() == '[' || colon == absl::string_view::npos ||
      input.find(':') != colon) {
    if (colon == absl::string_view::npos) {
      return Invalid(input, "missing port (expected HOST:PORT)");
    }
    absl::StatusOr<Address> a = Address::Parse(input);
    if (!a.ok()) return a.status();
    return HostPort(*a);
  }
  const absl::string_view host = input.substr(0, colon);
  if (host.empty()) return Invalid(input, "missing host before ':'");
  absl::StatusOr<uint16_t> port = ParsePort(input, input.substr(colon + 1));
  if (!port.ok()) return port.status();
  absl::StatusOr<HostPort> h = FromParts(host, *port);
  if (!h.ok()) return Invalid(input, h.status().message());
  return h;
}

absl::StatusOr<HostPort> HostPort::FromParts(absl::string_view host,
                                             uint16_t port) {
  if (host.empty()) return absl::InvalidArgumentError("empty host");
  // A literal, through Address (which would read "localhost" as 127.0.0.1:
  // here it is a name, so it is not asked).
  if (!absl::EqualsIgnoreCase(host, "localhost")) {
    const bool v6 = host.find(':') != absl::string_view::npos;
    absl::StatusOr<Address> a =
        Address::Parse(v6 ? absl::StrCat("[", host, "]:", port)
                          : absl::StrCat(host, ":", port));
    if (a.ok()) return HostPort(*a);
    if (v6 || LooksNumeric(host)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", host, "\" is not a valid IP address",
                       v6 ? "" : " (expected four numbers 0..255)"));
    }
  }
  if (std::string why = NameError(host); !why.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", absl::CHexEscape(host), "\": ", why));
  }
  return HostPort(absl::AsciiStrToLower(host), port, std::nullopt);
}

std::string HostPort::ToString() const {
  if (literal_.has_value()) return literal_->ToString();
  return absl::StrCat(host_, ":", port_);
}

}  // namespace moonpool::driver
