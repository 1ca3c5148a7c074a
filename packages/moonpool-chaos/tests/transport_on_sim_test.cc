// The real ClientTransport and ServerTransport, unmodified, on two hosts of
// one SimLoop: requests complete in virtual time, and the run replays.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::chaos {
namespace {

using driver::Task;
using driver::TaskScope;
using transport::ClientTransport;
using transport::IncomingMessage;
using transport::ServerTransport;

Task<void> Echo(ServerTransport& server, int* handled) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    if (m->is_request()) {
      EXPECT_TRUE(server.Reply(*m, m->envelope.payload).ok());
    }
    ++*handled;
  }
}

Task<void> Call(ClientTransport& client, driver::Address to, std::string req,
                std::optional<absl::StatusOr<std::string>>* out) {
  out->emplace(co_await client.Request<std::string>(to, req));
}

struct Outcome {
  int ok = 0;
  uint64_t hash = 0;
  absl::Duration took;
};

Outcome RunPingPong(uint64_t seed, int requests) {
  SimLoop sim({.seed = seed});
  SimHost& client_host = **sim.AddHost("10.0.0.2");
  SimHost& server_host = **sim.AddHost("10.0.0.3");
  const absl::Time t0 = sim.Now();
  absl::StatusOr<std::unique_ptr<ServerTransport>> server =
      ServerTransport::Bind(server_host, server_host.Addr(4500));
  EXPECT_TRUE(server.ok()) << server.status();
  ClientTransport client(client_host);
  TaskScope server_tasks(server_host, [](absl::Status s) {
    ADD_FAILURE() << "server task failed: " << s;
  });
  TaskScope client_tasks(client_host, [](absl::Status s) {
    ADD_FAILURE() << "client task failed: " << s;
  });
  int handled = 0;
  server_tasks.Spawn(Echo(**server, &handled));
  std::vector<std::optional<absl::StatusOr<std::string>>> replies(requests);
  for (int i = 0; i < requests; ++i) {
    client_tasks.Spawn(Call(client, server_host.Addr(4500),
                            absl::StrCat("ping ", i), &replies[i]));
  }
  auto all_done = [&] {
    for (const auto& r : replies) {
      if (!r.has_value()) return false;
    }
    return true;
  };
  EXPECT_TRUE(sim.RunUntil(all_done, t0 + absl::Seconds(30)));
  Outcome o;
  o.took = sim.Now() - t0;
  for (int i = 0; i < requests; ++i) {
    if (!replies[i].has_value()) continue;
    EXPECT_TRUE(replies[i]->ok()) << replies[i]->status();
    if (replies[i]->ok() && **replies[i] == absl::StrCat("ping ", i)) ++o.ok;
  }
  EXPECT_EQ(handled, requests);
  EXPECT_TRUE(sim.CheckInvariants().ok()) << sim.CheckInvariants();
  o.hash = sim.trace().hash();
  client_tasks.Clear();
  server_tasks.Clear();
  client.Close();
  return o;
}

TEST(TransportOnSim, ClientAndServerOnTwoHostsCompleteRequestsInVirtualTime) {
  const Outcome o = RunPingPong(21, 100);
  EXPECT_EQ(o.ok, 100);
  // A few round trips of 50 us latency, not seconds.
  EXPECT_LT(o.took, absl::Milliseconds(50));
}

TEST(TransportOnSim, ARunReplaysFromItsSeed) {
  const Outcome a = RunPingPong(22, 20);
  const Outcome b = RunPingPong(22, 20);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.took, b.took);
}

}  // namespace
}  // namespace moonpool::chaos
