// Paths to the TLS test certificates, for the driver's tests: the files
// packages/moonpool-driver/tools/moonpool-make-test-certs writes (its header
// lists them: "ca", "server", "client", "expired", ...). CTest makes a fresh
// set before the tests run (the fixture moonpool_driver_test_certs, from
// moonpool_add_test_certs) and passes its directory in MOONPOOL_TEST_CERTS.
// Not a certificate factory: it only finds and reads the script's files.
//
// To run a test binary by hand, make a set and point the variable at it:
//   packages/moonpool-driver/tools/moonpool-make-test-certs /tmp/certs
//   MOONPOOL_TEST_CERTS=/tmp/certs build/dev/.../moonpool_driver_test
#ifndef MOONPOOL_DRIVER_TESTS_TEST_CERTS_H_
#define MOONPOOL_DRIVER_TESTS_TEST_CERTS_H_

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace moonpool::driver::test_certs {

// The directory of the certificates (MOONPOOL_TEST_CERTS), or "" after
// failing the current test with how to set it: a test run outside CTest
// without the variable fails clearly, never on a missing file later.
inline std::string TestCertDir() {
  const char* dir = std::getenv("MOONPOOL_TEST_CERTS");
  if (dir == nullptr || *dir == '\0') {
    ADD_FAILURE() << "MOONPOOL_TEST_CERTS is not set: run through ctest (the "
                     "test-certs fixture makes them), or run "
                     "packages/moonpool-driver/tools/moonpool-make-test-certs "
                     "DIR and set MOONPOOL_TEST_CERTS=DIR";
    return "";
  }
  return dir;
}

// The path of a file of the set: TestCertPath("server.pem"),
// TestCertPath("server.key"). A name without an extension means its
// certificate: TestCertPath("ca") is ".../ca.pem".
inline std::string TestCertPath(absl::string_view name) {
  std::string dir = TestCertDir();
  if (dir.empty()) return "";
  bool has_extension = name.find('.') != absl::string_view::npos;
  return absl::StrCat(dir, "/", name, has_extension ? "" : ".pem");
}

// The contents of a file of the set (PEM text, for TlsConfig's *_pem
// fields), or "" after failing the current test when it cannot be read.
inline std::string ReadTestCert(absl::string_view name) {
  std::string path = TestCertPath(name);
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read test certificate file " << path
                  << " (MOONPOOL_TEST_CERTS: is the set complete?)";
    return "";
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace moonpool::driver::test_certs

#endif  // MOONPOOL_DRIVER_TESTS_TEST_CERTS_H_
