// Address: what Parse accepts, how it says what is wrong with the rest, and
// that ToString reads back through Parse.
#include "moonpool/driver/address.h"

#include <sstream>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moonpool::driver {
namespace {

using ::testing::HasSubstr;

TEST(Address, DefaultIsIpv4AnyPortZero) {
  Address a;
  EXPECT_EQ(a.family(), Address::Family::kIpv4);
  EXPECT_EQ(a.port(), 0);
  EXPECT_EQ(a.ToString(), "0.0.0.0:0");
}

TEST(Address, ParsesLiteralsAndLocalhost) {
  struct Case {
    std::string input;
    Address::Family family;
    std::string host;
    uint16_t port;
    std::string canonical;
  };
  const Case cases[] = {
      {"1.2.3.4:80", Address::Family::kIpv4, "1.2.3.4", 80, "1.2.3.4:80"},
      {"127.0.0.1:0", Address::Family::kIpv4, "127.0.0.1", 0, "127.0.0.1:0"},
      {"255.255.255.255:65535", Address::Family::kIpv4, "255.255.255.255",
       65535, "255.255.255.255:65535"},
      {"0.0.0.0:4500", Address::Family::kIpv4, "0.0.0.0", 4500, "0.0.0.0:4500"},
      {"localhost:80", Address::Family::kIpv4, "127.0.0.1", 80, "127.0.0.1:80"},
      {"LocalHost:81", Address::Family::kIpv4, "127.0.0.1", 81, "127.0.0.1:81"},
      {"10.0.0.1:080", Address::Family::kIpv4, "10.0.0.1", 80, "10.0.0.1:80"},
      {"[::1]:80", Address::Family::kIpv6, "::1", 80, "[::1]:80"},
      {"[::]:0", Address::Family::kIpv6, "::", 0, "[::]:0"},
      {"[2001:db8:0:0:0:0:0:1]:443", Address::Family::kIpv6, "2001:db8::1", 443,
       "[2001:db8::1]:443"},
      {"[FE80::ABCD]:9", Address::Family::kIpv6, "fe80::abcd", 9,
       "[fe80::abcd]:9"},
      {"[::ffff:1.2.3.4]:7", Address::Family::kIpv6, "::ffff:1.2.3.4", 7,
       "[::ffff:1.2.3.4]:7"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    absl::StatusOr<Address> a = Address::Parse(c.input);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->family(), c.family);
    EXPECT_EQ(a->HostString(), c.host);
    EXPECT_EQ(a->port(), c.port);
    EXPECT_EQ(a->ToString(), c.canonical);
  }
}

TEST(Address, RejectsEveryBadFormWithItsReason) {
  struct Case {
    std::string input;
    std::string reason;  // a substring of the message
  };
  const Case cases[] = {
      {"", "empty"},
      {"1.2.3.4", "missing port"},
      {"1.2.3.4:", "missing port"},
      {":80", "missing host"},
      {"1.2.3.4:65536", "out of range"},
      {"1.2.3.4:99999999999999999999", "out of range"},
      {"1.2.3.4:http", "not a decimal number"},
      {"1.2.3.4:-1", "not a decimal number"},
      {"1.2.3.4:+80", "not a decimal number"},
      {"1.2.3.4: 80", "not a decimal number"},
      {"1.2.3.4:8 0", "not a decimal number"},
      {"::1:80", "must be in brackets"},
      {"2001:db8::1", "must be in brackets"},
      {"[::1]", "missing port"},
      {"[::1]:", "missing port"},
      {"[::1]80", "expected ':'"},
      {"[::1:80", "missing ']'"},
      {"[]:80", "empty IPv6"},
      {"[1.2.3.4]:80", "brackets are for IPv6"},
      {"[fe80::1%eth0]:80", "zone ids"},
      {"[::g]:80", "not a valid IPv6"},
      {"[::1]:65536", "out of range"},
      {"1.2.3:80", "not a valid IPv4"},
      {"256.1.1.1:80", "not a valid IPv4"},
      {"1.2.3.4.5:80", "not a valid IPv4"},
      {"example.com:80", "use HostPort::Parse for names"},
      {"db-1:5432", "use HostPort::Parse for names"},
      {"localhost.localdomain:80", "use HostPort::Parse for names"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    absl::StatusOr<Address> a = Address::Parse(c.input);
    ASSERT_FALSE(a.ok()) << "parsed as " << *a;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(a.status().message(), HasSubstr(c.reason));
    // The message quotes the input, so a log line says which one was bad.
    EXPECT_THAT(a.status().message(), HasSubstr("\"" + c.input + "\""));
  }
}

TEST(Address, ToStringReadsBackThroughParse) {
  const Address addresses[] = {
      Address::Loopback(1),
      Address::Ipv4({192, 168, 1, 200}, 65535),
      Address::Ipv4({0, 0, 0, 0}, 0),
      Address::Ipv6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 4500),
      Address::Ipv6(
          {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42}, 80),
      Address::Ipv6({}, 0),
  };
  for (const Address& a : addresses) {
    SCOPED_TRACE(a.ToString());
    absl::StatusOr<Address> back = Address::Parse(a.ToString());
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, a);
  }
}

TEST(Address, Ipv4UsesFirstFourBytesAndZeroesTheRest) {
  Address a = Address::Ipv4({10, 1, 2, 3}, 7);
  EXPECT_EQ(a.bytes()[0], 10);
  EXPECT_EQ(a.bytes()[3], 3);
  for (size_t i = 4; i < 16; ++i) EXPECT_EQ(a.bytes()[i], 0) << i;
}

TEST(Address, EqualityHashAndOrderSeeFamilyBytesAndPort) {
  const Address v4 = Address::Loopback(80);
  EXPECT_EQ(v4, *Address::Parse("127.0.0.1:80"));
  EXPECT_NE(v4, v4.WithPort(81));
  // All-zero bytes and the same port: only the family tells them apart.
  EXPECT_NE(Address::Ipv4({0, 0, 0, 0}, 1), Address::Ipv6({}, 1));
  EXPECT_LT(v4, v4.WithPort(81));

  absl::flat_hash_set<Address> set = {v4, v4.WithPort(81), v4,
                                      Address::Ipv6({}, 80)};
  EXPECT_EQ(set.size(), 3u);
}

TEST(Address, StreamsAsToString) {
  std::ostringstream os;
  os << *Address::Parse("[::1]:4500");
  EXPECT_EQ(os.str(), "[::1]:4500");
}

}  // namespace
}  // namespace moonpool::driver
