// MakeProgramTls: which --tls* flag combinations give a TLS context, which
// give plaintext, and which are usage errors naming the flag. Certificates
// from the test PKI (MOONPOOL_TEST_CERTS, made by the CTest fixture).
#include "moonpool/transport/program_tls.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/tls_context.h"

namespace moonpool::transport {
namespace {

using driver::TlsRole;
using ::testing::HasSubstr;

std::string Cert(const char* file) {
  const char* dir = std::getenv("MOONPOOL_TEST_CERTS");
  if (dir == nullptr) {
    ADD_FAILURE() << "MOONPOOL_TEST_CERTS is not set (run through ctest)";
    return "";
  }
  return absl::StrCat(dir, "/", file);
}

ProgramTlsFlags Server() {
  ProgramTlsFlags f;
  f.cert = Cert("server.pem");
  f.key = Cert("server.key");
  return f;
}

TEST(ProgramTls, NoFlagsIsPlaintextOnBothSides) {
  for (TlsRole role : {TlsRole::kServer, TlsRole::kClient}) {
    auto tls = MakeProgramTls(role, ProgramTlsFlags());
    ASSERT_TRUE(tls.ok()) << tls.status();
    EXPECT_EQ(*tls, nullptr);
  }
}

TEST(ProgramTls, ServerWithCertAndKeyGetsAServerContextWithTheSettings) {
  ProgramTlsFlags f = Server();
  f.ca = Cert("ca.pem");
  f.require_client_cert = true;
  f.handshake_timeout = absl::Seconds(1);
  auto tls = MakeProgramTls(TlsRole::kServer, f);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_NE(*tls, nullptr);
  EXPECT_EQ((*tls)->role(), TlsRole::kServer);
  EXPECT_TRUE((*tls)->config().require_client_certificate);
  EXPECT_EQ((*tls)->config().handshake_timeout, absl::Seconds(1));
}

TEST(ProgramTls, AnyClientFlagTurnsTlsOn) {
  ProgramTlsFlags ca;
  ca.ca = Cert("ca.pem");
  ProgramTlsFlags name = ca;
  name.server_name = "localhost";
  ProgramTlsFlags mutual = ca;
  mutual.cert = Cert("client.pem");
  mutual.key = Cert("client.key");
  for (const ProgramTlsFlags& f : {ca, name, mutual}) {
    auto tls = MakeProgramTls(TlsRole::kClient, f);
    ASSERT_TRUE(tls.ok()) << tls.status();
    ASSERT_NE(*tls, nullptr);
    EXPECT_EQ((*tls)->role(), TlsRole::kClient);
  }
}

TEST(ProgramTls, FlagsThatDoNotFitAreInvalidArgumentNamingTheFlag) {
  struct Case {
    const char* what;
    TlsRole role;
    ProgramTlsFlags flags;
    const char* message;
  };
  ProgramTlsFlags key_only;
  key_only.key = Cert("server.key");
  ProgramTlsFlags cert_only;
  cert_only.cert = Cert("server.pem");
  ProgramTlsFlags server_name = Server();
  server_name.server_name = "localhost";
  ProgramTlsFlags require_without_ca = Server();
  require_without_ca.require_client_cert = true;
  ProgramTlsFlags ca_without_cert;
  ca_without_cert.ca = Cert("ca.pem");
  ProgramTlsFlags client_require;
  client_require.require_client_cert = true;
  ProgramTlsFlags zero_timeout = Server();
  zero_timeout.handshake_timeout = absl::ZeroDuration();
  ProgramTlsFlags missing_file = Server();
  missing_file.cert = Cert("no-such.pem");
  ProgramTlsFlags wrong_key = Server();
  wrong_key.key = Cert("client.key");
  for (const Case& c : {
           Case{"key only", TlsRole::kServer, key_only, "--tls-key without"},
           Case{"cert only", TlsRole::kClient, cert_only, "--tls-cert without"},
           Case{"server name on a server", TlsRole::kServer, server_name,
                "--tls-server-name is for a client"},
           Case{"require without ca", TlsRole::kServer, require_without_ca,
                "--tls-require-client-cert needs --tls-ca"},
           Case{"ca without cert on a server", TlsRole::kServer,
                ca_without_cert, "needs --tls-cert"},
           Case{"require on a client", TlsRole::kClient, client_require,
                "--tls-require-client-cert is for a server"},
           Case{"zero timeout", TlsRole::kServer, zero_timeout,
                "--tls-handshake-timeout"},
           Case{"missing file", TlsRole::kServer, missing_file, "--tls-*"},
           Case{"key of another certificate", TlsRole::kServer, wrong_key,
                "--tls-*"},
       }) {
    SCOPED_TRACE(c.what);
    auto tls = MakeProgramTls(c.role, c.flags);
    ASSERT_FALSE(tls.ok());
    EXPECT_EQ(tls.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(tls.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace moonpool::transport
