#include "moonpool/chaos/sim_certificates.h"

#include <string>
#include <utility>

#include "moonpool/driver/ed25519_certificates.h"

namespace moonpool::chaos {
namespace {

// The key generator's seed is the caller's with this salt, so a workload
// may use its own seed for other draws without repeating these.
constexpr uint64_t kKeySalt = 0x5eed5ce47ce47ULL;

driver::Ed25519Key DrawKey(SimRandom& keys) {
  driver::Ed25519Key raw;
  for (size_t i = 0; i < raw.size(); i += 8) {
    uint64_t w = keys.Next();
    for (size_t b = 0; b < 8; ++b) {
      raw[i + b] = static_cast<unsigned char>(w);
      w >>= 8;
    }
  }
  return raw;
}

}  // namespace

absl::StatusOr<SimCertificateAuthority> SimCertificateAuthority::Create(
    uint64_t seed, const std::string& common_name) {
  uint64_t state = seed ^ kKeySalt;
  SimRandom keys(SplitMix64(state));
  driver::CertificateRequest ca;
  ca.key = DrawKey(keys);
  ca.serial = 1;
  ca.common_name = common_name;
  ca.organization = "moonpool-sim";
  ca.is_ca = true;
  absl::StatusOr<driver::Ed25519Certificate> cert =
      driver::MakeEd25519Certificate(ca, {});
  if (!cert.ok()) return cert.status();
  return SimCertificateAuthority(
      keys, SimCertificate{cert->certificate_pem, cert->private_key_pem},
      ca.key);
}

absl::StatusOr<SimCertificate> SimCertificateAuthority::Issue(
    const SimCertificateSpec& spec) {
  // The key is drawn first, whatever fails later, so the n-th Issue of a
  // seed always gets the same key.
  driver::CertificateRequest leaf;
  leaf.key = DrawKey(keys_);
  leaf.serial = next_serial_++;
  leaf.common_name = spec.common_name;
  leaf.organization = "moonpool-sim";
  leaf.dns_names = spec.dns_names;
  leaf.ip_addresses = spec.ip_addresses;
  leaf.uris = spec.uris;
  absl::StatusOr<driver::Ed25519Certificate> cert =
      driver::MakeEd25519Certificate(
          leaf, {.certificate_pem = ca_.certificate_pem, .key = ca_key_});
  if (!cert.ok()) return cert.status();
  return SimCertificate{cert->certificate_pem, cert->private_key_pem};
}

driver::TlsConfig SimCertificateAuthority::ServerConfig(
    const SimCertificate& leaf, bool require_client_certificate) const {
  driver::TlsConfig c;
  c.certificate_chain_pem = leaf.certificate_pem;
  c.private_key_pem = leaf.private_key_pem;
  c.trusted_ca_pem = ca_.certificate_pem;
  c.require_client_certificate = require_client_certificate;
  return c;
}

driver::TlsConfig SimCertificateAuthority::ClientConfig(
    const SimCertificate* leaf) const {
  driver::TlsConfig c;
  if (leaf != nullptr) {
    c.certificate_chain_pem = leaf->certificate_pem;
    c.private_key_pem = leaf->private_key_pem;
  }
  c.trusted_ca_pem = ca_.certificate_pem;
  return c;
}

}  // namespace moonpool::chaos
