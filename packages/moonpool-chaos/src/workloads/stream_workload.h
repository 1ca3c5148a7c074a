// StreamWorkload, "stream": reply streams (DESIGN.md section 5, "Reply
// streams") under the random fault plan. One server host serves a
// StreamMethod whose handler writes the items a request asks for: N items
// of a drawn size, a delay per item drawn from the seed, and sometimes a
// handler error after item k. Clients on other hosts call it with small
// windows (128 B..4 KiB, smaller than a few items, so credit runs out all
// the time) and consume at drawn speeds; some destroy the stream mid-way
// (a cancel), some give it a short deadline; meanwhile the server is killed
// and restarted or closed gracefully. Then a quiet phase with every fault
// off in which each new stream must end as its handler ends it.
//
// What it is not: a benchmark of streams (see benchmarks/), or a model of a
// real service; it exists to give flow control and the stream's end every
// chance to break a promise of DESIGN.md sections 5 and 6, and to notice.
//
// Every item carries its stream, the server's attempt (handler invocation)
// that wrote it, its index and a checksum of all of it. Invariants, checked
// on every run; a broken one fails the seed with "invariant stream.<name>:":
//   stream.item_intact        an item parses, belongs to its stream and
//                             matches its checksum.
//   stream.in_order           item i arrives i-th: none duplicated, none
//                             skipped (lost while the connection lived).
//   stream.never_resent_after_item
//                             every item of a stream comes from one attempt
//                             (never sent again once an item arrived).
//   stream.at_most_once       a non-idempotent stream reaches a handler at
//                             most once.
//   stream.none_lost          an OK end comes after all N items; the
//                             handler's error after exactly its k items.
//   stream.end_kind           an end is OK, the handler's error (code and
//                             message intact), DeadlineExceeded,
//                             Unavailable or Aborted; nothing else (the
//                             workload closes no transport under a stream).
//   stream.one_end            exactly one end: Next after the end yields
//                             the same end again, never an item.
//   stream.client_buffer      the client never holds more than the window
//                             plus one item (ReplyStream::stats()
//                             .max_buffered_bytes).
//   stream.server_within_window
//                             a writer never gets a Write through while the
//                             bytes it wrote and the client has not
//                             consumed (counted by stream and attempt on
//                             both sides) already fill the window.
//   stream.transport_within_credit
//                             the transport's own Always
//                             ("protocol.stream_within_credit") never failed.
//   stream.deadline_not_early no stream ends DeadlineExceeded before the
//                             client's deadline.
//   stream.stall_is_not_close a stream that had items ends Unavailable or
//                             Aborted only in a run where a connection may
//                             have died (reset, half-close, bit flip, kill,
//                             restart, keepalive or read timeout, protocol
//                             error): none lost while the connection lived.
//   stream.write_outcome      a handler's Write yields OK, or Cancelled once
//                             the call has ended; nothing else.
//   stream.call_accepted      CallStream never fails up front.
//   stream.memory             the server's handlers running and queued,
//                             its requests in flight, and each client's
//                             pending requests stay bounded, and are back
//                             to 0 once the quiet phase is over.
//   stream.quiet_liveness     with faults off, every stream ends as its
//                             handler ends it, with all its items.
//   stream.no_hang            every phase ends within its budget.
// Coverage points (the sweep requires every "stream." one): streams ended
// stream.end.{done,error,cancel,deadline,connection_lost}, and
// stream.end.connection_lost_after_items; stream.writer_waited_for_credit
// (a writer that found the window full); stream.writer_cancelled (a Write
// that found the call ended); stream.resent_before_first_item (an
// idempotent stream a second attempt served).
//
// Ownership: a StreamWorkload holds only its options; each run builds and
// destroys its hosts, transports and tasks on the SimLoop it is given.
#ifndef MOONPOOL_CHAOS_WORKLOADS_STREAM_WORKLOAD_H_
#define MOONPOOL_CHAOS_WORKLOADS_STREAM_WORKLOAD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/chaos/workload.h"

namespace moonpool::chaos {

struct StreamWorkloadOptions {
  int clients = 3;
  int lanes_per_client = 2;  // streams open at once per client
  int streams_per_lane = 5;
  int max_items = 32;  // N is drawn in [1, max_items]
  // Each item's padding is drawn in [0, the stream's max padding], the
  // latter in [0, max_item_padding]; the header adds ~30 bytes.
  uint64_t max_item_padding = 480;
  uint64_t min_window = 128;
  uint64_t max_window = 4096;
  // Per stream: the chances that its handler fails after item k, that the
  // client cancels after item k, that its deadline is short
  // (short_deadline_min..short_deadline_max) and that it is idempotent.
  double fail_probability = 0.15;
  double cancel_probability = 0.15;
  double short_deadline_probability = 0.2;
  double idempotent_probability = 0.5;
  absl::Duration short_deadline_min = absl::Milliseconds(5);
  absl::Duration short_deadline_max = absl::Milliseconds(150);
  // Per stream: the handler's delay per item is drawn in [0, a maximum
  // drawn in [0, max_item_delay]], likewise the consumer's per item.
  absl::Duration max_item_delay = absl::Milliseconds(4);
  absl::Duration max_consume_delay = absl::Milliseconds(8);
  absl::Duration max_think = absl::Milliseconds(40);
  absl::Duration quiet_settle = absl::Seconds(5);
  absl::Duration quiet_timeout = absl::Seconds(30);
  // Virtual time a phase may take before it counts as a hang.
  absl::Duration phase_budget = absl::Seconds(300);
};

class StreamWorkload final : public Workload {
 public:
  explicit StreamWorkload(const WorkloadOptions& options = {},
                          StreamWorkloadOptions stream = {})
      : options_(options), stream_(stream) {}

  absl::string_view name() const override { return "stream"; }
  [[nodiscard]] absl::Status Simulate(WorkloadContext& ctx) override;

 private:
  WorkloadOptions options_;
  StreamWorkloadOptions stream_;
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_WORKLOADS_STREAM_WORKLOAD_H_
