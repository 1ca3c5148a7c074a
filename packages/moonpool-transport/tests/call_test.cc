// ClientTransport::Call on real loopback sockets: a typed call to a named
// method reaches the handler ServerTransport::Handle registered for its
// token and yields the method's reply type; a bad method name fails up
// front. Destroying a call's task
// before its outcome cancels it (a `cancel` on version 2, nothing on version
// 1; a queued call is never sent); fail fast with wait_for_ready = false.
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/driver/cancellation.h"
#include "moonpool/driver/sleep.h"
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

TEST(Call, InvalidMethodNameFailsUpFrontAndSendsNothing) {
  UvLoop loop(UvLoopOptions{.seed = 3});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());

  const Method<std::string, std::string> bad("no slash");
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Call(server->address(), bad, std::string("x")), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.peer_count(), 0u);
  EXPECT_EQ(server->stats().connections_accepted, 0u);
}

// A typed handler through ServerTransport::Handle: the Pong carries the
// Ping's sequence plus one.
absl::Status ServePing(ServerTransport& server) {
  return server.Handle(
      kPing,
      [](RequestContext&, CapnpReader<schema::Ping> ping)
          -> Task<absl::StatusOr<CapnpMessage<schema::Pong>>> {
        CapnpMessage<schema::Pong> pong;
        pong.builder().setSequence(ping.get().getSequence() + 1);
        co_return pong;
      });
}

TEST(Call, TypedRoundTripThroughAServedMethod) {
  UvLoop loop(UvLoopOptions{.seed = 4});
  auto server = testing::BindOrDie(loop);
  ASSERT_TRUE(ServePing(*server).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());

  CapnpMessage<schema::Ping> ping;
  ping.builder().setSequence(7);
  // options.endpoint is ignored: the method names the endpoint.
  RequestOptions options;
  options.endpoint = Endpoint(99);
  std::optional<absl::StatusOr<CapnpReader<schema::Pong>>> reply;
  scope.Spawn(
      Store(client.Call(server->address(), kPing, ping, options), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  ASSERT_TRUE(reply->ok()) << reply->status();
  EXPECT_EQ((*reply)->get().getSequence(), 8u);
  // A method the server does not serve: Unimplemented, never silence.
  std::optional<absl::StatusOr<std::string>> echo;
  scope.Spawn(
      Store(client.Call(server->address(), kEcho, std::string("x")), &echo));
  ASSERT_TRUE(RunUntil(loop, [&] { return echo.has_value(); }));
  EXPECT_EQ(echo->status().code(), absl::StatusCode::kUnimplemented)
      << echo->status();
}

// A port nothing listens on (bound once, then released).
driver::Address ClosedPort(UvLoop& loop) {
  auto listener = loop.Listen(driver::Address::Loopback(0), {}, [](auto) {});
  EXPECT_TRUE(listener.ok());
  return listener.ok() ? (*listener)->address() : driver::Address();
}

// A server that holds every request of the default queue unanswered.
Task<void> Hold(ServerTransport& server, std::vector<IncomingMessage>* held) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    held->push_back(std::move(*m));
  }
}

// Runs `task` until `source` fires, as a caller with a deadline of its own
// would; the task is destroyed then.
template <typename T>
Task<void> StoreCancellable(driver::CancellationToken token, Task<T> task,
                            std::optional<T>* out) {
  out->emplace(co_await driver::WithCancellation(token, std::move(task)));
}

TEST(CallCancel, WithCancellationSendsCancelAndTheHandlersTokenFires) {
  UvLoop loop(UvLoopOptions{.seed = 5});
  auto server = testing::BindOrDie(loop);
  bool started = false, saw_cancel = false;
  ASSERT_TRUE(server
                  ->Handle(kEcho,
                           [&](RequestContext& ctx, std::string request)
                               -> Task<absl::StatusOr<std::string>> {
                             started = true;
                             co_await ctx.cancellation().WhenCancelled();
                             saw_cancel = ctx.cancelled();
                             co_return request;
                           })
                  .ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  driver::CancellationSource source(loop);
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(StoreCancellable(
      source.token(),
      client.Call(server->address(), kEcho, std::string("wait")), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return started; }));
  source.Cancel("the caller gave up");
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value() && saw_cancel; }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(server->stats().cancels_received, 1u);
  const driver::Peer* peer = client.peer(server->address());
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(peer->stats().cancelled_in_flight, 1u);
  EXPECT_EQ(peer->pending_requests(), 0u);
}

