#include "moonpool/transport/program_tls.h"

#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "moonpool/driver/tls_context.h"

// Defined here, once, for every program that calls ProgramTlsFlagValues
// (program_tls.h); ParseProgramFlags lists this file's flags in --help.
ABSL_FLAG(bool, tls, false,
          "client: speak TLS (implied by any other --tls-* flag); the server "
          "is verified against --tls-ca, or the system's CAs without it");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM file: this side's certificate chain, leaf first (a server "
          "speaks TLS when given one; a client presents it for mutual TLS); "
          "needs --tls-key");
ABSL_FLAG(std::string, tls_key, "", "PEM file: the private key of --tls-cert");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file: the CAs trusted to verify the other side (client: the "
          "server's certificate; server: client certificates)");
ABSL_FLAG(std::string, tls_server_name, "",
          "client: the name (DNS name or IP) the server's certificate must "
          "carry, also sent as SNI (default: the host of the address "
          "connected to)");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "server: mutual TLS: a client without a certificate from --tls-ca "
          "fails the handshake");
ABSL_FLAG(absl::Duration, tls_handshake_timeout,
          moonpool::driver::TlsConfig().handshake_timeout,
          "a TLS handshake not finished by then fails the connection (e.g. "
          "1s, 500ms)");

namespace moonpool::transport {

ProgramTlsFlags ProgramTlsFlagValues() {
  ProgramTlsFlags f;
  f.tls = absl::GetFlag(FLAGS_tls);
  f.cert = absl::GetFlag(FLAGS_tls_cert);
  f.key = absl::GetFlag(FLAGS_tls_key);
  f.ca = absl::GetFlag(FLAGS_tls_ca);
  f.server_name = absl::GetFlag(FLAGS_tls_server_name);
  f.require_client_cert = absl::GetFlag(FLAGS_tls_require_client_cert);
  f.handshake_timeout = absl::GetFlag(FLAGS_tls_handshake_timeout);
  return f;
}

absl::StatusOr<std::shared_ptr<const driver::TlsContext>> MakeProgramTls(
    driver::TlsRole role, const ProgramTlsFlags& flags) {
  const bool server = role == driver::TlsRole::kServer;
  if (server && !flags.server_name.empty()) {
    return absl::InvalidArgumentError(
        "--tls-server-name is for a client (a server proves the names of "
        "its --tls-cert)");
  }
  if (!server && flags.require_client_cert) {
    return absl::InvalidArgumentError(
        "--tls-require-client-cert is for a server");
  }
  if (flags.cert.empty() != flags.key.empty()) {
    return absl::InvalidArgumentError(flags.cert.empty()
                                          ? "--tls-key without --tls-cert"
                                          : "--tls-cert without --tls-key");
  }
  const bool wanted = server
                          ? !flags.cert.empty()
                          : flags.tls || !flags.cert.empty() ||
                                !flags.ca.empty() || !flags.server_name.empty();
  if (!wanted) {
    // A server flag that only means something with TLS on is a mistake to
    // report, not to ignore: the server would serve plaintext.
    if (server &&
        (flags.tls || !flags.ca.empty() || flags.require_client_cert)) {
      return absl::InvalidArgumentError(
          "a TLS server needs --tls-cert and --tls-key");
    }
    return std::shared_ptr<const driver::TlsContext>();
  }
  if (flags.require_client_cert && flags.ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls-require-client-cert needs --tls-ca (the CAs client "
        "certificates must come from)");
  }
  if (!(flags.handshake_timeout > absl::ZeroDuration())) {
    return absl::InvalidArgumentError("--tls-handshake-timeout is not > 0");
  }
  driver::TlsConfig config;
  config.certificate_chain_file = flags.cert;
  config.private_key_file = flags.key;
  config.trusted_ca_file = flags.ca;
  config.server_name = flags.server_name;
  config.require_client_certificate = flags.require_client_cert;
  config.handshake_timeout = flags.handshake_timeout;
  absl::StatusOr<std::shared_ptr<const driver::TlsContext>> context =
      server ? driver::TlsContext::CreateServer(config)
             : driver::TlsContext::CreateClient(config);
  if (!context.ok()) {
    return absl::Status(
        context.status().code(),
        absl::StrCat("TLS settings (--tls-*): ", context.status().message()));
  }
  return context;
}

}  // namespace moonpool::transport
