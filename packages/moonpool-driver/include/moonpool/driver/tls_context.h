// TlsConfig says how a transport speaks TLS; TlsContext is that
// configuration loaded and checked once (OpenSSL's SSL_CTX: certificates
// parsed, key matched to its certificate, CAs loaded), then shared by every
// connection of a ClientTransport or ServerTransport, on any number of
// loops and threads (ServerThreads shares one).
//
//   driver::TlsConfig c;
//   c.certificate_chain_file = "server.pem";
//   c.private_key_file = "server.key";
//   c.trusted_ca_file = "ca.pem";             // to verify client certificates
//   c.require_client_certificate = true;      // mutual TLS
//   absl::StatusOr<std::shared_ptr<const driver::TlsContext>> tls =
//       driver::TlsContext::CreateServer(c);
//   if (!tls.ok()) return tls.status();      // InvalidArgument, says which
//   ServerOptions options;
//   options.tls = *tls;
//
// What every connection gets (DESIGN.md section 5, "TLS"): TLS 1.3 only,
// ALPN "moonpool" required on both sides, no renegotiation, no 0-RTT, no
// session tickets or resumption (a full handshake each time: a moonpool
// connection lives long), certificate verification always on for the
// client, hostname (or IP) verification against TlsConfig::server_name or the
// address the client dialled, and a bound on how long a handshake may take.
//
// What it is not: a certificate manager. Files are read once, by Create;
// to rotate certificates make a new context and give it to new transports.
#ifndef MOONPOOL_DRIVER_TLS_CONTEXT_H_
#define MOONPOOL_DRIVER_TLS_CONTEXT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace moonpool::driver {

struct TlsConfig {
  // This side's certificate chain (leaf first) and private key, each as a
  // PEM file or as PEM text (set one of the two). A server needs both; a
  // client needs them only for mutual TLS.
  std::string certificate_chain_file;
  std::string certificate_chain_pem;
  std::string private_key_file;
  std::string private_key_pem;
  // The CAs whose certificates this side trusts, as a PEM file (one or more
  // certificates) or PEM text. A client with neither uses the system's
  // default CA store; a server needs one to verify client certificates.
  std::string trusted_ca_file;
  std::string trusted_ca_pem;
  // Client: the name the server's certificate must carry (a DNS name, or
  // an IP literal checked against its IP SANs); also sent as SNI. Empty:
  // the host of the address the client connects to.
  std::string server_name;
  // Server: a client without a verified certificate fails the handshake
  // (mutual TLS). false: a client certificate offered is still verified
  // (when trusted CAs are set) and its identity given to handlers.
  bool require_client_certificate = false;
  // A handshake not finished by then fails the connection with
  // DeadlineExceeded (a client that connects and sends nothing holds a
  // server's slot no longer than this).
  absl::Duration handshake_timeout = absl::Seconds(10);
};

// Role a context is made for.
enum class TlsRole { kClient, kServer };

class TlsContext {
 public:
  // InvalidArgument when a file cannot be read or parsed, the key does not
  // match the certificate, a server has no certificate, or a server that
  // requires client certificates trusts no CA; each message names the
  // setting and OpenSSL's reason.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const TlsContext>>
  CreateClient(const TlsConfig& config);
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const TlsContext>>
  CreateServer(const TlsConfig& config);

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ~TlsContext();

  TlsRole role() const { return role_; }
  const TlsConfig& config() const { return config_; }

  // OpenSSL's SSL_CTX, for the TLS stream and for settings this struct
  // lacks (cipher suites, say), made before the first connection.
  ssl_ctx_st* native_handle() const { return ctx_; }

 private:
  TlsContext(TlsRole role, TlsConfig config, ssl_ctx_st* ctx)
      : role_(role), config_(std::move(config)), ctx_(ctx) {}
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Create(
      TlsRole role, const TlsConfig& config);

  TlsRole role_;
  TlsConfig config_;
  ssl_ctx_st* ctx_;  // owned
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_TLS_CONTEXT_H_