TEST(CallCancel, DestroyedRequestTaskDropsTheQueuedRequestAtTheServer) {
  UvLoop loop(UvLoopOptions{.seed = 6});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  // A Select against a short sleep: the request loses and is destroyed.
  std::optional<absl::StatusOr<std::string>> reply;
  auto race = [&]() -> Task<void> {
    auto r = co_await driver::Select(
        client.Request<std::string>(server->address(), std::string("slow")),
        driver::Sleep(loop, absl::Milliseconds(100)));
    EXPECT_EQ(r.index(), 1u);
    reply.emplace(absl::DeadlineExceededError("gave up"));
  };
  scope.Spawn(race());
  // Nobody takes it from the default queue; the cancel drops it there.
  ASSERT_TRUE(RunUntil(loop, [&] {
    return reply.has_value() && server->stats().cancels_received == 1;
  }));
  EXPECT_EQ(server->stats().cancelled_before_handler, 1u);
  EXPECT_EQ(server->stats().queued_messages, 0u);
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST(CallCancel, NoCancelOnAVersion1ConnectionAndTheLateReplyIsDropped) {
  UvLoop loop(UvLoopOptions{.seed = 7});
  auto server = testing::BindOrDie(loop);
  ClientOptions options = FastClient();
  options.peer.connection.max_protocol_version = 1;
  ClientTransport client(loop, options);
  TaskScope scope(loop, testing::FailOnError());
  std::vector<IncomingMessage> held;
  scope.Spawn(Hold(*server, &held));
  auto source = std::make_unique<driver::CancellationSource>(loop);
  std::optional<absl::StatusOr<std::string>> first;
  scope.Spawn(StoreCancellable(
      source->token(),
      client.Request<std::string>(server->address(), std::string("first")),
      &first));
  ASSERT_TRUE(RunUntil(loop, [&] { return held.size() == 1; }));
  source->Cancel("gave up");
  ASSERT_TRUE(RunUntil(loop, [&] { return first.has_value(); }));
  EXPECT_EQ(first->status().code(), absl::StatusCode::kCancelled);
  // The server heard nothing, answers late; the client drops that reply
  // and the connection carries on.
  ASSERT_TRUE(server->Reply(held[0], std::string("late")).ok());
  std::optional<absl::StatusOr<std::string>> second;
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), std::string("second")),
      &second));
  ASSERT_TRUE(RunUntil(loop, [&] { return held.size() == 2; }));
  ASSERT_TRUE(server->Reply(held[1], std::string("second")).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return second.has_value(); }));
  ASSERT_TRUE(second->ok()) << second->status();
  EXPECT_EQ(**second, "second");
  EXPECT_EQ(server->stats().cancels_received, 0u);
  EXPECT_EQ(client.peer(server->address())->stats().connections, 1u);
}

TEST(CallCancel, QueuedRequestDestroyedBeforeTheConnectIsNeverSent) {
  UvLoop loop(UvLoopOptions{.seed = 8});
  const driver::Address address = ClosedPort(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  driver::CancellationSource source(loop);
  // Nothing listens yet: the request waits in the Peer's queue, through
  // refused connects and backoff.
  std::optional<absl::StatusOr<std::string>> never;
  scope.Spawn(StoreCancellable(
      source.token(),
      client.Request<std::string>(address, std::string("never")), &never));
  ASSERT_TRUE(RunUntil(loop, [&] {
    const driver::Peer* peer = client.peer(address);
    return peer != nullptr && peer->stats().connect_attempts >= 2;
  }));
  EXPECT_EQ(client.peer(address)->pending_requests(), 1u);
  source.Cancel("changed my mind");
  ASSERT_TRUE(RunUntil(loop, [&] { return never.has_value(); }));
  EXPECT_EQ(never->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(client.peer(address)->stats().cancelled_queued, 1u);
  EXPECT_EQ(client.peer(address)->pending_requests(), 0u);
  // The server comes up: only the request made since reaches it.
  auto server = testing::BindOrDie(loop, {}, address);
  ASSERT_NE(server, nullptr);
  std::vector<IncomingMessage> held;
  scope.Spawn(Hold(*server, &held));
  std::optional<absl::StatusOr<std::string>> sent;
  scope.Spawn(
      Store(client.Request<std::string>(address, std::string("sent")), &sent));
  ASSERT_TRUE(RunUntil(loop, [&] { return held.size() == 1; }));
  EXPECT_EQ(held[0].envelope.payload, "sent");
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(50));
  EXPECT_EQ(held.size(), 1u);
  EXPECT_EQ(server->stats().requests_received, 1u);
}

TEST(CallCancel, ServerRequestTaskDestroyedForgetsItsCall) {
  UvLoop loop(UvLoopOptions{.seed = 10});
  auto server = testing::BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  int started = 0, answered = 0;
  client.Serve([&](IncomingMessage m) -> Task<absl::StatusOr<std::string>> {
    ++started;
    co_await driver::Sleep(loop, absl::Milliseconds(50));
    ++answered;
    co_return m.envelope.payload;
  });
  TaskScope scope(loop, testing::FailOnError());
  // The client's first request names its connection.
  std::vector<IncomingMessage> held;
  scope.Spawn(Hold(*server, &held));
  std::optional<absl::StatusOr<std::string>> hello;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), std::string("hi")),
            &hello));
  ASSERT_TRUE(RunUntil(loop, [&] { return held.size() == 1; }));
  const uint64_t connection = held[0].connection_id;

  driver::CancellationSource source(loop);
  std::optional<absl::StatusOr<std::string>> cancelled;
  scope.Spawn(StoreCancellable(
      source.token(),
      server->Request<std::string>(connection, std::string("slow")),
      &cancelled));
  ASSERT_TRUE(RunUntil(loop, [&] { return started == 1; }));
  source.Cancel("the server gave up");
  ASSERT_TRUE(RunUntil(loop, [&] { return cancelled.has_value(); }));
  EXPECT_EQ(cancelled->status().code(), absl::StatusCode::kCancelled);
  // The client still answers (nothing tells its handler); the server drops
  // that answer, and the connection serves the next request as before.
  std::optional<absl::StatusOr<std::string>> next;
  scope.Spawn(Store(
      server->Request<std::string>(connection, std::string("next")), &next));
  ASSERT_TRUE(RunUntil(loop, [&] { return next.has_value(); }));
  ASSERT_TRUE(next->ok()) << next->status();
  EXPECT_EQ(**next, "next");
  EXPECT_EQ(answered, 2);
  ASSERT_TRUE(server->Reply(held[0], std::string("bye")).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return hello.has_value(); }));
}

