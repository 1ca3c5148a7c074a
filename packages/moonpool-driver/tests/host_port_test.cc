// HostPort: what Parse accepts (names and literals), how it says what is
// wrong with the rest, that ToString reads back, and that an Address
// converts to the equal literal.
#include "moonpool/driver/host_port.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moonpool::driver {
namespace {

using ::testing::HasSubstr;

TEST(HostPort, ParsesNamesAndLiterals) {
  struct Case {
    std::string input;
    std::string host;
    uint16_t port;
    bool literal;
    std::string canonical;
  };
  const Case cases[] = {
      {"db1.example:4500", "db1.example", 4500, false, "db1.example:4500"},
      {"DB1.Example:4500", "db1.example", 4500, false, "db1.example:4500"},
      {"localhost:80", "localhost", 80, false, "localhost:80"},
      {"my_host-2:1", "my_host-2", 1, false, "my_host-2:1"},
      {"rooted.example.:0", "rooted.example.", 0, false, "rooted.example.:0"},
      {"1.2.3.4:80", "1.2.3.4", 80, true, "1.2.3.4:80"},
      {"[::1]:80", "::1", 80, true, "[::1]:80"},
      {"[0:0::1]:65535", "::1", 65535, true, "[::1]:65535"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    absl::StatusOr<HostPort> h = HostPort::Parse(c.input);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->host(), c.host);
    EXPECT_EQ(h->port(), c.port);
    EXPECT_EQ(h->is_literal(), c.literal);
    EXPECT_EQ(h->ToString(), c.canonical);
    absl::StatusOr<HostPort> again = HostPort::Parse(h->ToString());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *h);
  }
}

TEST(HostPort, RejectsWithTheReason) {
  struct Case {
    std::string input;
    std::string why;
  };
  const Case cases[] = {
      {"", "empty"},
      {"db1", "missing port"},
      {"db1:", "missing port"},
      {":80", "missing host"},
      {"db1:http", "not a decimal number"},
      {"db1:65536", "out of range"},
      {"1.2.3.256:80", "not a valid IP address"},
      {"1.2.3:80", "not a valid IP address"},
      {"::1:80", "must be in brackets"},
      {"[::1:80", "missing ']'"},
      {"db 1:80", "not allowed in a host name"},
      {"db1..example:80", "empty label"},
      {".db1:80", "empty label"},
      {"-db1:80", "starts or ends with '-'"},
      {"db1-.example:80", "starts or ends with '-'"},
      {std::string(64, 'a') + ".example:80", "longer than 63"},
      {std::string(250, 'a')
               .replace(60, 1, ".")
               .replace(120, 1, ".")
               .replace(180, 1, ".") +
           ".example:80",
       "longer than 253"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    absl::StatusOr<HostPort> h = HostPort::Parse(c.input);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(h.status().message(), HasSubstr(c.why));
  }
}

TEST(HostPort, AnAddressIsTheEqualLiteral) {
  const Address a = Address::Loopback(4500);
  const HostPort h = a;  // implicit, so Address callers compile unchanged
  EXPECT_TRUE(h.is_literal());
  EXPECT_EQ(*h.literal(), a);
  EXPECT_EQ(h, *HostPort::Parse("127.0.0.1:4500"));
  EXPECT_EQ(h.ToString(), a.ToString());
  EXPECT_EQ(HostPort(), HostPort(Address()));
}

TEST(HostPort, FromPartsTakesBareIpv6AndNames) {
  absl::StatusOr<HostPort> v6 = HostPort::FromParts("::1", 9);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_TRUE(v6->is_literal());
  EXPECT_EQ(v6->ToString(), "[::1]:9");
  absl::StatusOr<HostPort> name = HostPort::FromParts("Db1", 9);
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->ToString(), "db1:9");
  EXPECT_FALSE(HostPort::FromParts("", 9).ok());
  EXPECT_FALSE(HostPort::FromParts("a/b", 9).ok());
}

TEST(HostPort, HashesAndOrdersByHostThenPort) {
  absl::flat_hash_set<HostPort> set;
  set.insert(*HostPort::Parse("db1:1"));
  set.insert(*HostPort::Parse("DB1:1"));  // the same name
  set.insert(*HostPort::Parse("db1:2"));
  set.insert(Address::Loopback(1));
  EXPECT_EQ(set.size(), 3u);
  EXPECT_LT(*HostPort::Parse("db1:2"), *HostPort::Parse("db2:1"));
  EXPECT_LT(*HostPort::Parse("db1:1"), *HostPort::Parse("db1:2"));
}

}  // namespace
}  // namespace moonpool::driver
