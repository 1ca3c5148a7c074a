// MakeEd25519Certificate makes an X.509 certificate in process with OpenSSL
// (which only the driver includes: TLS is a driver Stream), from Ed25519 key
// bytes the caller gives. Ed25519 keys are any 32 bytes and its signatures
// are deterministic, so the same request gives the same certificate byte
// for byte: what a simulation needs to replay a TLS run from its seed
// (moonpool-chaos's SimCertificateAuthority draws the bytes from the seed),
// and what a test needs without the openssl CLI. The PEM text goes to
// TlsConfig's *_pem fields.
//
// What it is not: a PKI for real traffic (whoever knows the bytes has the
// key), or a certificate parser. Plain values in and out; nothing is kept.
//
//   driver::CertificateRequest ca{.key = ca_key, .serial = 1,
//                                 .common_name = "test CA", .is_ca = true};
//   auto root = driver::MakeEd25519Certificate(ca, {});      // self-signed
//   driver::CertificateRequest leaf{.key = leaf_key, .serial = 2,
//                                   .common_name = "db-1",
//                                   .dns_names = {"db-1.example"}};
//   auto cert = driver::MakeEd25519Certificate(
//       leaf, {.certificate_pem = root->certificate_pem, .key = ca_key});
#ifndef MOONPOOL_DRIVER_ED25519_CERTIFICATES_H_
#define MOONPOOL_DRIVER_ED25519_CERTIFICATES_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moonpool::driver {

// An Ed25519 private key: any 32 bytes.
using Ed25519Key = std::array<unsigned char, 32>;

// What the certificate says, and the key it is for.
struct CertificateRequest {
  Ed25519Key key = {};
  uint64_t serial = 1;
  std::string common_name;                // subject CN
  std::string organization = "moonpool";  // subject O
  std::vector<std::string> dns_names;     // subjectAltName entries
  std::vector<std::string> ip_addresses;  // literals
  std::vector<std::string> uris;
  // A CA (basicConstraints CA:TRUE, keyCertSign) or a leaf (CA:FALSE,
  // digitalSignature, extended key usage serverAuth and clientAuth).
  bool is_ca = false;
  absl::Time not_before =
      absl::FromCivil(absl::CivilDay(2020, 1, 1), absl::UTCTimeZone());
  absl::Time not_after =
      absl::FromCivil(absl::CivilDay(2040, 1, 1), absl::UTCTimeZone());
};

// Who signs it: the issuer's certificate (PEM) and key. An empty
// certificate_pem: the request signs itself (a root).
struct CertificateIssuer {
  std::string certificate_pem;
  Ed25519Key key = {};
};

struct Ed25519Certificate {
  std::string certificate_pem;
  std::string private_key_pem;  // unencrypted PKCS#8
};

// InvalidArgument for a bad IP literal or name, or an issuer certificate
// that does not parse; Internal if OpenSSL fails otherwise.
[[nodiscard]] absl::StatusOr<Ed25519Certificate> MakeEd25519Certificate(
    const CertificateRequest& request, const CertificateIssuer& issuer);

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_ED25519_CERTIFICATES_H_
