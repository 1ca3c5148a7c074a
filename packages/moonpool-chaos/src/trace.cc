#include "moonpool/chaos/trace.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace moonpool::chaos {
namespace {

// Each 64-bit word folded in with one multiply (the FNV-1a shape on whole
// words, not bytes: a byte-wise FNV took a sixth of a simulated round
// trip), then a splitmix finaliser per record: cheap, and fixed by this
// file (no dependence on a library's hash seed).
constexpr uint64_t kMixMultiplier = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kHashStart = 0xCBF29CE484222325ull;  // any fixed value

uint64_t MixWord(uint64_t h, uint64_t w) {
  h = (h ^ w) * kMixMultiplier;
  return h ^ (h >> 29);
}

uint64_t Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

absl::string_view TraceKindName(TraceKind kind) {
  switch (kind) {
    case TraceKind::kTimerFired:
      return "timer_fired";
    case TraceKind::kPostRun:
      return "post_run";
    case TraceKind::kTurnEnd:
      return "turn_end";
    case TraceKind::kRandom:
      return "random";
    case TraceKind::kListen:
      return "listen";
    case TraceKind::kListenClosed:
      return "listen_closed";
    case TraceKind::kConnect:
      return "connect";
    case TraceKind::kAccept:
      return "accept";
    case TraceKind::kConnected:
      return "connected";
    case TraceKind::kConnectFailed:
      return "connect_failed";
    case TraceKind::kWrite:
      return "write";
    case TraceKind::kDrain:
      return "drain";
    case TraceKind::kSegmentSent:
      return "segment_sent";
    case TraceKind::kSegmentArrived:
      return "segment_arrived";
    case TraceKind::kRead:
      return "read";
    case TraceKind::kFinSent:
      return "fin_sent";
    case TraceKind::kEof:
      return "eof";
    case TraceKind::kShutdown:
      return "shutdown";
    case TraceKind::kClose:
      return "close";
    case TraceKind::kReadError:
      return "read_error";
    case TraceKind::kWriteError:
      return "write_error";
    case TraceKind::kFaultStall:
      return "fault.stall";
    case TraceKind::kFaultReset:
      return "fault.reset";
    case TraceKind::kFaultHalfClose:
      return "fault.half_close";
    case TraceKind::kFaultRefuse:
      return "fault.connect_refused";
    case TraceKind::kFaultHang:
      return "fault.connect_hang";
    case TraceKind::kFaultPartialWrite:
      return "fault.partial_write";
    case TraceKind::kFaultShortRead:
      return "fault.short_read";
    case TraceKind::kFaultBitFlip:
      return "fault.bit_flip";
    case TraceKind::kFaultResolveFailed:
      return "fault.resolve_failed";
    case TraceKind::kFaultResolveSlow:
      return "fault.resolve_slow";
    case TraceKind::kResolve:
      return "resolve";
    case TraceKind::kResolved:
      return "resolved";
    case TraceKind::kHostKilled:
      return "host_killed";
    case TraceKind::kHostRestarted:
      return "host_restarted";
    case TraceKind::kBuggify:
      return "buggify";
    case TraceKind::kTlsRandom:
      return "tls_random";
    case TraceKind::kUser:
      return "user";
  }
  return "unknown";
}

std::string TraceEvent::ToString() const {
  return absl::StrFormat("#%d t=%.6fs %s a=%d b=%d c=%d", index,
                         static_cast<double>(time_ns) * 1e-9,
                         TraceKindName(kind), a, b, c);
}

Trace::Trace(TraceOptions options) : options_(options), hash_(kHashStart) {
  ring_.reserve(options_.tail_size);
}

void Trace::Record(int64_t time_ns, TraceKind kind, uint64_t a, uint64_t b,
                   uint64_t c) {
  TraceEvent e{count_, time_ns, kind, a, b, c};
  uint64_t h = hash_;
  h = MixWord(h, static_cast<uint64_t>(time_ns));
  h = MixWord(h, static_cast<uint64_t>(kind));
  h = MixWord(h, a);
  h = MixWord(h, b);
  h = MixWord(h, c);
  hash_ = Finalize(h);
  if (options_.tail_size > 0) {
    if (ring_.size() < options_.tail_size) {
      ring_.push_back(e);
    } else {
      ring_[count_ % options_.tail_size] = e;
    }
  }
  if (options_.keep_full) full_.push_back(e);
  ++count_;
}

std::vector<TraceEvent> Trace::Tail() const {
  std::vector<TraceEvent> out;
  if (ring_.size() < options_.tail_size || options_.tail_size == 0) {
    out = ring_;
    return out;
  }
  out.reserve(ring_.size());
  const size_t start = count_ % options_.tail_size;
  for (size_t i = 0; i < ring_.size(); ++i) {
    out.push_back(ring_[(start + i) % ring_.size()]);
  }
  return out;
}

int64_t FirstDivergence(const std::vector<TraceEvent>& a,
                        const std::vector<TraceEvent>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (!(a[i] == b[i])) return static_cast<int64_t>(i);
  }
  if (a.size() != b.size()) return static_cast<int64_t>(n);
  return -1;
}

}  // namespace moonpool::chaos
