// ClientRequestIds: the correlation ids of one client incarnation, and which
// of its exactly-once requests are not yet settled (DESIGN.md section 5,
// "Exactly-once").
//
// A server keeps an exactly-once request's outcome keyed by the client's
// Hello incarnation and the request's correlation id, until a later request
// of that incarnation says, with answeredBelow, that every id below some
// mark is settled. So within one incarnation the ids must be unique, and the
// mark must account for every unsettled request of that incarnation: the
// Peers of one ClientTransport (one incarnation, possibly two Peers to the
// same server under two names) share one of these (PeerOptions::ids).
//
// What it is not: a request table. It holds an id generator and a set of
// ids. Not thread-safe: it belongs to its loop's thread. The owner (a
// ClientTransport, or a Peer for itself) must outlive every Peer using it.
#ifndef MOONPOOL_DRIVER_CLIENT_REQUEST_IDS_H_
#define MOONPOOL_DRIVER_CLIENT_REQUEST_IDS_H_

#include <cstdint>

#include "absl/container/btree_set.h"
#include "moonpool/envelope/correlation_id.h"

namespace moonpool::driver {

class ClientRequestIds {
 public:
  ClientRequestIds() = default;
  ClientRequestIds(const ClientRequestIds&) = delete;
  ClientRequestIds& operator=(const ClientRequestIds&) = delete;

  CorrelationIdGenerator& generator() { return ids_; }

  // Exactly-once request `id` was sent and its caller waits for its outcome.
  void AddUnsettled(CorrelationId id) { unsettled_.insert(id.value()); }
  // Its caller has its outcome or gave up: it is never sent again, so the
  // server may let its record go.
  void Settle(CorrelationId id) { unsettled_.erase(id.value()); }
  // The answeredBelow a request sent now carries: the lowest unsettled id,
  // or, when none is, the id the generator hands out next (every id below
  // it is settled).
  CorrelationId AnsweredBelow() const {
    return unsettled_.empty() ? CorrelationId(ids_.last().value() + 1)
                              : CorrelationId(*unsettled_.begin());
  }
  size_t unsettled() const { return unsettled_.size(); }

 private:
  CorrelationIdGenerator ids_;
  // Ordered, so the lowest is at hand; a btree allocates per node, not per
  // id.
  absl::btree_set<uint64_t> unsettled_;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_CLIENT_REQUEST_IDS_H_
