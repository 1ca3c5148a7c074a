// PeerIdentity is who the other end of a connection proved to be: the
// subject and subject alternative names of the certificate it presented in
// a TLS handshake, after that certificate was verified against the trusted
// CAs. A plaintext connection, or a TLS one whose peer sent no certificate
// (a client, where the server does not require one), has none.
//
// It is not an authorization decision: the server's authorization hook
// (transport/method_handler.h) reads it and decides. A value type; copies
// are independent.
#ifndef MOONPOOL_DRIVER_PEER_IDENTITY_H_
#define MOONPOOL_DRIVER_PEER_IDENTITY_H_

#include <string>
#include <vector>

namespace moonpool::driver {

struct PeerIdentity {
  // The certificate's subject, one line in RFC 2253 form
  // ("CN=client-a,O=moonpool-test").
  std::string subject;
  // The subject alternative names, each kind in the certificate's order.
  std::vector<std::string> dns_names;     // "db-1.example.com"
  std::vector<std::string> ip_addresses;  // "127.0.0.1", "::1"
  std::vector<std::string> uris;          // "spiffe://example.org/kv"
  std::vector<std::string> emails;

  friend bool operator==(const PeerIdentity&, const PeerIdentity&) = default;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_PEER_IDENTITY_H_
