#include "moonpool/envelope/correlation_id.h"

#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moonpool {
namespace {

TEST(CorrelationId, DefaultIsTheInvalidNoIdValue) {
  CorrelationId none;
  EXPECT_FALSE(none.valid());
  EXPECT_EQ(none.value(), 0u);
  EXPECT_TRUE(CorrelationId(1).valid());
}

TEST(CorrelationId, OrdersAndPrintsByValue) {
  EXPECT_LT(CorrelationId(1), CorrelationId(2));
  EXPECT_EQ(CorrelationId(7), CorrelationId(7));
  EXPECT_EQ(CorrelationId(42).ToString(), "#42");
  std::ostringstream os;
  os << CorrelationId(9);
  EXPECT_EQ(os.str(), "#9");
}

TEST(CorrelationIdGenerator, StartsAtOneAndNeverRepeats) {
  CorrelationIdGenerator ids;
  EXPECT_FALSE(ids.last().valid());
  absl::flat_hash_set<CorrelationId> seen;
  CorrelationId previous;
  for (int i = 0; i < 10000; ++i) {
    CorrelationId id = ids.Next();
    if (i == 0) {
      EXPECT_EQ(id, CorrelationId(1));
    }
    EXPECT_GT(id, previous);
    EXPECT_TRUE(seen.insert(id).second) << "repeated " << id;
    previous = id;
  }
  EXPECT_EQ(ids.last(), CorrelationId(10000));
}

}  // namespace
}  // namespace moonpool
