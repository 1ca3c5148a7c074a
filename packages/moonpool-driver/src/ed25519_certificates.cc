#include "moonpool/driver/ed25519_certificates.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace moonpool::driver {
namespace {

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
      absl::StrCat("Ed25519 certificate: ", what, ": ", OpenSslErrors()));
}

absl::StatusOr<Owned<EVP_PKEY>> Ed25519(const Ed25519Key& raw) {
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
        absl::StrCat("Ed25519 certificate: extension ", OBJ_nid2sn(nid), " '",
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
    const CertificateRequest& r, EVP_PKEY* key, X509* issuer,
    EVP_PKEY* issuer_key,
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
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), r.serial) !=
          1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                    absl::ToTimeT(r.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                    absl::ToTimeT(r.not_after)) == nullptr ||
      !entry("CN", r.common_name) || !entry("O", r.organization) ||
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

absl::StatusOr<Ed25519Certificate> MakeEd25519Certificate(
    const CertificateRequest& request, const CertificateIssuer& issuer) {
  ERR_clear_error();
  absl::StatusOr<Owned<EVP_PKEY>> key = Ed25519(request.key);
  if (!key.ok()) return key.status();
  Owned<EVP_PKEY> issuer_key;
  Owned<X509> issuer_cert;
  if (!issuer.certificate_pem.empty()) {
    absl::StatusOr<Owned<EVP_PKEY>> k = Ed25519(issuer.key);
    if (!k.ok()) return k.status();
    issuer_key = *std::move(k);
    Owned<BIO> bio(
        BIO_new_mem_buf(issuer.certificate_pem.data(),
                        static_cast<int>(issuer.certificate_pem.size())));
    if (bio != nullptr) {
      issuer_cert.reset(
          PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    }
    if (issuer_cert == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Ed25519 certificate: the issuer's certificate: ", OpenSslErrors()));
    }
  }
  std::vector<std::pair<int, std::string>> extensions;
  if (request.is_ca) {
    extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                  {NID_subject_key_identifier, "hash"}};
  } else {
    extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, "critical,digitalSignature"},
                  {NID_ext_key_usage, "serverAuth,clientAuth"},
                  {NID_subject_key_identifier, "hash"}};
  }
  // A leaf names its issuer's key (its subject key identifier).
  if (issuer_cert != nullptr) {
    extensions.emplace_back(NID_authority_key_identifier, "keyid:always");
  }
  std::vector<std::string> names;
  for (const std::string& n : request.dns_names) names.push_back("DNS:" + n);
  for (const std::string& n : request.ip_addresses) names.push_back("IP:" + n);
  for (const std::string& n : request.uris) names.push_back("URI:" + n);
  if (!names.empty()) {
    extensions.emplace_back(NID_subject_alt_name, absl::StrJoin(names, ","));
  }
  EVP_PKEY* signer = issuer_key != nullptr ? issuer_key.get() : key->get();
  absl::StatusOr<Owned<X509>> cert = MakeCertificate(
      request, key->get(), issuer_cert.get(), signer, extensions);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> cert_pem = ToPem(cert->get(), nullptr);
  absl::StatusOr<std::string> key_pem = ToPem(nullptr, key->get());
  if (!cert_pem.ok()) return cert_pem.status();
  if (!key_pem.ok()) return key_pem.status();
  return Ed25519Certificate{*std::move(cert_pem), *std::move(key_pem)};
}

}  // namespace moonpool::driver
