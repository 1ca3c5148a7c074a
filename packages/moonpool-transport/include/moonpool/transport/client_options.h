// ClientOptions: the settings of a ClientTransport, applied to every Peer it
// makes (one per address). Keepalive, bounds, backoff and the default request
// timeout are the driver's and the protocol's (peer.h, connection_options.h);
// their defaults are DESIGN.md section 5's.
#ifndef MOONPOOL_TRANSPORT_CLIENT_OPTIONS_H_
#define MOONPOOL_TRANSPORT_CLIENT_OPTIONS_H_

#include <cstddef>

#include "moonpool/driver/peer.h"

namespace moonpool::transport {

struct ClientOptions {
  // Each Peer's settings. `peer.connection.incarnation`: 0 (the default
  // here) draws a random non-zero one from the loop, once per transport.
  driver::PeerOptions peer = DefaultPeerOptions();
  // Addresses reserved for in the peer table up front (it grows past this).
  size_t expected_peers = 16;

  static driver::PeerOptions DefaultPeerOptions() {
    driver::PeerOptions o;
    o.connection.incarnation = 0;
    o.connection.peer_name = "moonpool-client";
    return o;
  }
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_CLIENT_OPTIONS_H_
