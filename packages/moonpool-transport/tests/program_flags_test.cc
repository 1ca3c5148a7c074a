// NormalizeFlagNames: which arguments ParseProgramFlags rewrites to absl's
// flag spelling, and which it leaves alone.
#include "moonpool/transport/program_flags.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moonpool::transport {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Normalize(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return NormalizeFlagNames(static_cast<int>(argv.size()), argv.data());
}

TEST(ProgramFlags, DashesInFlagNamesBecomeUnderscores) {
  EXPECT_THAT(Normalize({"prog", "--max-connections=5", "-in-flight", "3"}),
              ElementsAre("prog", "--max_connections=5", "-in_flight", "3"));
}

TEST(ProgramFlags, OnlyTheNameIsRewrittenNotTheValue) {
  EXPECT_THAT(Normalize({"prog", "--json=a-b.json", "--connect", "a-b:1"}),
              ElementsAre("prog", "--json=a-b.json", "--connect", "a-b:1"));
}

TEST(ProgramFlags, ShortHelpBecomesHelp) {
  EXPECT_THAT(Normalize({"prog", "-h"}), ElementsAre("prog", "--help"));
}

TEST(ProgramFlags, NonNamesAndAllAfterDoubleDashAreLeftAlone) {
  EXPECT_THAT(
      Normalize({"my-prog", "-5", "--Upper-case", "--a.b-c", "--", "--x-y"}),
      ElementsAre("my-prog", "-5", "--Upper-case", "--a.b-c", "--", "--x-y"));
}

}  // namespace
}  // namespace moonpool::transport
