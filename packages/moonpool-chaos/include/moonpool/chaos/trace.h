// Trace is a simulation's event log: every decision and event SimLoop makes
// is appended as a fixed-size record. It keeps a running 64-bit hash of the
// whole log, the last `tail_size` records in a ring, and, when asked, every
// record (for finding the first event where two runs of one seed diverge).
//
// Two runs of one seed must produce the same hash; that is the determinism
// check. The hash covers the records' numbers only, never the text form, so
// ToString's format is not load bearing.
//
// Example:
//
//   Trace trace({.tail_size = 128});
//   trace.Record(now, TraceKind::kTimerFired, timer_id);
//   uint64_t h = trace.hash();
//   for (const TraceEvent& e : trace.Tail()) std::cout << e.ToString() << "\n";
#ifndef MOONPOOL_CHAOS_TRACE_H_
#define MOONPOOL_CHAOS_TRACE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace moonpool::chaos {

// What happened. Numbers are stable: they feed the hash.
enum class TraceKind : uint16_t {
  kTimerFired = 1,       // a = timer id
  kPostRun = 2,          // a = posts run in the batch
  kTurnEnd = 3,          // a = handlers run
  kRandom = 4,           // a = value handed to Loop::Random
  kListen = 10,          // a = host id, b = port
  kListenClosed = 11,    // a = host id, b = port
  kConnect = 12,         // a = connection id, b = dst host, c = dst port
  kAccept = 13,          // a = connection id
  kConnected = 14,       // a = connection id
  kConnectFailed = 15,   // a = connection id
  kWrite = 20,           // a = conn*2+dir, b = bytes taken at once, c = queued
  kDrain = 21,           // a = conn*2+dir, b = bytes moved from queue to kernel
  kSegmentSent = 22,     // a = conn*2+dir, b = bytes, c = arrival ns
  kSegmentArrived = 23,  // a = conn*2+dir, b = bytes
  kRead = 24,            // a = conn*2+dir, b = bytes
  kFinSent = 25,         // a = conn*2+dir
  kEof = 26,             // a = conn*2+dir
  kShutdown = 27,        // a = conn*2+dir
  kClose = 28,           // a = conn*2+side
  kReadError = 29,       // a = conn*2+side
  kWriteError = 30,      // a = conn*2+side
  kFaultStall = 40,      // a = connection id, b = directions mask, c = ns
  kFaultReset = 41,      // a = connection id
  kFaultHalfClose = 42,  // a = conn*2+dir
  kFaultRefuse = 43,     // a = connection id
  kFaultHang = 44,       // a = connection id
  kFaultPartialWrite = 45,   // a = conn*2+dir, b = taken, c = offered
  kFaultShortRead = 46,      // a = conn*2+dir, b = delivered, c = available
  kFaultBitFlip = 47,        // a = conn*2+dir, b = stream offset, c = mask
  kFaultResolveFailed = 48,  // a = resolution id
  kFaultResolveSlow = 49,    // a = resolution id, b = ns
  kHostKilled = 50,          // a = host id
  kHostRestarted = 51,       // a = host id
  kBuggify = 60,             // a = hash of the site name, b = fired
  kTlsRandom = 61,  // a = bytes handed to OpenSSL (Loop::FillTlsRandom)
  kResolve = 70,    // a = resolution id, b = hash of the name, c = host
  kResolved = 71,   // a = resolution id, b = addresses (0: failed)
  kUser = 100,      // a, b, c: the caller's (SimLoop::TraceUser)
};

absl::string_view TraceKindName(TraceKind kind);

struct TraceEvent {
  uint64_t index = 0;   // position in the full trace, from 0
  int64_t time_ns = 0;  // virtual time since the simulation's start
  TraceKind kind = TraceKind::kUser;
  uint64_t a = 0, b = 0, c = 0;

  // "#12 t=0.000350s segment_sent a=4 b=120 c=..." (not load bearing).
  std::string ToString() const;
  friend bool operator==(const TraceEvent&, const TraceEvent&) = default;
};

struct TraceOptions {
  size_t tail_size = 256;
  // Keep every record (memory grows with the run): for divergence reports.
  bool keep_full = false;
};

class Trace {
 public:
  explicit Trace(TraceOptions options = {});

  void Record(int64_t time_ns, TraceKind kind, uint64_t a = 0, uint64_t b = 0,
              uint64_t c = 0);

  // Hash of every record so far; changes with each Record.
  uint64_t hash() const { return hash_; }
  uint64_t size() const { return count_; }
  // The last min(size(), tail_size) records, oldest first.
  std::vector<TraceEvent> Tail() const;
  // Every record, when keep_full was set; empty otherwise.
  const std::vector<TraceEvent>& full() const { return full_; }
  bool keeps_full() const { return options_.keep_full; }

 private:
  TraceOptions options_;
  uint64_t hash_;
  uint64_t count_ = 0;
  std::vector<TraceEvent> ring_;  // ring_[count_ % tail_size] is next
  std::vector<TraceEvent> full_;
};

// The index of the first record where `a` and `b` differ (by content), or
// -1 if one is a prefix of the other and they are the same length.
int64_t FirstDivergence(const std::vector<TraceEvent>& a,
                        const std::vector<TraceEvent>& b);

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_TRACE_H_
