// RequestOptions: the per-call settings of ClientTransport::Request and
// ClientTransport::Call.
//
// Every request has a deadline (DESIGN.md section 6): the earlier of
// `deadline` and now + `timeout`, or, when neither is set, now + the
// connection's default_request_timeout (30 s unless ClientOptions says
// otherwise). "Now" is the loop's time when the request task starts.
#ifndef MOONPOOL_TRANSPORT_REQUEST_OPTIONS_H_
#define MOONPOOL_TRANSPORT_REQUEST_OPTIONS_H_

#include "absl/time/time.h"
#include "moonpool/envelope/endpoint.h"

namespace moonpool::transport {

struct RequestOptions {
  // When the caller gives up, on the loop's clock.
  absl::Time deadline = absl::InfiniteFuture();
  // The same, relative to when the request starts.
  absl::Duration timeout = absl::InfiniteDuration();
  // Safe to process twice: sent again on the next connection when the one
  // it was written on dies before the reply (otherwise the caller gets
  // Aborted, "maybe delivered").
  bool idempotent = false;
  // Protocol version 2 (DESIGN.md sections 5 and 6, "Exactly-once"): the
  // server keeps the outcome until this client settles it, and a request
  // maybe delivered is sent again with the same id to the same server
  // incarnation, which answers it from its record: it runs at most once,
  // and the caller gets its one outcome instead of Aborted. Aborted
  // ("maybe delivered") remains when the server restarted in between, when
  // it speaks only version 1, or when it had to forget the record (a bound:
  // "outcome forgotten, maybe delivered"). It waits for the server's Hello
  // before it is first written. Not for reply streams (CallStream refuses
  // it).
  bool exactly_once = false;
  // The destination queue at the server; kDefaultEndpoint is its default
  // queue. Ignored by ClientTransport::Call: the method names its endpoint.
  Endpoint endpoint = kDefaultEndpoint;
  // true (the default): a request waits for a connection until its
  // deadline, through failed connects and backoff, and fails Unavailable
  // only when the server stayed unreachable that long. false (gRPC's
  // wait_for_ready = false, "fail fast"): it fails Unavailable at once
  // while the server is unreachable, that is while the last connect
  // attempt to it failed and none has succeeded since; a request waiting
  // for a connect attempt fails as soon as that attempt fails. A first
  // connect still in progress, or a reconnect after an established
  // connection ended, is waited for either way.
  bool wait_for_ready = true;

  // Convenience: `RequestOptions::Timeout(absl::Seconds(2))`.
  static RequestOptions Timeout(absl::Duration timeout) {
    RequestOptions o;
    o.timeout = timeout;
    return o;
  }
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_REQUEST_OPTIONS_H_
