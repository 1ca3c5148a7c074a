// ServerThreads on real loopback sockets: several loops on one port
// (SO_REUSEPORT), each with its own ServerTransport, and the owner's
// Close / Wait / Post / stats.
#include "moonpool/transport/server_threads.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/tls_context.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

using driver::Address;

// Echoes every request and counts, per loop, the requests it answered
// (atomics: the test thread reads them while the loops run).
Task<void> CountingEcho(ServerTransport& server, std::atomic<int>* answered) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    if (!m->is_request()) continue;
    EXPECT_TRUE(server.Reply(*m, m->envelope.payload).ok());
    answered->fetch_add(1, std::memory_order_relaxed);
  }
}

// TLS contexts from the test PKI (MOONPOOL_TEST_CERTS), mutual TLS: one
// server context shared by both loops' threads, as ServerThreads users do.
std::shared_ptr<const driver::TlsContext> TestTls(bool server) {
  const char* dir = std::getenv("MOONPOOL_TEST_CERTS");
  if (dir == nullptr) {
    ADD_FAILURE() << "MOONPOOL_TEST_CERTS is not set (run through ctest)";
    return nullptr;
  }
  driver::TlsConfig c;
  const std::string who = server ? "server" : "client";
  c.certificate_chain_file = absl::StrCat(dir, "/", who, ".pem");
  c.private_key_file = absl::StrCat(dir, "/", who, ".key");
  c.trusted_ca_file = absl::StrCat(dir, "/ca.pem");
  c.require_client_certificate = server;
  auto ctx = server ? driver::TlsContext::CreateServer(c)
                    : driver::TlsContext::CreateClient(c);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

void TwoLoopsServeEveryRequest(bool tls) {
  std::array<std::atomic<int>, 2> answered{};
  std::array<std::optional<size_t>, 2> setup_index;
  ServerThreadsOptions options;
  options.threads = 2;
  if (tls) options.server.tls = TestTls(/*server=*/true);
  ClientOptions client_options = FastClient();
  if (tls) client_options.peer.tls = TestTls(/*server=*/false);
  absl::StatusOr<std::unique_ptr<ServerThreads>> servers = ServerThreads::Start(
      Address::Loopback(0), std::move(options),
      [&](ServerLoop& s) -> absl::Status {
        setup_index[s.index] = s.index;
        s.scope.Spawn(CountingEcho(s.server, &answered[s.index]));
        return absl::OkStatus();
      });
  ASSERT_TRUE(servers.ok()) << servers.status();
  ASSERT_EQ((*servers)->size(), 2u);
  EXPECT_EQ(setup_index[0], 0u);
  EXPECT_EQ(setup_index[1], 1u);
  EXPECT_NE((*servers)->address().port(), 0);

  // One ClientTransport per connection: the kernel picks a loop for each by
  // its 4-tuple, so new connections keep coming until both loops have
  // answered one (the chance that 64 all land on one loop is 2^-63).
  constexpr int kMaxConnections = 64;
  UvLoop loop;
  std::vector<std::unique_ptr<ClientTransport>> clients;
  std::vector<Reply> replies;
  replies.reserve(kMaxConnections);
  {
    TaskScope scope(loop, FailOnError());
    while (clients.size() < kMaxConnections &&
           (answered[0].load() == 0 || answered[1].load() == 0)) {
      clients.push_back(
          std::make_unique<ClientTransport>(loop, client_options));
      replies.emplace_back();
      scope.Spawn(Store(
          clients.back()->Request<std::string>(
              (*servers)->address(), absl::StrCat("request ", clients.size())),
          &replies.back()));
      ASSERT_TRUE(RunUntil(loop, [&] { return replies.back().has_value(); }));
    }
  }
  EXPECT_GT(answered[0].load(), 0) << "loop 0 served nothing";
  EXPECT_GT(answered[1].load(), 0) << "loop 1 served nothing";
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i].has_value());
    ASSERT_TRUE(replies[i]->ok()) << replies[i]->status();
    EXPECT_EQ(**replies[i], absl::StrCat("request ", i + 1));
  }
  for (auto& c : clients) c->Close();
  clients.clear();
  RunFor(loop, absl::Milliseconds(20));

  (*servers)->Stop(/*drain=*/true);
  ASSERT_TRUE((*servers)->ended());
  std::vector<ServerStats> stats = (*servers)->final_stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_GT(stats[0].connections_accepted, 0u);
  EXPECT_GT(stats[1].connections_accepted, 0u);
  ServerStats total = (*servers)->total_stats();
  EXPECT_EQ(total.connections_accepted, replies.size());
  EXPECT_EQ(total.requests_received, replies.size());
  EXPECT_EQ(total.replies_sent, replies.size());
  EXPECT_EQ(total.replies_sent,
            static_cast<uint64_t>(answered[0].load() + answered[1].load()));
  EXPECT_EQ((*servers)->task_errors(), 0u);
  EXPECT_EQ(total.tls_handshakes, tls ? replies.size() : 0u);
  EXPECT_EQ(total.tls_handshake_failures, 0u);
}

