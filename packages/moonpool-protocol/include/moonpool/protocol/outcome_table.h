// The server's completion records of exactly-once requests (RIFL, SOSP
// 2015): the outcome of each request marked exactly-once, keyed by (the
// client's Hello incarnation, correlation id), kept until the client settles
// it (answeredBelow) or a bound or time forgets it, so that a request sent
// again after its connection died is answered from the record instead of
// running twice (DESIGN.md section 5, "Exactly-once").
//
// What it is not: it runs nothing and sends nothing. It does no I/O, reads no
// clock (time comes in as arguments) and starts no thread. The server
// transport owns one table for all its connections; it calls Settle for every
// request that carries answeredBelow, Arrive for every request marked
// exactly-once, Complete when a handler finishes and Abandon when a request is
// dropped before any handler took it; it answers what the table tells it to
// (the table never sees a connection, only the opaque `waiter` numbers the
// transport gives it). The table owns the recorded outcomes.
//
//   OutcomeTable table(options);
//   table.Settle(incarnation, answered_below, now);
//   OutcomeTable::Arrival a = table.Arrive(incarnation, id, deadline,
//                                          connection_id, now);
//   switch (a.verdict) {
//     case Verdict::kNew:       run the handler; later Complete (or Abandon)
//     case Verdict::kRunning:   nothing now: Complete returns this waiter
//     case Verdict::kCompleted: answer with a.code / a.bytes at once
//     case Verdict::kForgotten: answer Aborted "outcome forgotten, maybe
//                               delivered", run nothing
//     case Verdict::kRefused:   answer ResourceExhausted, run nothing
//   }
//   for (uint64_t w : table.Complete(incarnation, id, code, bytes, now))
//     answer the duplicate that waits on connection w;
//   table.AdvanceTime(now);  // when now >= table.NextWakeup()
//
// Bounds. Every record counts against them, running or completed, with
// bytes = its outcome's size + kRecordOverheadBytes. When a bound is exceeded
// after a new record or a completion, completed records are forgotten, the
// client's lowest id first, until the table is within the bound or no
// completed record is left: running records are bounded by the server's
// in-flight limits and never dropped by a bound. For the total bounds the
// victim is the client holding the most (records for the count bound, bytes
// for the byte bound; ties: the lowest incarnation), found by a linear scan
// over the clients: the scan runs only while a total bound is exceeded, and
// there are at most max_clients of them. The defaults:
//   - max_records_per_client 16384: 64 x a Peer's usual in-flight window
//     of 256 requests (and 4 x its hard queue bound, max_queued_requests
//     4096), so a client can leave many windows unsettled while its
//     answeredBelow lags behind; max_bytes_per_client 16 MiB: the same
//     count of replies of about 1 KiB;
//   - max_records 262144 and max_bytes 256 MiB bound the server whatever
//     the clients do (16 full clients);
//   - max_clients 4096: client incarnations with an entry; a new one past
//     it is refused (ResourceExhausted) rather than evicting another's marks;
//   - min_lifetime 60 s: twice the default 30 s request deadline, so a
//     record outlives every default deadline; longer deadlines are covered
//     because a record also lives until its own deadline.
// A forgotten record raises its client's forgotten mark: a later request
// with an id at or below it is answered Aborted, never run (it may have run).
//
// Lifetime. A record that is not settled lives at least until its request's
// deadline and at least min_lifetime after it completed; a running record
// until min_lifetime after its deadline (or after it arrived, when it had no
// deadline: a default-queue request the application never answered must not
// leak). AdvanceTime drops what is past that (raising the forgotten mark),
// sweeping every record at most every min_lifetime / 4. A client entry with
// no records goes once its latest deadline and min_lifetime after its last
// arrival have passed: no resend can come after its deadline.
//
// Determinism: nothing observable depends on the hash order of the clients
// (victims are chosen by size, ties by incarnation), so a simulation replays.
// Not thread-safe: one owner, one thread.
#ifndef MOONPOOL_PROTOCOL_OUTCOME_TABLE_H_
#define MOONPOOL_PROTOCOL_OUTCOME_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"

