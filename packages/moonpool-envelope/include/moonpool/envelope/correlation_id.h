// CorrelationId names one request of one client Peer, and the reply that
// answers it. CorrelationIdGenerator hands them out.
//
// An id is a strong type over a 64-bit integer so that it cannot be confused
// with an endpoint token, a connection id or a byte count. The value 0 means
// "no id" (a one-way message carries it); real ids start at 1 and only grow.
//
// The generator belongs to whoever sends requests (one per client Peer, kept
// across reconnects): because an id is never handed out twice, a reply that
// arrives late, even on a new connection, can never be matched to the wrong
// request. This is FoundationDB's and moonpool's rule; see DESIGN.md section 5.
//
// Example:
//
//   moonpool::CorrelationIdGenerator ids;
//   moonpool::CorrelationId first = ids.Next();   // 1
//   moonpool::CorrelationId second = ids.Next();  // 2
//   assert(first < second);
//
// Neither type is thread-safe; like everything bound to a loop, a generator is
// used from one thread.
#ifndef MOONPOOL_ENVELOPE_CORRELATION_ID_H_
#define MOONPOOL_ENVELOPE_CORRELATION_ID_H_

#include <compare>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"

namespace moonpool {

class CorrelationId {
 public:
  // The "no id" value, carried by one-way messages.
  constexpr CorrelationId() = default;
  constexpr explicit CorrelationId(uint64_t value) : value_(value) {}

  constexpr uint64_t value() const { return value_; }
  // True for every id a generator hands out; false for the "no id" value 0.
  constexpr bool valid() const { return value_ != 0; }

  friend constexpr auto operator<=>(CorrelationId, CorrelationId) = default;

  template <typename H>
  friend H AbslHashValue(H h, CorrelationId id) {
    return H::combine(std::move(h), id.value_);
  }
  // "#<value>", for messages and logs. Not load bearing: do not parse it.
  std::string ToString() const { return absl::StrCat("#", value_); }
  friend std::ostream& operator<<(std::ostream& os, CorrelationId id) {
    return os << '#' << id.value_;
  }

 private:
  uint64_t value_ = 0;
};

// Hands out increasing correlation ids starting at 1 and never repeats one.
class CorrelationIdGenerator {
 public:
  CorrelationIdGenerator() = default;

  // The next id. After 2^64 - 1 ids the space is exhausted; no program sends
  // that many requests (at 10^9 a second it takes 584 years), and the
  // generator aborts rather than wrap and reuse an id.
  CorrelationId Next() {
    if (last_ == std::numeric_limits<uint64_t>::max()) __builtin_trap();
    return CorrelationId(++last_);
  }

  // The id most recently handed out, or CorrelationId() before the first.
  CorrelationId last() const { return CorrelationId(last_); }

 private:
  uint64_t last_ = 0;
};

}  // namespace moonpool

#endif  // MOONPOOL_ENVELOPE_CORRELATION_ID_H_
