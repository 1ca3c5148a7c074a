// SimCertificateAuthority makes the certificates of a simulated run in
// process, as a function of a seed: an Ed25519 CA and the leaf certificates
// it signs (servers and clients, for mutual TLS), as PEM text for
// driver::TlsConfig's *_pem fields. Ed25519 because both its keys (32 bytes
// drawn from the seed; driver/ed25519_certificates.h makes the X.509) and
// its signatures are deterministic: the same seed gives the same certificates
// byte for byte, so a TLS run of a SimLoop replays, and no openssl CLI, file or
// committed key is involved.
//
// Public because a user's own workloads (the runner links them: sim_main.h)
// need certificates to honour ChaosConfig::tls the way the built-in ones
// do, and the same ones in every run of a seed.
//
// What it is not: a PKI for real traffic. The keys are a function of a
// 64-bit seed, anyone can recompute them. Every certificate is valid from
// 2020-01-01 to 2040-01-01 (a SimLoop's calendar starts at 2023-11-14).
//
//   absl::StatusOr<SimCertificateAuthority> ca =
//       SimCertificateAuthority::Create(seed);
//   absl::StatusOr<SimCertificate> server =
//       ca->Issue({.common_name = "server0", .dns_names = {"server0.sim"}});
//   driver::TlsConfig config = ca->ServerConfig(*server);  // mutual TLS
//   auto context = driver::TlsContext::CreateServer(config);
//
// A value type; copies issue independently from the same point onward.
// Each Issue draws the next key from the authority's own generator, so the
// n-th certificate of a seed is always the same one.
#ifndef MOONPOOL_CHAOS_SIM_CERTIFICATES_H_
#define MOONPOOL_CHAOS_SIM_CERTIFICATES_H_

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/driver/ed25519_certificates.h"
#include "moonpool/driver/tls_context.h"

namespace moonpool::chaos {

// What a leaf certificate says.
struct SimCertificateSpec {
  std::string common_name = {};                // the subject's CN
  std::vector<std::string> dns_names = {};     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses = {};  // subjectAltName IP literals
  std::vector<std::string> uris = {};          // subjectAltName URIs (SPIFFE)
};

// A certificate and its key, PEM text (a key as unencrypted PKCS#8).
struct SimCertificate {
  std::string certificate_pem;
  std::string private_key_pem;
};

class SimCertificateAuthority {
 public:
  // A CA (subject "CN=<common_name>,O=moonpool-sim") whose key is drawn
  // from `seed`. Internal if OpenSSL fails (it should not).
  [[nodiscard]] static absl::StatusOr<SimCertificateAuthority> Create(
      uint64_t seed, const std::string& common_name = "moonpool-sim CA");

  // The CA's certificate, to trust (TlsConfig::trusted_ca_pem).
  const std::string& certificate_pem() const { return ca_.certificate_pem; }

  // A leaf signed by this CA, for TLS servers and clients both (extended
  // key usage serverAuth and clientAuth), with the next key of the seed and
  // the next serial number. InvalidArgument for a bad IP literal.
  [[nodiscard]] absl::StatusOr<SimCertificate> Issue(
      const SimCertificateSpec& spec);

  // A server's TlsConfig with `leaf`, trusting this CA for client
  // certificates, which it requires when `require_client_certificate`.
  driver::TlsConfig ServerConfig(const SimCertificate& leaf,
                                 bool require_client_certificate = true) const;
  // A client's TlsConfig trusting this CA; with `leaf` (not null), it
  // presents that certificate (mutual TLS).
  driver::TlsConfig ClientConfig(const SimCertificate* leaf = nullptr) const;

 private:
  using RawKey = driver::Ed25519Key;
  SimCertificateAuthority(SimRandom keys, SimCertificate ca, RawKey ca_key)
      : keys_(keys), ca_(std::move(ca)), ca_key_(ca_key) {}

  SimRandom keys_;  // each Issue's key, in turn
  SimCertificate ca_;
  RawKey ca_key_;
  uint64_t next_serial_ = 2;  // the CA's is 1
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SIM_CERTIFICATES_H_
