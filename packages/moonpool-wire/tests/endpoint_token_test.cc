// EndpointToken pinned to XXH3_64bits values computed outside this library
// (Python's xxhash module, `xxhash.xxh3_64_intdigest(name, seed=0)`), so that
// a change of hash function, seed or byte handling shows up here: every other
// client computes tokens from DESIGN.md alone and would stop matching.
#include "moonpool/wire/endpoint_token.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace moonpool::wire {
namespace {

struct Pinned {
  std::string name;
  uint64_t token;
};

TEST(EndpointToken, EqualsXxh3Seed0ComputedIndependently) {
  // Lengths chosen to cross XXH3's code paths: 0, 1-3, 9-16, 17-128, >240.
  const Pinned cases[] = {
      {"", 0x2d06800538d394c2},
      {"a", 0xe6c632b61e964e1f},
      {"echo.Echo/Say", 0x074145f91f3bad14},
      {"kv.KeyValue/Get", 0xcfb1c154bd98f051},
      {"kv.KeyValue/Put", 0x9108371f4fceef5b},
      {"moonpool.test.LongServiceName/SomeLongMethodName", 0x68795cf828a5c977},
      {std::string(200, 'x') + "/M", 0x833eb21a73d1f3a3},
  };
  for (const Pinned& c : cases) {
    SCOPED_TRACE(c.name.substr(0, 40));
    EXPECT_EQ(EndpointToken(c.name).value(), c.token);
  }
}

TEST(EndpointToken, DependsOnEveryByteOfTheName) {
  EXPECT_NE(EndpointToken("kv.KeyValue/Get"), EndpointToken("kv.KeyValue/Ge"));
  EXPECT_NE(EndpointToken("kv.KeyValue/Get"), EndpointToken("kv.KeyValue/get"));
}

}  // namespace
}  // namespace moonpool::wire
