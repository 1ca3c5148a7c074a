// ClientTransport and ServerTransport together on real loopback sockets:
// typed round trips, error replies, deadlines, many connections, routing.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/transport/server_transport.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

TEST(ClientServer, StringRoundTrip) {
  UvLoop loop(UvLoopOptions{.seed = 1});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));

  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), std::string("hello")),
      &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ(**reply, "hello");
  EXPECT_EQ(handled, 1);
  EXPECT_EQ(server->stats().requests_received, 1u);
  EXPECT_EQ(server->stats().replies_sent, 1u);
  EXPECT_EQ(server->stats().connections_open, 1u);
}

TEST(ClientServer, BytesRoundTrip) {
  UvLoop loop(UvLoopOptions{.seed = 2});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));

  Bytes big(100000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i);
  std::optional<absl::StatusOr<Bytes>> reply;
  scope.Spawn(Store(client.Request<Bytes>(server->address(), big), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ(**reply, big);
}

// Answers each Ping with a Pong carrying its sequence, time and payload.
Task<void> PingPongServer(ServerTransport& server) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    absl::StatusOr<CapnpReader<schema::Ping>> ping =
        Codec<CapnpReader<schema::Ping>>::Decode(m->envelope.payload);
    if (!ping.ok()) {
      EXPECT_TRUE(server.ReplyError(*m, ping.status()).ok());
      continue;
    }
    CapnpMessage<schema::Pong> pong;
    pong.builder().setSequence(ping->get().getSequence());
    pong.builder().setSentMicros(ping->get().getSentMicros());
    pong.builder().setPayload(ping->get().getPayload());
    EXPECT_TRUE(server.Reply(*m, pong).ok());
  }
}

TEST(ClientServer, CapnpPingPong) {
  UvLoop loop(UvLoopOptions{.seed = 3});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  scope.Spawn(PingPongServer(*server));

  constexpr int kPings = 20;
  std::vector<std::optional<absl::StatusOr<CapnpReader<schema::Pong>>>> pongs(
      kPings);
  for (int i = 0; i < kPings; ++i) {
    CapnpMessage<schema::Ping> ping;
    ping.builder().setSequence(i);
    ping.builder().setSentMicros(1000 + i);
    ping.builder().setPayload(kj::StringPtr("payload").asBytes());
    scope.Spawn(Store(
        client.Request<CapnpReader<schema::Pong>>(server->address(), ping),
        &pongs[i]));
  }
  ASSERT_TRUE(RunUntil(loop, [&] {
    for (auto& p : pongs) {
      if (!p.has_value()) return false;
    }
    return true;
  }));
  for (int i = 0; i < kPings; ++i) {
    ASSERT_TRUE(pongs[i]->ok()) << pongs[i]->status();
    EXPECT_EQ((*pongs[i])->get().getSequence(), static_cast<uint64_t>(i));
    EXPECT_EQ((*pongs[i])->get().getSentMicros(), 1000u + i);
    EXPECT_EQ((*pongs[i])->get().getPayload().size(), 7u);
  }
}

TEST(ClientServer, UndecodableReplyIsInvalidArgument) {
  UvLoop loop(UvLoopOptions{.seed = 4});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));  // echoes 5 bytes: not a message
  std::optional<absl::StatusOr<CapnpReader<schema::Pong>>> reply;
  scope.Spawn(Store(
      client.Request<CapnpReader<schema::Pong>>(server->address(), "abcde"),
      &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kInvalidArgument);
}

Task<void> FailEverything(ServerTransport& server, absl::Status status) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    EXPECT_TRUE(server.ReplyError(*m, status).ok());
  }
}

TEST(ClientServer, ErrorReplyReachesCallerAsHandlerStatus) {
  UvLoop loop(UvLoopOptions{.seed = 5});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  scope.Spawn(
      FailEverything(*server, absl::NotFoundError("no such key: \"k7\"")));
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), "get k7"), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status(), absl::NotFoundError("no such key: \"k7\""));
  EXPECT_EQ(server->stats().error_replies_sent, 1u);
}

