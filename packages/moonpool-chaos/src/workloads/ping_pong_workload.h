// PingPongWorkload, "pingpong": several clients and several servers, each
// on its own simulated host; clients send a mix of idempotent,
// non-idempotent and (in most runs) exactly-once requests (the payload
// carries the client id, sequence and mode),
// some asking the handler for an error reply, and one-way messages, while
// servers are restarted, gracefully (Close(drain)) and abruptly (KillHost,
// then a new incarnation); then a quiet phase with every fault off in which
// each new request, error reply and one-way message must get through.
//
// What it is not: a benchmark (see sim_benchmark) or a model of a real
// service; it exists to give the transport every chance to break a promise
// of DESIGN.md section 6, and to notice when it does.
//
// Invariants, checked on every run; a broken one fails the seed with
// "invariant <name>: ..." (the planted-bug ctests match these names):
//   one_outcome               every request ends in exactly one outcome.
//   outcome_kind              ...of a kind section 6 allows: the reply, the
//                             handler's error reply, DeadlineExceeded,
//                             Unavailable, Aborted. Cancelled is a
//                             violation: the workload cancels nothing and
//                             closes no client before its outcomes are in.
//   reply_matches_request     a reply carries its own request's identity
//                             (client, sequence, the server asked).
//   reply_implies_processed   a reply or error reply came from a handler
//                             that got the request.
//   error_reply.intact        a request that asked for an error reply gets
//                             that code and message (or a transport
//                             outcome), never a plain reply; one that did
//                             not ask never gets a handler's code.
//   at_most_once              a non-idempotent request is processed at most
//                             once (the record lives in the workload, so it
//                             survives a server's death).
//   exactly_once.ran_at_most_once
//                             an exactly-once request's handler runs at most
//                             once, counted per (client incarnation,
//                             correlation id) as the server sees it, across
//                             servers and incarnations.
//   exactly_once.aborted_only_if_lost
//                             an exactly-once request ends Aborted only when
//                             its server restarted while it was outstanding
//                             (the server slot has a new incarnation, or the
//                             client's Peer shook hands with another one), or
//                             with "outcome forgotten" from a server that
//                             forgot records by a bound or lifetime.
//   exactly_once.reply_intact the reply of an exactly-once request, first or
//                             sent again from the record, is its handler's:
//                             it names the incarnation that ran it.
//   exactly_once.flag_intact  the handler sees the flag the client set.
//   idempotent_not_aborted    idempotent requests are sent again, never
//                             Aborted.
//   deadline.propagated       the deadline a handler sees is the client's,
//                             later by at most the request's time in
//                             transit: the budget travels, and shrinks.
//   stall_is_not_close        Aborted only when something that may lose a
//                             connection happened (reset, half-close, bit
//                             flip, kill, restart, keepalive timeout,
//                             protocol error): a stall is not a close.
//   one_way.accepted          Send refuses a one-way only with
//                             ResourceExhausted, and never in the quiet
//                             phase.
//   one_way.at_most_once      a one-way message reaches a handler at most
//                             once.
//   one_way.delivered         one is lost only where a connection may have
//                             died (as for stall_is_not_close), and never
//                             in the quiet phase.
//   payload.intact            a handler gets only payloads a client sent.
//   memory.peer_queue, memory.server, memory.peer_drained
//                             bounded client and server queues, and nothing
//                             left pending at the end.
//   quiet_liveness            with faults off, every request gets the
//                             handler's answer.
//   no_hang                   every phase ends within its virtual-time
//                             budget.
// Coverage points (a sweep requires each to be reached): outcome.* for each
// outcome kind (outcome.error_reply included), one_way.delivered,
// restart.graceful, restart.abrupt; exactly_once.reply, and from the
// servers' and peers' counters: a duplicate of a running and of a completed
// request answered from the record (exactly_once.duplicate_running,
// duplicate_completed), a forgotten record answered
// (exactly_once.forgotten_answered), a request sent again with its id
// (exactly_once.resent).
//
// Exactly-once is a swarm switch drawn from a fork of the seed's source (so
// the other draws are what they were): on in 3 runs of 4, for a share of
// 30..100% of the non-idempotent requests (and the quiet phase's plain
// request); small record bounds (1..2 per client, 1..4 in all) in 40% of
// those runs, so records are forgotten; where the plan resets connections,
// 60% of them reset 1..5% of segments and restart servers 3x less often
// (resends need a lost connection to a server that lives on), and half of
// them have slower handlers (60% sleep up to 200 ms), so that resends find
// their original running.
//
// Ownership: a PingPongWorkload holds only its options; each Run builds and
// destroys its hosts, transports and tasks on the SimLoop it is given.
#ifndef MOONPOOL_CHAOS_WORKLOADS_PING_PONG_WORKLOAD_H_
#define MOONPOOL_CHAOS_WORKLOADS_PING_PONG_WORKLOAD_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/chaos/workload.h"

namespace moonpool::chaos {

struct PingPongOptions {
  int clients = 3;
  int servers = 2;
  int lanes_per_client = 2;  // requests in flight per client
  int requests_per_lane = 8;
  // Per request: the chance that it asks the handler for an error reply,
  // and that a one-way message to a random server goes before it.
  double error_reply_probability = 0.15;
  double one_way_probability = 0.25;
  // Per request: the chance that its handler takes a while (up to
  // max_handler_delay), so that restarts and goodbyes find requests in
  // flight and answers leave out of order.
  double slow_handler_probability = 0.25;
  absl::Duration max_handler_delay = absl::Milliseconds(20);
  absl::Duration max_think = absl::Milliseconds(40);
  absl::Duration quiet_settle = absl::Seconds(5);
  absl::Duration quiet_timeout = absl::Seconds(20);
  // Virtual time a phase may take before it counts as a hang.
  absl::Duration phase_budget = absl::Seconds(300);
};

class PingPongWorkload final : public Workload {
 public:
  explicit PingPongWorkload(const WorkloadOptions& options = {},
                            PingPongOptions pingpong = {})
      : options_(options), pingpong_(pingpong) {}
  absl::string_view name() const override { return "pingpong"; }
  absl::Status Run(SimLoop& sim, WorkloadStats& stats) override;

 private:
  WorkloadOptions options_;
  PingPongOptions pingpong_;
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_WORKLOADS_PING_PONG_WORKLOAD_H_