TEST(ServerThreadsTest, TwoLoopsOnOnePortBothServeAndEveryRequestIsAnswered) {
  TwoLoopsServeEveryRequest(/*tls=*/false);
}

TEST(ServerThreadsTest, TwoLoopsShareOneTlsContext) {
  TwoLoopsServeEveryRequest(/*tls=*/true);
}

TEST(ServerThreadsTest, StartRefusesNoLoopsAndASharedFixedIncarnation) {
  auto setup = [](ServerLoop&) { return absl::OkStatus(); };
  ServerThreadsOptions none;
  none.threads = 0;
  EXPECT_EQ(ServerThreads::Start(Address::Loopback(0), std::move(none), setup)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  ServerThreadsOptions fixed;
  fixed.threads = 2;
  fixed.server.connection.incarnation = 42;
  EXPECT_EQ(ServerThreads::Start(Address::Loopback(0), std::move(fixed), setup)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ServerThreadsTest, ASetupErrorFailsStartNamingItsLoop) {
  int setups = 0;
  ServerThreadsOptions options;
  options.threads = 3;
  absl::StatusOr<std::unique_ptr<ServerThreads>> servers =
      ServerThreads::Start(Address::Loopback(0), std::move(options),
                           [&](ServerLoop& s) -> absl::Status {
                             ++setups;
                             if (s.index == 1) {
                               return absl::UnavailableError("no database");
                             }
                             return absl::OkStatus();
                           });
  ASSERT_FALSE(servers.ok());
  EXPECT_EQ(servers.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(servers.status().message().find("loop 1"), std::string::npos)
      << servers.status();
  EXPECT_EQ(setups, 2) << "loop 2 started after loop 1 failed";
}

TEST(ServerThreadsTest, AnAddressTakenWithoutReusePortFailsStart) {
  // The port is taken by a listener without SO_REUSEPORT: loop 0 cannot
  // bind it, and Start says so rather than serving on fewer loops.
  UvLoop loop;
  absl::StatusOr<std::unique_ptr<ServerTransport>> taken =
      ServerTransport::Bind(loop, Address::Loopback(0), {});
  ASSERT_TRUE(taken.ok()) << taken.status();
  ServerThreadsOptions options;
  options.threads = 2;
  absl::StatusOr<std::unique_ptr<ServerThreads>> servers =
      ServerThreads::Start((*taken)->address(), std::move(options),
                           [](ServerLoop&) { return absl::OkStatus(); });
  EXPECT_FALSE(servers.ok());
  EXPECT_NE(servers.status().message().find("loop 0"), std::string::npos)
      << servers.status();
  taken->reset();
}

TEST(ServerThreadsTest, PostRunsOnTheLoopUntilItEndsAndOnEndedRunsOnce) {
  std::atomic<int> ended{0};
  ServerThreadsOptions options;
  options.threads = 2;
  options.on_ended = [&ended] { ended.fetch_add(1); };
  absl::StatusOr<std::unique_ptr<ServerThreads>> servers =
      ServerThreads::Start(Address::Loopback(0), std::move(options),
                           [](ServerLoop&) { return absl::OkStatus(); });
  ASSERT_TRUE(servers.ok()) << servers.status();

  std::atomic<int> ran_on{-1};
  ASSERT_TRUE((*servers)
                  ->Post(1,
                         [&ran_on](ServerLoop& s) {
                           ran_on.store(static_cast<int>(s.index));
                         })
                  .ok());
  EXPECT_EQ((*servers)->Post(2, [](ServerLoop&) {}).code(),
            absl::StatusCode::kOutOfRange);
  for (int i = 0; i < 1000 && ran_on.load() < 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ran_on.load(), 1);
  EXPECT_FALSE((*servers)->ended());
  EXPECT_EQ(ended.load(), 0);

  (*servers)->Stop(/*drain=*/false);
  EXPECT_TRUE((*servers)->ended());
  EXPECT_EQ(ended.load(), 1);
  EXPECT_EQ((*servers)->Post(0, [](ServerLoop&) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace moonpool::transport::testing
