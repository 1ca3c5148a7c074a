// PingPongWorkload, "pingpong": several clients and several servers, each
// on its own simulated host; clients send a mix of idempotent and
// non-idempotent requests (the payload carries the client id and sequence)
// while servers are restarted, gracefully (Close(drain)) and abruptly
// (KillHost, then a new incarnation); then a quiet phase with every fault
// off in which each new request must succeed.
//
// Invariants, checked on every run: every request ends in exactly one
// outcome, of a kind DESIGN.md section 6 allows; a reply carries its own
// request's identity; a non-idempotent request is processed at most once
// (the record lives in the workload, so it survives a server's death);
// idempotent requests are never Aborted; Aborted only when something that
// may lose a connection happened (reset, half-close, bit flip, kill,
// restart, keepalive timeout): a stall is not a close; bounded client and
// server queues; quiet-phase liveness; no hang.
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
