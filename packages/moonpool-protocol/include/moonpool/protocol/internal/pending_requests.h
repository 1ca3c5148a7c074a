// The table of requests a Connection has sent and not yet seen answered:
// lookup by correlation id, and the earliest deadline first.
//
// Not API. Hand-written because no library at hand has an indexed heap (a
// heap whose entries can be removed from the middle): std::priority_queue
// can only remove lazily, which keeps every answered request until its
// deadline passes (30 s x 10^6 requests/s of garbage), and absl::btree_set
// allocates nodes as it goes. This one allocates only while it grows past
// its largest size so far.
//
// Iteration order never depends on hashing: TakeAll returns requests by id,
// so that a simulation replays the same events for the same seed.
#ifndef MOONPOOL_PROTOCOL_INTERNAL_PENDING_REQUESTS_H_
#define MOONPOOL_PROTOCOL_INTERNAL_PENDING_REQUESTS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"

namespace moonpool::protocol::internal {

struct PendingRequest {
  CorrelationId id;
  absl::Time deadline;
  // Output stream offset just past the request's frame: it is written once
  // the driver has consumed this many bytes.
  uint64_t end_offset = 0;
  bool idempotent = false;
  // A reply stream's credit (0: one reply), and the payload bytes of items
  // received and not yet granted back (GrantCredit).
  uint64_t stream_credit = 0;
  uint64_t outstanding = 0;
  // Written with exactlyOnce on a version 2 connection.
  bool exactly_once = false;
};

class PendingRequests {
 public:
  size_t size() const { return by_id_.size(); }
  bool empty() const { return by_id_.empty(); }

  // REQUIRES: no pending request has r.id.
  void Add(const PendingRequest& r);
  // The request with `id`, if pending; valid until the next change. Only
  // the stream fields may be changed through it.
  PendingRequest* Find(CorrelationId id);
  // Removes and returns the request with `id`, if pending.
  std::optional<PendingRequest> Remove(CorrelationId id);
  // The earliest deadline; InfiniteFuture() when empty.
  absl::Time EarliestDeadline() const;
  // Removes and returns a request whose deadline is at or before `now`, the
  // earliest first (ties: the lower id).
  std::optional<PendingRequest> PopExpired(absl::Time now);
  // Removes and returns every request, by increasing id.
  std::vector<PendingRequest> TakeAll();

 private:
  struct Slot {
    PendingRequest request;
    size_t heap_index = 0;
  };

  bool Before(size_t a, size_t b) const;  // heap order of two heap positions
  void SwapHeap(size_t i, size_t j);
  void SiftUp(size_t i);
  void SiftDown(size_t i);
  void RemoveSlot(size_t slot);

  std::vector<Slot> slots_;
  std::vector<size_t> free_slots_;
  std::vector<size_t> heap_;  // slot indices, earliest deadline at [0]
  absl::flat_hash_map<uint64_t, size_t> by_id_;
};

}  // namespace moonpool::protocol::internal

#endif  // MOONPOOL_PROTOCOL_INTERNAL_PENDING_REQUESTS_H_