namespace moonpool::protocol {

struct OutcomeTableOptions {
  size_t max_records_per_client = 16384;
  size_t max_bytes_per_client = size_t{16} << 20;
  size_t max_records = 262144;
  size_t max_bytes = size_t{256} << 20;
  size_t max_clients = 4096;
  absl::Duration min_lifetime = absl::Seconds(60);
};

struct OutcomeTableStats {
  // Counters.
  uint64_t recorded = 0;              // outcomes recorded by Complete
  uint64_t duplicates_running = 0;    // Arrive: kRunning
  uint64_t duplicates_completed = 0;  // Arrive: kCompleted
  uint64_t forgotten_answers = 0;     // Arrive: kForgotten
  uint64_t settled = 0;               // records dropped by answeredBelow
  uint64_t forgotten_by_bound = 0;    // completed records dropped by a bound
  uint64_t forgotten_by_time = 0;     // records dropped by AdvanceTime
  uint64_t abandoned = 0;             // running records dropped by Abandon
  uint64_t clients_refused = 0;       // Arrive: kRefused
  // Gauges, current at every call.
  uint64_t records = 0;  // running and completed
  uint64_t running = 0;
  uint64_t bytes = 0;  // outcome bytes + kRecordOverheadBytes per record
  uint64_t clients = 0;
};

class OutcomeTable {
 public:
  // What a record costs besides its outcome's bytes, counted against the
  // byte bounds. Measured (benchmarks/README.md, "Exactly-once"): with 64 B
  // replies the server's heap grows about 219 bytes per unsettled record,
  // so about 155 beyond the outcome (the record in its slab, its btree slot,
  // the outcome string's own heap block and the containers' growth slack).
  // A fixed number, so the accounting does not depend on the standard
  // library; rounded up so that the byte bounds hold in real memory.
  static constexpr size_t kRecordOverheadBytes = 160;

  enum class Verdict { kNew, kRunning, kCompleted, kForgotten, kRefused };

  struct Arrival {
    Verdict verdict = Verdict::kNew;
    // kCompleted: the recorded outcome: code kOk = a reply whose payload is
    // `bytes`, else an error reply with that code and message `bytes`.
    // Views valid until the next non-const call.
    absl::StatusCode code = absl::StatusCode::kOk;
    absl::string_view bytes;
  };

  explicit OutcomeTable(OutcomeTableOptions options = {});

  OutcomeTable(const OutcomeTable&) = delete;
  OutcomeTable& operator=(const OutcomeTable&) = delete;
  OutcomeTable(OutcomeTable&&) = default;
  OutcomeTable& operator=(OutcomeTable&&) = default;

  // The client says every id below `below` is settled: its completed records
  // with id < below go (counted `settled`) and a later request with such an
  // id is answered kForgotten. The mark only moves up; an invalid `below`
  // does nothing. A client without an entry gets none (it has no records to
  // drop). A record below the mark that is still running stays until it
  // completes, so the duplicates waiting on it are answered: Complete then
  // returns them, records nothing and counts it settled.
  void Settle(uint64_t client, CorrelationId below, absl::Time now);

  // A request marked exactly-once arrived (after its Settle). `deadline` is
  // its deadline on the server's clock (InfiniteFuture() when it carried
  // none); `waiter` is an opaque number the caller names where the request
  // came from (its connection id). The verdict:
  //   kRunning   a record is running: `waiter` waits for it (Complete
  //              returns it); the record lives until the later deadline;
  //   kCompleted the recorded outcome, in `code` and `bytes`;
  //   kForgotten no record, and the id is below the client's settled mark or
  //              at or below its forgotten mark: answer Aborted, run nothing;
  //   kNew       a running record is made: run the handler, then Complete
  //              (or Abandon); `waiter` is not stored (the caller answers
  //              the request it runs itself);
  //   kRefused   a new client when max_clients entries exist: answer
  //              ResourceExhausted, nothing made.
  Arrival Arrive(uint64_t client, CorrelationId id, absl::Time deadline,
                 uint64_t waiter, absl::Time now);

