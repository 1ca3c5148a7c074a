// The TLS flags the moonpool programs share (moonpool-echo-server,
// moonpool-pingpong, moonpool-kv-server, moonpool-kv-client), defined once
// here, and the one place that turns them into a driver::TlsContext:
//
//   --tls                       client: speak TLS (implied by the others)
//   --tls-cert FILE             this side's certificate chain (PEM)
//   --tls-key FILE              its private key (PEM)
//   --tls-ca FILE               the CAs trusted to verify the other side
//   --tls-server-name NAME      client: the name the server must prove
//   --tls-require-client-cert   server: mutual TLS
//   --tls-handshake-timeout D   absl::Duration ("1s", "500ms"); default 10s
//
//   moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
//   absl::StatusOr<std::shared_ptr<const driver::TlsContext>> tls =
//       moonpool::transport::MakeProgramTls(driver::TlsRole::kServer,
//                                           ProgramTlsFlagValues());
//   if (!tls.ok()) UsageError(kProgram, tls.status().message());
//   options.tls = *tls;  // nullptr: no TLS flag given, plaintext
//
// A server speaks TLS when given --tls-cert (with --tls-key); a client when
// given any TLS flag. A flag that does not fit the role or the others, and a
// file that cannot be read or parsed, is InvalidArgument naming the flag:
// the programs report it as a usage error. ParseProgramFlags lists these
// flags in --help beside the program's own.
//
// It is not a TLS API: the flags only fill a driver::TlsConfig
// (driver/tls_context.h says what each setting means). The ABSL_FLAGs live
// in program_tls.cc, linked into a program only when it calls
// ProgramTlsFlagValues; a user's program may define its own flags and call
// MakeProgramTls with their values.
#ifndef MOONPOOL_TRANSPORT_PROGRAM_TLS_H_
#define MOONPOOL_TRANSPORT_PROGRAM_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "moonpool/driver/tls_context.h"

namespace moonpool::transport {

// The values of the --tls* flags; the defaults are "no TLS".
struct ProgramTlsFlags {
  bool tls = false;
  std::string cert;
  std::string key;
  std::string ca;
  std::string server_name;
  bool require_client_cert = false;
  absl::Duration handshake_timeout = driver::TlsConfig().handshake_timeout;
};

// The --tls* flags as parsed (call after ParseProgramFlags).
ProgramTlsFlags ProgramTlsFlagValues();

// The TlsContext `flags` ask for in `role`, or nullptr when they ask for no
// TLS. InvalidArgument, naming the flag: a flag of the other role
// (--tls-server-name on a server, --tls-require-client-cert on a client),
// --tls-cert without --tls-key or the reverse, a server with --tls-ca or
// --tls-require-client-cert but no --tls-cert, --tls-require-client-cert
// without --tls-ca, a handshake timeout not above zero, and everything
// TlsContext::Create refuses (a file that cannot be read or parsed, a key
// that does not match its certificate), with its message.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const driver::TlsContext>>
MakeProgramTls(driver::TlsRole role, const ProgramTlsFlags& flags);

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_PROGRAM_TLS_H_
