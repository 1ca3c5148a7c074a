#include "moonpool/chaos/sim_certificates.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moonpool::chaos {
namespace {

// The key generator's seed is the caller's with this salt, so a workload
// may use its own seed for other draws without repeating these.
constexpr uint64_t kKeySalt = 0x5eed5ce47ce47ULL;
// Fixed dates: a certificate made by this file is the same in every run,
// and valid for any virtual time a simulation is likely to reach.
constexpr char kNotBefore[] = "20200101000000Z";
constexpr char kNotAfter[] = "20400101000000Z";

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Free>;

// OpenSSL's queued errors as text (and the queue cleared), for a Status.
std::string OpenSslErrors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? "no reason given" : out;
}

absl::Status Failed(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("sim certificates: ", what, ": ", OpenSslErrors()));
}

std::array<unsigned char, 32> DrawKey(SimRandom& keys) {
  std::array<unsigned char, 32> raw;
  for (size_t i = 0; i < raw.size(); i += 8) {
    uint64_t w = keys.Next();
    for (size_t b = 0; b < 8; ++b) {
      raw[i + b] = static_cast<unsigned char>(w);
      w >>= 8;
    }
  }
  return raw;
}

absl::StatusOr<Owned<EVP_PKEY>> Ed25519(
    const std::array<unsigned char, 32>& raw) {
  Owned<EVP_PKEY> key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                                   raw.data(), raw.size()));
  if (key == nullptr) return Failed("Ed25519 key");
  return key;
}

absl::StatusOr<std::string> ToPem(X509* cert, EVP_PKEY* key) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return Failed("BIO");
  const int ok = cert != nullptr
                     ? PEM_write_bio_X509(bio.get(), cert)
                     : PEM_write_bio_PrivateKey(bio.get(), key, nullptr,
                                                nullptr, 0, nullptr, nullptr);
  if (ok != 1) return Failed("PEM");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid,
                          const std::string& value) {
  Owned<X509_EXTENSION> ext(
      X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (ext == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim certificates: extension ", OBJ_nid2sn(nid), " '",
                     value, "': ", OpenSslErrors()));
  }
  if (X509_add_ext(cert, ext.get(), -1) != 1) return Failed("X509_add_ext");
  return absl::OkStatus();
}

// A certificate for `key` named `common_name`, its issuer `issuer` (null:
// itself), signed by `issuer_key`; the extensions as `extensions` says,
// in order (the subject key identifier first: the authority key identifier
// of a leaf refers to its issuer's).
absl::StatusOr<Owned<X509>> MakeCertificate(
    uint64_t serial, const std::string& common_name, EVP_PKEY* key,
    X509* issuer, EVP_PKEY* issuer_key,
    const std::vector<std::pair<int, std::string>>& extensions) {
  Owned<X509> cert(X509_new());
  if (cert == nullptr) return Failed("X509_new");
  X509_NAME* name = X509_get_subject_name(cert.get());
  auto entry = [&](const char* field, const std::string& value) {
    return X509_NAME_add_entry_by_txt(
               name, field, MBSTRING_UTF8,
               reinterpret_cast<const unsigned char*>(value.data()),
               static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial) != 1 ||
      ASN1_TIME_set_string_X509(X509_getm_notBefore(cert.get()), kNotBefore) !=
          1 ||
      ASN1_TIME_set_string_X509(X509_getm_notAfter(cert.get()), kNotAfter) !=
          1 ||
      !entry("CN", common_name) || !entry("O", "moonpool-sim") ||
      X509_set_issuer_name(cert.get(), issuer != nullptr
                                           ? X509_get_subject_name(issuer)
                                           : name) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return Failed("certificate fields");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(),
                 nullptr, nullptr, 0);
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = AddExtension(cert.get(), &ctx, nid, value); !s.ok()) {
      return s;
    }
  }
  // Ed25519 signs the message itself: no digest (nullptr), and the same
  // signature every time.
  if (X509_sign(cert.get(), issuer_key, nullptr) <= 0) return Failed("sign");
  return cert;
}

}  // namespace

absl::StatusOr<SimCertificateAuthority> SimCertificateAuthority::Create(
    uint64_t seed, const std::string& common_name) {
  uint64_t state = seed ^ kKeySalt;
  SimRandom keys(SplitMix64(state));
  const RawKey raw = DrawKey(keys);
  absl::StatusOr<Owned<EVP_PKEY>> key = Ed25519(raw);
  if (!key.ok()) return key.status();
  absl::StatusOr<Owned<X509>> cert =
      MakeCertificate(1, common_name, key->get(), nullptr, key->get(),
                      {{NID_basic_constraints, "critical,CA:TRUE"},
                       {NID_key_usage, "critical,keyCertSign,cRLSign"},
                       {NID_subject_key_identifier, "hash"}});
  if (!cert.ok()) return cert.status();
  SimCertificate ca;
  absl::StatusOr<std::string> cert_pem = ToPem(cert->get(), nullptr);
  absl::StatusOr<std::string> key_pem = ToPem(nullptr, key->get());
  if (!cert_pem.ok()) return cert_pem.status();
  if (!key_pem.ok()) return key_pem.status();
  ca.certificate_pem = *std::move(cert_pem);
  ca.private_key_pem = *std::move(key_pem);
  return SimCertificateAuthority(keys, std::move(ca), raw);
}

absl::StatusOr<SimCertificate> SimCertificateAuthority::Issue(
    const SimCertificateSpec& spec) {
  // The key is drawn first, whatever fails later, so the n-th Issue of a
  // seed always gets the same key.
  const RawKey raw = DrawKey(keys_);
  const uint64_t serial = next_serial_++;
  absl::StatusOr<Owned<EVP_PKEY>> key = Ed25519(raw);
  absl::StatusOr<Owned<EVP_PKEY>> ca_key = Ed25519(ca_key_);
  if (!key.ok()) return key.status();
  if (!ca_key.ok()) return ca_key.status();
  Owned<BIO> bio(BIO_new_mem_buf(ca_.certificate_pem.data(),
                                 static_cast<int>(ca_.certificate_pem.size())));
  Owned<X509> ca_cert(
      bio == nullptr ? nullptr
                     : PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (ca_cert == nullptr) return Failed("the CA's certificate");

  std::vector<std::string> names;
  for (const std::string& n : spec.dns_names) names.push_back("DNS:" + n);
  for (const std::string& n : spec.ip_addresses) names.push_back("IP:" + n);
  for (const std::string& n : spec.uris) names.push_back("URI:" + n);
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, "serverAuth,clientAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  if (!names.empty()) {
    extensions.emplace_back(NID_subject_alt_name, absl::StrJoin(names, ","));
  }
  absl::StatusOr<Owned<X509>> cert =
      MakeCertificate(serial, spec.common_name, key->get(), ca_cert.get(),
                      ca_key->get(), extensions);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> cert_pem = ToPem(cert->get(), nullptr);
  absl::StatusOr<std::string> key_pem = ToPem(nullptr, key->get());
  if (!cert_pem.ok()) return cert_pem.status();
  if (!key_pem.ok()) return key_pem.status();
  return SimCertificate{*std::move(cert_pem), *std::move(key_pem)};
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