TEST(ClientServer, ReplyErrorRefusesOkStatus) {
  UvLoop loop(UvLoopOptions{.seed = 6});
  auto server = testing::BindOrDie(loop);
  IncomingMessage fake;
  EXPECT_EQ(server->ReplyError(fake, absl::OkStatus()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClientServer, DeadlineExceededWhenTheServerNeverAnswers) {
  UvLoop loop(UvLoopOptions{.seed = 7});
  auto server = testing::BindOrDie(loop);  // nobody calls NextMessage
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::optional<absl::StatusOr<std::string>> by_timeout, by_deadline;
  const absl::Time start = loop.Now();
  scope.Spawn(Store(client.Request<std::string>(
                        server->address(), "slow",
                        RequestOptions::Timeout(absl::Milliseconds(100))),
                    &by_timeout));
  RequestOptions at;
  at.deadline = loop.Now() + absl::Milliseconds(150);
  scope.Spawn(Store(client.Request<std::string>(server->address(), "slow", at),
                    &by_deadline));
  ASSERT_TRUE(RunUntil(
      loop, [&] { return by_timeout.has_value() && by_deadline.has_value(); }));
  EXPECT_EQ(by_timeout->status().code(), absl::StatusCode::kDeadlineExceeded)
      << by_timeout->status();
  EXPECT_EQ(by_deadline->status().code(), absl::StatusCode::kDeadlineExceeded)
      << by_deadline->status();
  EXPECT_GE(loop.Now() - start, absl::Milliseconds(150));
  EXPECT_LT(loop.Now() - start, absl::Seconds(2));
}

TEST(ClientServer, ManyClientsOneServer) {
  UvLoop loop(UvLoopOptions{.seed = 8});
  auto server = testing::BindOrDie(loop);
  constexpr int kClients = 50;
  std::vector<std::unique_ptr<ClientTransport>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<ClientTransport>(loop, FastClient()));
  }
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(Echo(*server, &handled));
  std::vector<std::optional<absl::StatusOr<std::string>>> replies(kClients * 2);
  for (int i = 0; i < kClients * 2; ++i) {
    scope.Spawn(Store(clients[i % kClients]->Request<std::string>(
                          server->address(), absl::StrCat("client ", i)),
                      &replies[i]));
  }
  ASSERT_TRUE(RunUntil(loop, [&] {
    for (auto& r : replies) {
      if (!r.has_value()) return false;
    }
    return true;
  }));
  for (int i = 0; i < kClients * 2; ++i) {
    ASSERT_TRUE(replies[i]->ok()) << replies[i]->status();
    EXPECT_EQ(**replies[i], absl::StrCat("client ", i));
  }
  const ServerStats s = server->stats();
  EXPECT_EQ(s.connections_accepted, static_cast<uint64_t>(kClients));
  EXPECT_EQ(s.connections_open, static_cast<uint64_t>(kClients));
  EXPECT_EQ(s.replies_sent, static_cast<uint64_t>(kClients * 2));
  EXPECT_GT(s.bytes_in, 0u);
  EXPECT_GT(s.bytes_out, 0u);
  scope.Clear();
}

Task<void> TakeOne(ServerTransport& server,
                   std::optional<std::optional<IncomingMessage>>* out) {
  out->emplace(co_await server.NextMessage());
}

TEST(ClientServer, ReplyToAConnectionThatIsGoneIsNotFound) {
  UvLoop loop(UvLoopOptions{.seed = 9});
  auto server = testing::BindOrDie(loop);
  auto client = std::make_unique<ClientTransport>(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client->Request<std::string>(server->address(), "x"), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  ASSERT_TRUE(taken->has_value());
  const IncomingMessage msg = **taken;
  EXPECT_EQ(msg.envelope.payload, "x");
  EXPECT_EQ(msg.envelope.kind, EnvelopeKind::kRequest);
  EXPECT_NE(msg.deadline, absl::InfiniteFuture());

  client->Close();  // Cancelled to the caller; the connection goes
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().connections_open == 0; }));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kCancelled);

  absl::Status s = server->Reply(msg, "late");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("is gone"), absl::string_view::npos) << s;
  EXPECT_EQ(server->ReplyError(msg, absl::InternalError("x")).code(),
            absl::StatusCode::kNotFound);
  // A request answered twice is NotFound too (from the protocol).
  (void)client;
}

TEST(ClientServer, OneWayMessagesArriveWithKindOneWay) {
  UvLoop loop(UvLoopOptions{.seed = 10});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  // The default queue (a non-zero token names a method: services tests).
  ASSERT_TRUE(client.Send(server->address(), std::string("note")).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ((*taken)->envelope.kind, EnvelopeKind::kOneWay);
  EXPECT_EQ((*taken)->envelope.endpoint, kDefaultEndpoint);
  EXPECT_EQ((*taken)->envelope.payload, "note");
  EXPECT_EQ(server->Reply(**taken, "no").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server->stats().one_way_received, 1u);
}

TEST(ClientServer, ClientCloseCancelsPendingAndRefusesLaterCalls) {
  UvLoop loop(UvLoopOptions{.seed = 11});
  auto server = testing::BindOrDie(loop);  // never answers
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::vector<std::optional<absl::StatusOr<std::string>>> replies(5);
  for (auto& r : replies) {
    scope.Spawn(Store(client.Request<std::string>(server->address(), "x"), &r));
  }
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().requests_received == 5; }));
  client.Close();
  ASSERT_TRUE(RunUntil(loop, [&] {
    for (auto& r : replies) {
      if (!r.has_value()) return false;
    }
    return true;
  }));
  for (auto& r : replies) {
    EXPECT_EQ(r->status().code(), absl::StatusCode::kCancelled) << r->status();
  }
  std::optional<absl::StatusOr<std::string>> after;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), "x"), &after));
  ASSERT_TRUE(RunUntil(loop, [&] { return after.has_value(); }));
  EXPECT_EQ(after->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client.Send(server->address(), "x").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ClientServer, UnreachableServerIsUnavailableAtTheDeadline) {
  UvLoop loop(UvLoopOptions{.seed = 12});
  driver::Address nowhere;
  {
    auto s = testing::BindOrDie(loop);
    nowhere = s->address();
  }
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Request<std::string>(
                nowhere, "x", RequestOptions::Timeout(absl::Milliseconds(200))),
            &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kUnavailable)
      << reply->status();
}

}  // namespace
}  // namespace moonpool::transport::testing