TEST(CallCancel, TaskDestroyedAfterItsTransportTouchesNothing) {
  UvLoop loop(UvLoopOptions{.seed = 11});
  auto server = testing::BindOrDie(loop);
  TaskScope scope(loop, testing::FailOnError());
  std::vector<IncomingMessage> held;
  scope.Spawn(Hold(*server, &held));
  auto client = std::make_unique<ClientTransport>(loop, FastClient());
  // Not spawned: a task that has started and waits, owned here, outlives
  // the transport that its request went through.
  std::optional<absl::StatusOr<std::string>> reply;
  TaskScope own(loop, testing::FailOnError());
  own.Spawn(
      Store(client->Request<std::string>(server->address(), std::string("x")),
            &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return held.size() == 1; }));
  client.reset();  // Cancelled to the request, delivered on a later turn
  own.Clear();     // the task goes before hearing it: no cancel to send
  EXPECT_FALSE(reply.has_value());
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(20));
  EXPECT_EQ(server->stats().cancels_received, 0u);
}

TEST(CallFailFast, UnavailableAtOnceAfterTheFirstFailedConnect) {
  UvLoop loop(UvLoopOptions{.seed = 9});
  const driver::Address closed = ClosedPort(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, testing::FailOnError());
  RequestOptions fail_fast = RequestOptions::Timeout(absl::Seconds(5));
  fail_fast.wait_for_ready = false;
  // The first connect is in progress: this call waits for its result.
  const absl::Time start = loop.Now();
  std::optional<absl::StatusOr<std::string>> first;
  scope.Spawn(
      Store(client.Call(closed, kEcho, std::string("a"), fail_fast), &first));
  ASSERT_TRUE(RunUntil(loop, [&] { return first.has_value(); }));
  EXPECT_EQ(first->status().code(), absl::StatusCode::kUnavailable)
      << first->status();
  EXPECT_LT(loop.Now() - start, absl::Seconds(1));
  // Now unreachable: the next fails up front, never accepted by the Peer.
  const uint64_t accepted = client.peer(closed)->stats().requests;
  std::optional<absl::StatusOr<std::string>> second;
  scope.Spawn(
      Store(client.Call(closed, kEcho, std::string("b"), fail_fast), &second));
  ASSERT_TRUE(RunUntil(loop, [&] { return second.has_value(); }));
  EXPECT_EQ(second->status().code(), absl::StatusCode::kUnavailable)
      << second->status();
  EXPECT_EQ(client.peer(closed)->stats().requests, accepted);
  // The default still waits until its deadline.
  std::optional<absl::StatusOr<std::string>> patient;
  const absl::Time patient_start = loop.Now();
  scope.Spawn(
      Store(client.Call(closed, kEcho, std::string("c"),
                        RequestOptions::Timeout(absl::Milliseconds(300))),
            &patient));
  ASSERT_TRUE(RunUntil(loop, [&] { return patient.has_value(); }));
  EXPECT_EQ(patient->status().code(), absl::StatusCode::kUnavailable)
      << patient->status();
  EXPECT_GE(loop.Now() - patient_start, absl::Milliseconds(290));
}

}  // namespace
}  // namespace moonpool::transport::testing
