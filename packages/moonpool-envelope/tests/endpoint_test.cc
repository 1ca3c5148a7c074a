#include "moonpool/envelope/endpoint.h"

#include <cstdint>
#include <sstream>
#include <type_traits>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"
#include "moonpool/envelope/correlation_id.h"

namespace moonpool {
namespace {

// The point of the type: neither a bare integer nor a correlation id turns
// into an endpoint by accident.
static_assert(!std::is_convertible_v<uint64_t, Endpoint>);
static_assert(!std::is_convertible_v<CorrelationId, Endpoint>);
static_assert(!std::is_convertible_v<Endpoint, uint64_t>);
static_assert(std::is_constructible_v<Endpoint, uint64_t>);

TEST(Endpoint, DefaultIsTheDefaultQueue) {
  EXPECT_EQ(Endpoint(), kDefaultEndpoint);
  EXPECT_EQ(kDefaultEndpoint.value(), 0u);
  EXPECT_NE(Endpoint(1), kDefaultEndpoint);
  static_assert(Endpoint(7).value() == 7);
}

TEST(Endpoint, OrdersHashesAndPrintsByValue) {
  EXPECT_LT(Endpoint(1), Endpoint(2));
  EXPECT_EQ(Endpoint(7), Endpoint(7));
  absl::flat_hash_set<Endpoint> seen = {Endpoint(1), Endpoint(2), Endpoint(1)};
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.contains(Endpoint(2)));
  EXPECT_EQ(Endpoint(42).ToString(), "endpoint 42");
  std::ostringstream os;
  os << Endpoint(9);
  EXPECT_EQ(os.str(), "endpoint 9");
}

}  // namespace
}  // namespace moonpool
