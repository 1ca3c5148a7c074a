// ServerOptions: the settings and bounds of a ServerTransport. Every bound
// of DESIGN.md section 6 that belongs to a server is here, with its default.
//
// Backpressure: when a bound below is reached the server stops reading from
// the connection(s) concerned (the kernel's buffers, then TCP's window, push
// back on the clients) instead of queueing more, and resumes once answers or
// NextMessage calls bring it back under the bound.
#ifndef MOONPOOL_TRANSPORT_SERVER_OPTIONS_H_
#define MOONPOOL_TRANSPORT_SERVER_OPTIONS_H_

#include <cstddef>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/protocol/connection_options.h"
#include "moonpool/protocol/outcome_table.h"

namespace moonpool::transport {

class RequestContext;

// Decides whether a call may run, before its handler does: OK to run it;
// any other Status is the call's answer (by convention PermissionDenied, or
// Unauthenticated when the peer proved no identity), and the handler never
// runs. It reads the context: the peer's verified identity
// (RequestContext::peer_identity), its address, the method's name. It runs
// on the loop's thread and must not suspend. Copyable, so that one
// authorizer can guard several methods.
using Authorizer = std::function<absl::Status(const RequestContext&)>;

struct ServerOptions {
  // Each accepted connection's settings (keepalive, frame and output
  // bounds). The role is always server; an incarnation of 0 (the default
  // here) draws a random non-zero one from the loop.
  protocol::ConnectionOptions connection = DefaultConnectionOptions();
  driver::ListenOptions listen;

  // Connections open at once; an accepted socket past it is closed at once
  // and counted (ServerStats::connections_refused). The client backs off.
  size_t max_connections = 1024;
  // Requests received and not yet answered (queued or handed out), per
  // connection and in all. Reaching one stops reading the connection (or, for
  // the total, every connection).
  size_t max_requests_in_flight_per_connection = 1024;
  size_t max_requests_in_flight = 65536;
  // Payload bytes waiting in the queue (not yet handed out by NextMessage).
  // Reaching it stops reading every connection.
  size_t max_queued_bytes = size_t{64} << 20;
  // Exactly-once requests (DESIGN.md section 5): the bounds and lifetime of
  // the outcome records kept for them, per client and in all
  // (protocol/outcome_table.h has the defaults and why).
  protocol::OutcomeTableOptions exactly_once;

  // Hostile or broken peers (slowloris, forgotten sockets). Both are timed
  // only while the connection is being read: a connection paused by a bound
  // above is waiting on us, not on its peer. InfiniteDuration() turns one off.
  //
  // A frame must arrive whole within `read_timeout` of the first read that
  // left it incomplete, or the connection is closed (a peer trickling a
  // header a byte at a time is never silent long enough for the keepalive).
  // Counted in ServerStats::read_timeouts. Keep it above the time the
  // largest frame takes on the slowest link to serve: 16 MiB in 30 s is
  // about 560 KB/s.
  absl::Duration read_timeout = absl::Seconds(30);
  // A connection with no request in flight and no request or one-way
  // message received for this long is closed: with Goodbye once past the
  // handshake, at once before. Pings and pongs are not activity. Counted in
  // ServerStats::idle_timeouts.
  //
  // What the client's Peer does with the Goodbye: it finishes the close
  // and reconnects at once, after its backoff delay, whether or not it has
  // anything to send (a Peer keeps its connection up). Requests made in the
  // meantime wait in its queue and go out on the new connection; none fails
  // because of the close. So an idle client is not dropped for good: it
  // costs one reconnection per idle_timeout.
  absl::Duration idle_timeout = absl::Minutes(5);

  // Close(/*drain=*/true) closes whatever is still open after this long.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Largest slice of output handed to the stream at once, and only when
  // it has nothing queued (driver/output_handoff.h): the stream copies what
  // the kernel does not take, so this bounds that copy; the rest waits in
  // the protocol's bounded output.
  size_t stream_high_water_bytes = size_t{1} << 20;

  // Set: every accepted connection is TLS (driver/tls_context.h), made
  // with this server context. A connection counts against max_connections
  // from its accept, handshake included; one whose handshake fails is
  // closed and counted (ServerStats::tls_handshake_failures), and nothing
  // else notices. Handlers see the client's verified certificate in
  // RequestContext::peer_identity().
  std::shared_ptr<const driver::TlsContext> tls = nullptr;
  // Told of every TLS handshake that fails, with the client's address and
  // why (driver/tls_stream.h lists the Status codes), for a log: the
  // connection is already closed. Empty: counted only.
  std::function<void(const driver::Address&, const absl::Status&)>
      on_tls_handshake_failure = nullptr;
  // Runs before every method call of this server, before the per-service
  // and per-method authorizers (ServerTransport::Authorize,
  // HandlerOptions::authorize); the first non-OK answer refuses the call.
  // Empty: every call is allowed here.
  Authorizer authorize = nullptr;

  static protocol::ConnectionOptions DefaultConnectionOptions() {
    protocol::ConnectionOptions o;
    o.role = protocol::Role::kServer;
    o.incarnation = 0;
    o.peer_name = "moonpool-server";
    return o;
  }
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SERVER_OPTIONS_H_
