// RequestOptions: the per-call settings of ClientTransport::Request.
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
  // The destination queue at the server; kDefaultEndpoint is its default
  // queue.
  Endpoint endpoint = kDefaultEndpoint;

  // Convenience: `RequestOptions::Timeout(absl::Seconds(2))`.
  static RequestOptions Timeout(absl::Duration timeout) {
    RequestOptions o;
    o.timeout = timeout;
    return o;
  }
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_REQUEST_OPTIONS_H_
