// ClientTransport::Call on real loopback sockets: a typed call to a named
// method reaches the server on the method's token and yields the method's
// reply type; a bad method name fails up front.
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/transport/server_transport.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

const Method<schema::Ping, schema::Pong> kPing{"test.Ping/Ping"};
const Method<std::string, std::string> kEcho{"test.Echo/Echo"};

// The reply type of a call is the method's ReplyIn, nothing else: awaiting
// a Call of kPing yields CapnpReader<Pong>, so code that expects a
// std::string (or a CapnpReader<Ping>) does not compile.
using PingCall = decltype(std::declval<ClientTransport&>().Call(
    std::declval<const driver::Address&>(), kPing,
    std::declval<const CapnpMessage<schema::Ping>&>()));
static_assert(
    std::is_same_v<PingCall,
                   driver::Task<absl::StatusOr<CapnpReader<schema::Pong>>>>);
static_assert(!std::is_convertible_v<absl::StatusOr<CapnpReader<schema::Pong>>,
                                     absl::StatusOr<std::string>>);
// And the request is the method's RequestOut: a Pong is no Ping request.
template <typename Request>
concept CallableWith = requires(ClientTransport& client,
                                const driver::Address& to,
                                const Request& request) {
  client.Call(to, kPing, request);
};
static_assert(CallableWith<CapnpMessage<schema::Ping>>);
static_assert(!CallableWith<CapnpMessage<schema::Pong>>);
static_assert(!CallableWith<std::string>);

// A raw server (the default queue) that answers a Ping sent to kPing's
// token with a Pong of the same sequence, and anything else with an error
// naming the endpoint it came to.
Task<void> RawPingServer(ServerTransport& server, int* handled) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    ++*handled;
    if (m->envelope.endpoint != kPing.token()) {
      EXPECT_TRUE(server
                      .ReplyError(*m, absl::FailedPreconditionError(
                                          m->envelope.endpoint.ToString()))
                      .ok());
      continue;
    }
    absl::StatusOr<CapnpReader<schema::Ping>> ping =
        Codec<CapnpReader<schema::Ping>>::Decode(m->envelope.payload);
    if (!ping.ok()) {
      EXPECT_TRUE(server.ReplyError(*m, ping.status()).ok());
      continue;
    }
    CapnpMessage<schema::Pong> pong;
    pong.builder().setSequence(ping->get().getSequence());
    EXPECT_TRUE(server.Reply(*m, pong).ok());
  }
}

TEST(Call, TypedRoundTripGoesToTheMethodsToken) {
  UvLoop loop(UvLoopOptions{.seed = 1});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(RawPingServer(*server, &handled));

  CapnpMessage<schema::Ping> ping;
  ping.builder().setSequence(42);
  // options.endpoint is ignored: the method names the endpoint.
  RequestOptions options;
  options.endpoint = Endpoint(7);
  std::optional<absl::StatusOr<CapnpReader<schema::Pong>>> reply;
  scope.Spawn(
      Store(client.Call(server->address(), kPing, ping, options), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ((*reply)->get().getSequence(), 42u);
  EXPECT_EQ(handled, 1);
}

TEST(Call, StringMethodToAnotherTokenGetsTheServersAnswer) {
  UvLoop loop(UvLoopOptions{.seed = 2});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(RawPingServer(*server, &handled));

  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Call(server->address(), kEcho, std::string("hi")), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reply->status().message(), kEcho.token().ToString());
}

TEST(Call, InvalidMethodNameFailsUpFrontAndSendsNothing) {
  UvLoop loop(UvLoopOptions{.seed = 3});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  int handled = 0;
  scope.Spawn(RawPingServer(*server, &handled));

  const Method<std::string, std::string> bad("no slash");
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Call(server->address(), bad, std::string("x")), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.peer_count(), 0u);
  EXPECT_EQ(handled, 0);
}

}  // namespace
}  // namespace moonpool::transport::testing
