// "echo": a client host sends requests to a server host that echoes them,
// under the seed's faults; then the faults stop and one more request must
// succeed. Invariants: a reply is its request's payload; a request that
// fails does so with DeadlineExceeded, Unavailable or Aborted; the quiet
// request succeeds; no hang (60 s of virtual time).
#include "echo_workload.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/chaos/workload.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

// The program's own flags, next to the runner's on its command line.
ABSL_FLAG(int, echo_requests, 20, "requests in the chaos phase");
ABSL_FLAG(double, echo_corrupt_probability, 0,
          "test only: the server corrupts a reply with this probability "
          "(a planted bug for the sweep to catch)");

namespace echo {
namespace {

using moonpool::chaos::SimLoop;
using moonpool::chaos::Sometimes;
using moonpool::chaos::WorkloadContext;
using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::transport::ClientTransport;
using moonpool::transport::IncomingMessage;
using moonpool::transport::RequestOptions;
using moonpool::transport::ServerTransport;

using Outcome = std::optional<absl::StatusOr<std::string>>;

Task<void> Serve(ServerTransport& server, SimLoop& sim, double corrupt) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    std::string reply = m->envelope.payload;
    // Every random choice comes from the simulation, so a seed replays it.
    if (corrupt > 0 && sim.random_source().Bernoulli(corrupt)) reply += "!";
    // A reply to a dead connection fails; its client sees the outcome.
    (void)server.Reply(*m, reply);
  }
}

Task<void> Call(ClientTransport& client, Address to, std::string payload,
                Outcome* out) {
  out->emplace(co_await client.Request<std::string>(
      to, std::move(payload), RequestOptions::Timeout(absl::Seconds(2))));
}

// OK if `outcome` is an allowed end of the request that sent `payload`.
absl::Status CheckOutcome(const absl::StatusOr<std::string>& outcome,
                          const std::string& payload) {
  if (outcome.ok()) {
    if (*outcome == payload) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("invariant echo.reply_matches: '",
                                            payload, "' got '", *outcome, "'"));
  }
  if (absl::IsDeadlineExceeded(outcome.status()) ||
      absl::IsUnavailable(outcome.status()) ||
      absl::IsAborted(outcome.status())) {
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat("invariant echo.outcome_kind: '",
                                          payload, "' ended ",
                                          outcome.status().ToString()));
}

class EchoWorkload final : public moonpool::chaos::Workload {
 public:
  EchoWorkload(int requests, double corrupt)
      : requests_(requests), corrupt_(corrupt) {}

  absl::string_view name() const override { return "echo"; }

  absl::Status Simulate(WorkloadContext& ctx) override {
    SimLoop& sim = ctx.sim();
    moonpool::chaos::SimHost& server_host = **sim.AddHost("10.0.0.2");
    moonpool::chaos::SimHost& client_host = **sim.AddHost("10.0.0.3");
    const Address address = server_host.Addr(4500);
    absl::StatusOr<std::unique_ptr<ServerTransport>> server =
        ServerTransport::Bind(server_host, address);
    if (!server.ok()) return server.status();
    ClientTransport client(client_host);
    absl::Status task_error;
    auto on_error = [&](absl::Status s) {
      if (task_error.ok()) task_error = s;
    };
    TaskScope server_tasks(server_host, on_error);
    TaskScope client_tasks(client_host, on_error);
    server_tasks.Spawn(Serve(**server, sim, corrupt_));

    // The chaos phase: every request ends in exactly one allowed outcome.
    std::vector<Outcome> outcomes(requests_);
    for (int i = 0; i < requests_; ++i) {
      client_tasks.Spawn(
          Call(client, address, absl::StrCat("echo ", i), &outcomes[i]));
    }
    auto settled = [&] {
      for (const Outcome& o : outcomes) {
        if (!o.has_value()) return false;
      }
      return true;
    };
    absl::Status verdict;
    if (!sim.RunUntil(settled, ctx.start() + absl::Seconds(60))) {
      verdict = absl::DeadlineExceededError(
          absl::StrCat("invariant echo.no_hang: requests pending after ",
                       absl::FormatDuration(ctx.Elapsed())));
    }
    for (int i = 0; i < requests_ && verdict.ok(); ++i) {
      if (!outcomes[i].has_value()) continue;
      Sometimes(outcomes[i]->ok(), "echo.reply");
      Sometimes(!outcomes[i]->ok(), "echo.error");
      if (outcomes[i]->ok()) ++ctx.stats().round_trips;
      verdict = CheckOutcome(*outcomes[i], absl::StrCat("echo ", i));
    }
    ctx.stats().requests = requests_;

    // The quiet phase: faults off, what they held released, then one
    // request must succeed.
    if (verdict.ok()) {
      sim.set_chaos({});
      sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(5));
      Outcome quiet;
      client_tasks.Spawn(Call(client, address, "quiet", &quiet));
      ++ctx.stats().requests;
      sim.RunUntil([&] { return quiet.has_value(); },
                   sim.Now() + absl::Seconds(20));
      if (!quiet.has_value() || !quiet->ok() || **quiet != "quiet") {
        verdict = absl::InternalError(absl::StrCat(
            "invariant echo.quiet_liveness: ",
            quiet.has_value() ? quiet->status().ToString() : "no outcome"));
      } else {
        ++ctx.stats().round_trips;
      }
    }

    // Destroy what ran on the simulation before returning.
    client_tasks.Clear();
    server_tasks.Clear();
    client.Close();
    server->reset();
    if (verdict.ok() && !task_error.ok()) verdict = task_error;
    return verdict;
  }

 private:
  int requests_;
  double corrupt_;
};

}  // namespace

void RegisterEchoWorkload() {
  // One workload per seed; the flags are read when each is made, after the
  // runner has parsed the command line.
  moonpool::chaos::WorkloadRegistry::Global().Register("echo", [] {
    return std::make_unique<EchoWorkload>(
        absl::GetFlag(FLAGS_echo_requests),
        absl::GetFlag(FLAGS_echo_corrupt_probability));
  });
}

}  // namespace echo
