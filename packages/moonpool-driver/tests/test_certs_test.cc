// The test PKI reaches the tests: CTest's fixture (moonpool_add_test_certs)
// ran the script before this binary and MOONPOOL_TEST_CERTS points at its
// output, so the TLS tests fail on TLS, never on a missing file.
#include "test_certs.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace moonpool::driver::test_certs {
namespace {

TEST(TestCerts, FixtureWroteEveryCertificateAndKey) {
  for (const char* name :
       {"ca", "other-ca", "server", "client", "client-b", "expired",
        "wrong-name", "other-server", "other-client"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(
        absl::StartsWith(ReadTestCert(name), "-----BEGIN CERTIFICATE-----"));
    EXPECT_TRUE(absl::StartsWith(ReadTestCert(std::string(name) + ".key"),
                                 "-----BEGIN PRIVATE KEY-----"));
  }
}

TEST(TestCerts, PathWithoutExtensionNamesTheCertificate) {
  EXPECT_TRUE(absl::EndsWith(TestCertPath("ca"), "/ca.pem"));
  EXPECT_TRUE(absl::EndsWith(TestCertPath("server.key"), "/server.key"));
}

}  // namespace
}  // namespace moonpool::driver::test_certs