  // The handler of a kNew request finished: code kOk and the reply payload
  // `bytes`, or an error code and its message. Records it and returns the
  // waiters of its duplicates (kRunning arrivals), in arrival order, for the
  // caller to answer too; empty when there were none. If the record is gone
  // (settled, forgotten, abandoned) or already completed, records nothing and
  // returns empty. Then applies the bounds (the new record may be the one
  // forgotten: its waiters are returned all the same).
  std::vector<uint64_t> Complete(uint64_t client, CorrelationId id,
                                 absl::StatusCode code, absl::string_view bytes,
                                 absl::Time now);

  // The request was dropped before any handler ran (cancelled while queued,
  // or its deadline passed first): its running record goes with no mark, so
  // a resend runs it. Its waiters are dropped too, and returned (in arrival
  // order) so that the caller forgets those duplicates as well: their
  // client has given up on them too. A completed or unknown record is left
  // alone (empty).
  std::vector<uint64_t> Abandon(uint64_t client, CorrelationId id);

  // Drops the records and client entries whose lifetime has passed (see
  // the file comment), at most once every min_lifetime / 4.
  void AdvanceTime(absl::Time now);

  // When AdvanceTime next has work; InfiniteFuture() when the table is
  // empty.
  absl::Time NextWakeup() const { return next_sweep_; }

  const OutcomeTableStats& stats() const { return stats_; }

 private:
  // Records live in a slab (slab_, reused through free_) and the per-client
  // btree maps id -> slab index: 16-byte btree slots keep its nodes full
  // (~15 per node instead of 2 with the record inline), which took ~20% off
  // Settle + Arrive + Complete (the insert and erase every exactly-once
  // request makes). The slab keeps its high-water size (the records, and
  // the storage of outcomes up to kKeptOutcomeBytes).
  struct Record {
    // The latest finite deadline of its arrivals (InfinitePast: none).
    absl::Time deadline = absl::InfinitePast();
    // When AdvanceTime may drop it.
    absl::Time expires;
    std::string bytes;              // the outcome, once completed
    std::vector<uint64_t> waiters;  // duplicates, while running
    absl::StatusCode code = absl::StatusCode::kOk;
    bool completed = false;
  };
  // Outcome storage up to this size stays with a freed slot (Erase).
  static constexpr size_t kKeptOutcomeBytes = 128;
  using Records = absl::btree_map<uint64_t, uint32_t>;
  struct Client {
    Records records;
    uint64_t settled = 0;    // ids below it are settled
    uint64_t forgotten = 0;  // ids at or below it may have been forgotten
    // Every completed record has an id >= this (a hint for the bounds,
    // which forget the lowest completed id first).
    uint64_t completed_from = UINT64_MAX;
    size_t running = 0;
    size_t bytes = 0;
    // Its latest finite deadline and min_lifetime after its last arrival.
    absl::Time keep_until = absl::InfinitePast();
  };

  Record& RecordOf(Records::iterator it) { return slab_[it->second]; }
  // A fresh running record's slab index.
  uint32_t NewRecord();
  // Removes `it` of `c`, keeping the accounting.
  Records::iterator Erase(Client& c, Records::iterator it);
  // Forgets the lowest completed record of `c`; false when it has none.
  bool ForgetLowestCompleted(Client& c);
  void ApplyBounds(Client& c);
  void ApplyTotalBounds();

  OutcomeTableOptions options_;
  absl::Duration sweep_period_;
  absl::flat_hash_map<uint64_t, Client> clients_;
  absl::Time next_sweep_ = absl::InfiniteFuture();
  OutcomeTableStats stats_;
  std::vector<Record> slab_;
  std::vector<uint32_t> free_;
};

}  // namespace moonpool::protocol

#endif  // MOONPOOL_PROTOCOL_OUTCOME_TABLE_H_
