#include "moonpool/driver/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tls_errors.h"

namespace moonpool::driver {
namespace {

constexpr unsigned char kAlpn[] = {8, 'm', 'o', 'o', 'n', 'p', 'o', 'o', 'l'};

// A server accepts only ALPN "moonpool": a client that offers nothing else
// (or none) gets the no_application_protocol alert, and a clear Status.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpn, sizeof(kAlpn), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

BioPtr MemoryBio(absl::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                &BIO_free);
}

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("TLS config: ", what, ": ", internal::TakeOpenSslErrors()));
}

absl::Status LoadChain(SSL_CTX* ctx, const TlsConfig& c) {
  if (!c.certificate_chain_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(
            ctx, c.certificate_chain_file.c_str()) != 1) {
      return Invalid(absl::StrCat("certificate_chain_file \"",
                                  c.certificate_chain_file, "\""));
    }
    return absl::OkStatus();
  }
  BioPtr bio = MemoryBio(c.certificate_chain_pem);
  X509* leaf = PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr) return Invalid("certificate_chain_pem");
  const int used = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (used != 1) return Invalid("certificate_chain_pem");
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
      X509_free(ca);
      return Invalid("certificate_chain_pem");
    }
  }
  ERR_clear_error();  // the end of the PEM text reads as "no start line"
  return absl::OkStatus();
}

absl::Status LoadKey(SSL_CTX* ctx, const TlsConfig& c) {
  if (!c.private_key_file.empty()) {
    if (SSL_CTX_use_PrivateKey_file(ctx, c.private_key_file.c_str(),
                                    SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        return Invalid(absl::StrCat("private_key_file \"", c.private_key_file,
                                    "\" does not match the certificate"));
      }
      return Invalid(
          absl::StrCat("private_key_file \"", c.private_key_file, "\""));
    }
  } else {
    BioPtr bio = MemoryBio(c.private_key_pem);
    EVP_PKEY* key =
        PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    if (key == nullptr) return Invalid("private_key_pem");
    const int used = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (used != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        return Invalid("private_key_pem does not match the certificate");
      }
      return Invalid("private_key_pem");
    }
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Invalid("the private key does not match the certificate");
  }
  return absl::OkStatus();
}

absl::Status LoadCas(SSL_CTX* ctx, const TlsConfig& c) {
  if (!c.trusted_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, c.trusted_ca_file.c_str(),
                                      nullptr) != 1) {
      return Invalid(
          absl::StrCat("trusted_ca_file \"", c.trusted_ca_file, "\""));
    }
    return absl::OkStatus();
  }
  if (!c.trusted_ca_pem.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    BioPtr bio = MemoryBio(c.trusted_ca_pem);
    int loaded = 0;
    while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      const int added = X509_STORE_add_cert(store, ca);
      X509_free(ca);
      if (added != 1) return Invalid("trusted_ca_pem");
      ++loaded;
    }
    if (loaded == 0) return Invalid("trusted_ca_pem holds no certificate");
    ERR_clear_error();
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateClient(
    const TlsConfig& config) {
  return Create(TlsRole::kClient, config);
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServer(
    const TlsConfig& config) {
  return Create(TlsRole::kServer, config);
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Create(
    TlsRole role, const TlsConfig& config) {
  ERR_clear_error();
  const bool server = role == TlsRole::kServer;
  const bool has_chain = !config.certificate_chain_file.empty() ||
                         !config.certificate_chain_pem.empty();
  const bool has_key =
      !config.private_key_file.empty() || !config.private_key_pem.empty();
  const bool has_cas =
      !config.trusted_ca_file.empty() || !config.trusted_ca_pem.empty();
  if (server && (!has_chain || !has_key)) {
    return absl::InvalidArgumentError(
        "TLS config: a server needs a certificate chain and a private key");
  }
  if (has_chain != has_key) {
    return absl::InvalidArgumentError(
        "TLS config: a certificate chain and a private key go together");
  }
  if (server && config.require_client_certificate && !has_cas) {
    return absl::InvalidArgumentError(
        "TLS config: require_client_certificate needs trusted CAs to "
        "verify them with");
  }
  if (config.handshake_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "TLS config: handshake_timeout must be positive");
  }
  SSL_CTX* ctx =
      SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return Invalid("SSL_CTX_new");
  std::shared_ptr<const TlsContext> context(new TlsContext(role, config, ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // No resumption: no tickets to issue (their contents and lifetimes depend
  // on the wall clock and on randomness a simulation would have to track),
  // no session cache; renegotiation does not exist in 1.3, and early data
  // (0-RTT, replayable) stays off: SSL_CTX's default max_early_data is 0.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Writes take as much as they are given (the stream below queues) and may
  // come from a buffer that moves between calls.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (has_chain) {
    if (absl::Status s = LoadChain(ctx, config); !s.ok()) return s;
    if (absl::Status s = LoadKey(ctx, config); !s.ok()) return s;
  }
  if (has_cas) {
    if (absl::Status s = LoadCas(ctx, config); !s.ok()) return s;
  } else if (!server) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return Invalid("the system's default CA store");
    }
  }
  if (server) {
    SSL_CTX_set_alpn_select_cb(ctx, &SelectAlpn, nullptr);
    int mode = SSL_VERIFY_NONE;
    if (has_cas) mode = SSL_VERIFY_PEER;
    if (config.require_client_certificate) {
      mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn)) != 0) {
      return Invalid("ALPN");
    }
  }
  ERR_clear_error();
  return context;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

}  // namespace moonpool::driver
