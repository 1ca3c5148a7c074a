// The server side of services: ServerTransport::Handle, RequestContext,
// per-method limits and counters, Unimplemented, cancel and deadlines. Real
// UvLoop on loopback; the client is ClientTransport::Call (or a raw
// Request with options.endpoint, where a test needs bytes Call would not
// send).
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/cancellation.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/method_handler.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_encoder.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

using PingMethod = Method<schema::Ping, schema::Pong>;
using StringMethod = Method<std::string, std::string>;
using BytesMethod = Method<Bytes, Bytes>;

const PingMethod kPing{"test.Pinger/Ping"};
const StringMethod kUpper{"test.Text/Upper"};
const StringMethod kLower{"test.Text/Lower"};
const BytesMethod kReverse{"test.Bin/Reverse"};
const StringMethod kNotServed{"test.Nobody/Home"};

CapnpMessage<schema::Ping> MakePing(uint64_t sequence) {
  CapnpMessage<schema::Ping> ping;
  ping.builder().setSequence(sequence);
  return ping;
}

// A string handler that answers `text` with itself, after `gate` opens
// (a handler that waits until the test lets it go).
struct Gate {
  bool open = false;
  int started = 0;
  int finished = 0;
};

driver::Task<absl::StatusOr<std::string>> WaitForGate(driver::Loop& loop,
                                                      Gate& gate,
                                                      std::string text) {
  ++gate.started;
  while (!gate.open) co_await driver::Sleep(loop, absl::Milliseconds(1));
  ++gate.finished;
  co_return text;
}

template <typename T>
using Outcome = std::optional<absl::StatusOr<T>>;

class ServicesServerTest : public ::testing::Test {
 protected:
  UvLoop loop_{UvLoopOptions{}};
};

TEST_F(ServicesServerTest, TypedCapnpRoundTripGivesTheHandlerItsContext) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());

  std::string method_name;
  uint64_t incarnation = 0, connection_id = 0;
  CorrelationId correlation;
  absl::Time deadline;
  bool one_way = true;
  driver::Address peer;
  ASSERT_TRUE(
      server
          ->Handle(kPing,
                   [&](RequestContext& ctx, CapnpReader<schema::Ping> ping)
                       -> Task<absl::StatusOr<CapnpMessage<schema::Pong>>> {
                     method_name = std::string(ctx.method_name());
                     incarnation = ctx.peer_incarnation();
                     connection_id = ctx.connection_id();
                     correlation = ctx.correlation_id();
                     deadline = ctx.deadline();
                     one_way = ctx.one_way();
                     peer = ctx.peer_address();
                     CapnpMessage<schema::Pong> pong;
                     pong.builder().setSequence(ping.get().getSequence() + 1);
                     co_return pong;
                   })
          .ok());

  Outcome<CapnpReader<schema::Pong>> pong;
  const absl::Time before = loop_.Now();
  scope.Spawn(Store(client.Call(server->address(), kPing, MakePing(41),
                                RequestOptions::Timeout(absl::Seconds(5))),
                    &pong));
  ASSERT_TRUE(RunUntil(loop_, [&] { return pong.has_value(); }));
  ASSERT_TRUE(pong->ok()) << pong->status();
  EXPECT_EQ((*pong)->get().getSequence(), 42u);

  EXPECT_EQ(method_name, "test.Pinger/Ping");
  EXPECT_NE(incarnation, 0u);
  EXPECT_NE(connection_id, 0u);
  EXPECT_NE(correlation, CorrelationId());
  EXPECT_FALSE(one_way);
  EXPECT_EQ(peer.HostString(), server->address().HostString());
  EXPECT_GT(deadline, before);
  EXPECT_LE(deadline, before + absl::Seconds(6));

  std::optional<MethodStats> stats = server->method_stats(kPing);
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->name, "test.Pinger/Ping");
  EXPECT_EQ(stats->requests, 1u);
  EXPECT_EQ(stats->replies, 1u);
  EXPECT_EQ(stats->errors, 0u);
  EXPECT_EQ(stats->running, 0u);
  EXPECT_EQ(server->stats().replies_sent, 1u);
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST_F(ServicesServerTest, SeveralMethodsStringsBytesAndTheDefaultQueue) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             for (char& c : s) c = absl::ascii_toupper(c);
                             co_return s;
                           })
                  .ok());
  ASSERT_TRUE(server
                  ->Handle(kLower,
                           [](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             for (char& c : s) c = absl::ascii_tolower(c);
                             co_return s;
                           })
                  .ok());
  ASSERT_TRUE(
      server
          ->Handle(kReverse,
                   [](RequestContext&, Bytes b) -> Task<absl::StatusOr<Bytes>> {
                     co_return Bytes(b.rbegin(), b.rend());
                   })
          .ok());
  int echoed = 0;
  scope.Spawn(Echo(*server, &echoed));  // the default queue, as before

  Outcome<std::string> upper, lower;
  Outcome<Bytes> reversed;
  Reply raw;
  scope.Spawn(Store(
      client.Call(server->address(), kUpper, std::string("MiXed")), &upper));
  scope.Spawn(Store(
      client.Call(server->address(), kLower, std::string("MiXed")), &lower));
  scope.Spawn(Store(client.Call(server->address(), kReverse, Bytes{1, 2, 3}),
                    &reversed));
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), std::string("plain")),
      &raw));
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return upper && lower && reversed && raw.has_value(); }));
  ASSERT_TRUE(upper->ok()) << upper->status();
  ASSERT_TRUE(lower->ok()) << lower->status();
  ASSERT_TRUE(reversed->ok()) << reversed->status();
  ASSERT_TRUE(raw->ok()) << raw->status();
  EXPECT_EQ(**upper, "MIXED");
  EXPECT_EQ(**lower, "mixed");
  EXPECT_EQ(**reversed, (Bytes{3, 2, 1}));
  EXPECT_EQ(**raw, "plain");
  EXPECT_EQ(echoed, 1);

  std::vector<MethodStats> all = server->all_method_stats();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "test.Text/Upper");  // registration order
  EXPECT_EQ(all[1].name, "test.Text/Lower");
  EXPECT_EQ(all[2].name, "test.Bin/Reverse");
  for (const MethodStats& m : all) EXPECT_EQ(m.replies, 1u) << m.name;
  EXPECT_FALSE(server->method_stats(kNotServed).has_value());
}

void ExpectUnimplemented(UvLoop& loop, const ClientOptions& options) {
  auto server = BindOrDie(loop);
  ClientTransport client(loop, options);
  TaskScope scope(loop, FailOnError());
  Outcome<std::string> out;
  scope.Spawn(Store(
      client.Call(server->address(), kNotServed, std::string("x")), &out));
  ASSERT_TRUE(RunUntil(loop, [&] { return out.has_value(); }));
  ASSERT_FALSE(out->ok());
  EXPECT_EQ(out->status().code(), absl::StatusCode::kUnimplemented)
      << out->status();
  const std::string hex = absl::StrCat(
      "0x", absl::Hex(kNotServed.token().value(), absl::kZeroPad16));
  EXPECT_TRUE(absl::StrContains(out->status().message(), hex)) << out->status();
  EXPECT_EQ(server->stats().unimplemented, 1u);
  EXPECT_EQ(server->stats().error_replies_sent, 1u);
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST_F(ServicesServerTest, UnknownTokenIsAnsweredUnimplementedNamingIt) {
  ExpectUnimplemented(loop_, FastClient());
}

TEST_F(ServicesServerTest, UnknownTokenIsUnimplementedOnVersion1Too) {
  ClientOptions v1 = FastClient();
  v1.peer.connection.max_protocol_version = 1;
  ExpectUnimplemented(loop_, v1);
}

TEST_F(ServicesServerTest, OneWayToAnUnknownTokenIsCountedAndDropped) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  ASSERT_TRUE(
      client.Send(server->address(), std::string("x"), kNotServed.token())
          .ok());
  ASSERT_TRUE(
      RunUntil(loop_, [&] { return server->stats().unimplemented == 1; }));
  EXPECT_EQ(server->stats().one_way_received, 1u);
  EXPECT_EQ(server->stats().error_replies_sent, 0u);
}

TEST_F(ServicesServerTest, RegistrationRefusesBadNamesDuplicatesAndLimits) {
  auto server = BindOrDie(loop_);
  auto echo = [](RequestContext&,
                 std::string s) -> Task<absl::StatusOr<std::string>> {
    co_return s;
  };
  EXPECT_EQ(server->Handle(StringMethod("no-slash"), echo).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server->Handle(StringMethod("a/b/c"), echo).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      server->Handle(kUpper, MethodHandler<std::string, std::string>()).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server->Handle(kUpper, echo, {.max_concurrent = 0}).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(server->Handle(kUpper, echo).ok());
  absl::Status again = server->Handle(kUpper, echo);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_TRUE(absl::StrContains(again.message(), "test.Text/Upper")) << again;
  EXPECT_EQ(server->all_method_stats().size(), 1u);

  TaskScope scope(loop_, FailOnError());
  bool closed = false;
  scope.Spawn([](ServerTransport& s, bool* done) -> Task<void> {
    co_await s.Close(/*drain=*/false);
    *done = true;
  }(*server, &closed));
  ASSERT_TRUE(RunUntil(loop_, [&] { return closed; }));
  EXPECT_EQ(server->Handle(kLower, echo).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ServicesServerTest, HandlerErrorReachesTheClientWithCodeAndMessage) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  ASSERT_TRUE(
      server
          ->Handle(kUpper,
                   [](RequestContext&,
                      std::string s) -> Task<absl::StatusOr<std::string>> {
                     co_return absl::NotFoundError(absl::StrCat("no row ", s));
                   })
          .ok());
  Outcome<std::string> out;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("k7")), &out));
  ASSERT_TRUE(RunUntil(loop_, [&] { return out.has_value(); }));
  EXPECT_EQ(out->status(), absl::NotFoundError("no row k7"));
  MethodStats stats = *server->method_stats(kUpper);
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_EQ(stats.replies, 0u);
  EXPECT_EQ(stats.errors_by_code[absl::StatusCode::kNotFound], 1u);
}

TEST_F(ServicesServerTest, UndecodableRequestIsInvalidArgumentWithoutHandler) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  int ran = 0;
  ASSERT_TRUE(
      server
          ->Handle(kPing,
                   [&](RequestContext&, CapnpReader<schema::Ping>)
                       -> Task<absl::StatusOr<CapnpMessage<schema::Pong>>> {
                     ++ran;
                     co_return CapnpMessage<schema::Pong>();
                   })
          .ok());
  RequestOptions raw;
  raw.endpoint = kPing.token();
  Reply out;
  scope.Spawn(Store(client.Request<std::string>(server->address(),
                                                std::string("not capnp!"), raw),
                    &out));
  ASSERT_TRUE(RunUntil(loop_, [&] { return out.has_value(); }));
  EXPECT_EQ(out->status().code(), absl::StatusCode::kInvalidArgument)
      << out->status();
  EXPECT_TRUE(absl::StrContains(out->status().message(), "test.Pinger/Ping"))
      << out->status();
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(server->method_stats(kPing)->errors_by_code.at(
                absl::StatusCode::kInvalidArgument),
            1u);
}

TEST_F(ServicesServerTest, ConcurrencyLimitQueuesThenRejects) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  Gate gate;
  std::vector<std::string> order;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             order.push_back(s);
                             return WaitForGate(loop_, gate, std::move(s));
                           },
                           {.max_concurrent = 1, .max_queued = 1})
                  .ok());
  Outcome<std::string> first, second, third;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("1")), &first));
  ASSERT_TRUE(RunUntil(loop_, [&] { return gate.started == 1; }));
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("2")), &second));
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return server->method_stats(kUpper)->queued == 1; }));
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("3")), &third));
  ASSERT_TRUE(RunUntil(loop_, [&] { return third.has_value(); }));
  EXPECT_EQ(third->status().code(), absl::StatusCode::kResourceExhausted)
      << third->status();
  MethodStats busy = *server->method_stats(kUpper);
  EXPECT_EQ(busy.running, 1u);
  EXPECT_EQ(busy.queued, 1u);
  EXPECT_EQ(busy.rejected, 1u);
  EXPECT_EQ(gate.started, 1);  // the second waits for the first's slot
  EXPECT_EQ(server->stats().requests_in_flight, 2u);

  gate.open = true;
  ASSERT_TRUE(RunUntil(loop_, [&] { return first && second; }));
  EXPECT_TRUE(first->ok() && **first == "1");
  EXPECT_TRUE(second->ok() && **second == "2");
  EXPECT_EQ(order, (std::vector<std::string>{"1", "2"}));
  MethodStats done = *server->method_stats(kUpper);
  EXPECT_EQ(done.running, 0u);
  EXPECT_EQ(done.queued, 0u);
  EXPECT_EQ(done.replies, 2u);
  EXPECT_EQ(done.requests, 3u);
}

TEST_F(ServicesServerTest, CountersAndLatencyPercentiles) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  // Call i takes about i ms: the percentiles order themselves and the
  // slowest call bounds them.
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             co_await driver::Sleep(
                                 loop_, absl::Milliseconds(std::stoi(s)));
                             if (s == "7") co_return absl::AbortedError("7");
                             co_return s;
                           })
                  .ok());
  constexpr int kCalls = 20;
  std::vector<Outcome<std::string>> out(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    scope.Spawn(Store(
        client.Call(server->address(), kUpper, absl::StrCat(i + 1)), &out[i]));
  }
  ASSERT_TRUE(RunUntil(loop_, [&] {
    for (const auto& o : out) {
      if (!o.has_value()) return false;
    }
    return true;
  }));
  MethodStats s = *server->method_stats(kUpper);
  EXPECT_EQ(s.requests, 20u);
  EXPECT_EQ(s.replies, 19u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.errors_by_code[absl::StatusCode::kAborted], 1u);
  EXPECT_GE(s.latency_max, absl::Milliseconds(20));
  EXPECT_GE(s.latency_p50, absl::Milliseconds(9));
  EXPECT_LE(s.latency_p50, s.latency_p90);
  EXPECT_LE(s.latency_p90, s.latency_p99);
  EXPECT_LE(s.latency_p99, s.latency_max);
}

TEST_F(ServicesServerTest, DeadlineFiresTheToken) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  std::optional<absl::Status> seen;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext& ctx, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             co_await ctx.cancellation().WhenCancelled();
                             EXPECT_TRUE(ctx.cancelled());
                             seen = ctx.cancellation().status();
                             co_return s;
                           })
                  .ok());
  Outcome<std::string> out;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("x"),
                        RequestOptions::Timeout(absl::Milliseconds(100))),
            &out));
  ASSERT_TRUE(RunUntil(loop_, [&] { return seen && out; }));
  EXPECT_EQ(out->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(seen->code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(absl::StrContains(seen->message(), "deadline")) << *seen;
  EXPECT_EQ(server->method_stats(kUpper)->cancelled, 0u);  // not the client's
}

TEST_F(ServicesServerTest, ClientCancelFiresTheRunningHandlersToken) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  bool started = false;
  std::optional<absl::Status> seen;
  ASSERT_TRUE(
      server
          ->Handle(kUpper,
                   [&](RequestContext& ctx,
                       std::string s) -> Task<absl::StatusOr<std::string>> {
                     started = true;
                     absl::Status slept = co_await driver::WithCancellation(
                         ctx.cancellation(), [](driver::Loop& l) -> Task<void> {
                           co_await driver::Sleep(l, absl::Seconds(30));
                         }(loop_));
                     seen = slept;
                     co_return s;  // still sent; the client drops it
                   })
          .ok());
  Outcome<std::string> out;
  {
    TaskScope caller(loop_, FailOnError());
    caller.Spawn(
        Store(client.Call(server->address(), kUpper, std::string("x")), &out));
    ASSERT_TRUE(RunUntil(loop_, [&] { return started; }));
  }  // the call's task is destroyed: the client sends `cancel`
  ASSERT_TRUE(RunUntil(loop_, [&] { return seen.has_value(); }));
  EXPECT_EQ(seen->code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(absl::StrContains(seen->message(), "client")) << *seen;
  EXPECT_FALSE(out.has_value());
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return server->method_stats(kUpper)->replies == 1; }));
  EXPECT_EQ(server->method_stats(kUpper)->cancelled, 1u);
  EXPECT_EQ(server->stats().cancels_received, 1u);
  EXPECT_EQ(server->stats().cancelled_before_handler, 0u);
}

TEST_F(ServicesServerTest, ClientCancelDropsAQueuedCall) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  Gate gate;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             return WaitForGate(loop_, gate, std::move(s));
                           },
                           {.max_concurrent = 1})
                  .ok());
  Outcome<std::string> first, second;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("1")), &first));
  ASSERT_TRUE(RunUntil(loop_, [&] { return gate.started == 1; }));
  {
    TaskScope caller(loop_, FailOnError());
    caller.Spawn(Store(client.Call(server->address(), kUpper, std::string("2")),
                       &second));
    ASSERT_TRUE(RunUntil(
        loop_, [&] { return server->method_stats(kUpper)->queued == 1; }));
  }
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return server->stats().cancelled_before_handler == 1; }));
  EXPECT_EQ(server->method_stats(kUpper)->queued, 0u);
  EXPECT_EQ(server->method_stats(kUpper)->cancelled, 1u);
  EXPECT_EQ(server->stats().requests_in_flight, 1u);
  gate.open = true;
  ASSERT_TRUE(RunUntil(loop_, [&] { return first.has_value(); }));
  RunFor(loop_, absl::Milliseconds(20));
  EXPECT_EQ(gate.started, 1);  // the cancelled call never ran
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST_F(ServicesServerTest, ClientCancelDropsARequestWaitingInTheDefaultQueue) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  Reply out;
  {
    TaskScope caller(loop_, FailOnError());
    caller.Spawn(
        Store(client.Request<std::string>(server->address(), std::string("x")),
              &out));
    ASSERT_TRUE(
        RunUntil(loop_, [&] { return server->stats().queued_messages == 1; }));
  }
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return server->stats().cancelled_before_handler == 1; }));
  EXPECT_EQ(server->stats().queued_messages, 0u);
  EXPECT_EQ(server->stats().queued_bytes, 0u);
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
  // NextMessage never hands it out.
  TaskScope scope(loop_, FailOnError());
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  RunFor(loop_, absl::Milliseconds(50));
  EXPECT_FALSE(taken.has_value());
}

TEST_F(ServicesServerTest, OneWayToAMethodRunsItsHandler) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  std::vector<std::string> got;
  bool one_way = false;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext& ctx, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             one_way = ctx.one_way();
                             got.push_back(s);
                             co_return s;
                           })
                  .ok());
  ASSERT_TRUE(
      client.Send(server->address(), std::string("note"), kUpper.token()).ok());
  ASSERT_TRUE(RunUntil(loop_, [&] { return got.size() == 1; }));
  EXPECT_EQ(got[0], "note");
  EXPECT_TRUE(one_way);
  RunFor(loop_, absl::Milliseconds(20));
  EXPECT_EQ(server->method_stats(kUpper)->one_way, 1u);
  EXPECT_EQ(server->stats().replies_sent, 0u);
}

TEST_F(ServicesServerTest, DrainingCloseLetsARunningHandlerFinish) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  Gate gate;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             return WaitForGate(loop_, gate, std::move(s));
                           })
                  .ok());
  Outcome<std::string> out;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("x")), &out));
  ASSERT_TRUE(RunUntil(loop_, [&] { return gate.started == 1; }));
  bool closed = false;
  scope.Spawn([](ServerTransport& s, bool* done) -> Task<void> {
    co_await s.Close(/*drain=*/true);
    *done = true;
  }(*server, &closed));
  RunFor(loop_, absl::Milliseconds(30));
  EXPECT_FALSE(closed);  // waits for the handler
  gate.open = true;
  ASSERT_TRUE(RunUntil(loop_, [&] { return closed && out.has_value(); }));
  ASSERT_TRUE(out->ok()) << out->status();
  EXPECT_EQ(**out, "x");
}

TEST_F(ServicesServerTest, CloseWithoutDrainDestroysRunningHandlers) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  Gate gate;
  struct Flag {
    bool* destroyed;
    ~Flag() { *destroyed = true; }
  };
  bool destroyed = false;
  ASSERT_TRUE(
      server
          ->Handle(kUpper,
                   [&](RequestContext&,
                       std::string s) -> Task<absl::StatusOr<std::string>> {
                     Flag flag{&destroyed};
                     co_return co_await WaitForGate(loop_, gate, std::move(s));
                   })
          .ok());
  Outcome<std::string> out;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("x")), &out));
  ASSERT_TRUE(RunUntil(loop_, [&] { return gate.started == 1; }));
  bool closed = false;
  scope.Spawn([](ServerTransport& s, bool* done) -> Task<void> {
    co_await s.Close(/*drain=*/false);
    *done = true;
  }(*server, &closed));
  ASSERT_TRUE(RunUntil(loop_, [&] { return closed && out.has_value(); }));
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(gate.finished, 0);
  EXPECT_FALSE(out->ok());
}

TEST_F(ServicesServerTest, QueuedCallWhoseDeadlinePassedIsDroppedUnrun) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  Gate gate;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             return WaitForGate(loop_, gate, std::move(s));
                           },
                           {.max_concurrent = 1})
                  .ok());
  Outcome<std::string> first, late;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("1")), &first));
  ASSERT_TRUE(RunUntil(loop_, [&] { return gate.started == 1; }));
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("2"),
                        RequestOptions::Timeout(absl::Milliseconds(50))),
            &late));
  ASSERT_TRUE(RunUntil(loop_, [&] { return late.has_value(); }));
  EXPECT_EQ(late->status().code(), absl::StatusCode::kDeadlineExceeded);
  // The server's deadline is the budget from its receipt, a little after
  // the client's: let it pass too.
  RunFor(loop_, absl::Milliseconds(20));
  gate.open = true;
  ASSERT_TRUE(RunUntil(loop_, [&] { return first.has_value(); }));
  RunFor(loop_, absl::Milliseconds(20));
  EXPECT_EQ(gate.started, 1);
  MethodStats stats = *server->method_stats(kUpper);
  EXPECT_EQ(stats.expired, 1u);
  EXPECT_EQ(stats.queued, 0u);
  EXPECT_EQ(server->stats().expired_dropped, 1u);
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST_F(ServicesServerTest, ConnectionClosingFiresTheRunningHandlersToken) {
  auto server = BindOrDie(loop_);
  // Version 1: no cancel frame, so only the closing connection can tell.
  ClientOptions v1 = FastClient();
  v1.peer.connection.max_protocol_version = 1;
  auto client = std::make_unique<ClientTransport>(loop_, v1);
  TaskScope scope(loop_, FailOnError());
  bool started = false;
  std::optional<absl::Status> seen;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext& ctx, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             started = true;
                             co_await ctx.cancellation().WhenCancelled();
                             seen = ctx.cancellation().status();
                             co_return s;
                           })
                  .ok());
  {
    TaskScope caller(loop_, [](absl::Status) {});
    Outcome<std::string> out;
    caller.Spawn(
        Store(client->Call(server->address(), kUpper, std::string("x")), &out));
    ASSERT_TRUE(RunUntil(loop_, [&] { return started; }));
    caller.Clear();
  }
  client.reset();  // closes the connection at once
  ASSERT_TRUE(RunUntil(loop_, [&] { return seen.has_value(); }));
  EXPECT_EQ(seen->code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(absl::StrContains(seen->message(), "connection")) << *seen;
}

TEST_F(ServicesServerTest, MethodCallsCountTowardTheServersInFlightBound) {
  ServerOptions options;
  options.max_requests_in_flight = 2;
  auto server = BindOrDie(loop_, options);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  Gate gate;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             return WaitForGate(loop_, gate, std::move(s));
                           },
                           {.max_concurrent = 1})
                  .ok());
  constexpr int kCalls = 5;
  std::vector<Outcome<std::string>> out(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    scope.Spawn(Store(client.Call(server->address(), kUpper, absl::StrCat(i)),
                      &out[i]));
  }
  ASSERT_TRUE(
      RunUntil(loop_, [&] { return server->stats().backpressure_pauses > 0; }));
  RunFor(loop_, absl::Milliseconds(20));
  EXPECT_EQ(server->stats().requests_in_flight, 2u);  // one runs, one waits
  EXPECT_EQ(server->method_stats(kUpper)->queued, 1u);
  EXPECT_EQ(server->method_stats(kUpper)->rejected, 0u);
  gate.open = true;
  ASSERT_TRUE(RunUntil(loop_, [&] {
    for (const auto& o : out) {
      if (!o.has_value()) return false;
    }
    return true;
  }));
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(out[i]->ok()) << i << ": " << out[i]->status();
    EXPECT_EQ(**out[i], absl::StrCat(i));
  }
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

// A raw client that sends a Hello and `n` requests to `token`, and does not
// read until told to.
std::unique_ptr<driver::Stream> FloodMethod(UvLoop& loop,
                                            const driver::Address& address,
                                            RawClient& raw, Endpoint token,
                                            size_t n) {
  std::unique_ptr<driver::Stream> stream =
      ConnectRaw(loop, address, raw, /*read=*/false);
  if (stream == nullptr) return nullptr;
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  wire::Hello hello;
  hello.peer_name = "slow-reader";
  hello.incarnation = 3;
  EXPECT_TRUE(encoder.Encode(hello, out).ok());
  for (size_t i = 1; i <= n; ++i) {
    Envelope e;
    e.correlation_id = CorrelationId(i);
    e.kind = EnvelopeKind::kRequest;
    e.endpoint = token;
    e.timeout = absl::Seconds(60);
    e.payload = "give me a lot";
    EXPECT_TRUE(encoder.EncodeEnvelope(e, out).ok());
  }
  EXPECT_TRUE(stream->Write(out.Readable()).ok());
  return stream;
}

TEST_F(ServicesServerTest, AnswersWaitForOutputRoomInsteadOfBeingLost) {
  constexpr size_t kRequests = 64;
  constexpr size_t kReplyBytes = size_t{256} << 10;  // 16 MiB in all
  ServerOptions options;
  options.connection.max_output_bytes = size_t{1} << 20;
  auto server = BindOrDie(loop_, options);
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [](RequestContext&, std::string)
                               -> Task<absl::StatusOr<std::string>> {
                             co_return std::string(kReplyBytes, 'r');
                           })
                  .ok());
  RawClient raw;
  std::unique_ptr<driver::Stream> stream =
      FloodMethod(loop_, server->address(), raw, kUpper.token(), kRequests);
  ASSERT_NE(stream, nullptr);
  // Not read: the output fills, and the rest of the answers wait.
  RunFor(loop_, absl::Milliseconds(300));
  EXPECT_EQ(server->method_stats(kUpper)->replies, kRequests);
  EXPECT_LT(server->stats().replies_sent, kRequests);
  EXPECT_GT(server->stats().requests_in_flight, 0u);

  ASSERT_TRUE(stream->StartReading().ok());
  ASSERT_TRUE(RunUntil(loop_,
                       [&] {
                         return server->stats().replies_sent == kRequests &&
                                raw.received.size() >= kRequests * kReplyBytes;
                       }))
      << "sent " << server->stats().replies_sent << " received "
      << raw.received.size();
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

TEST_F(ServicesServerTest, DeadlinesFireInDeadlineOrderWhateverTheArrival) {
  auto server = BindOrDie(loop_);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  std::vector<std::string> fired;
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [&](RequestContext& ctx, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             // "now" calls answer at once: they leave the
                             // deadline heap from its middle.
                             if (s != "now") {
                               co_await ctx.cancellation().WhenCancelled();
                               fired.push_back(s);
                             }
                             co_return s;
                           })
                  .ok());
  const int order[] = {3, 1, 4, 2, 5};
  std::vector<Outcome<std::string>> out(10);
  for (int i = 0; i < 5; ++i) {
    const int k = order[i];
    scope.Spawn(
        Store(client.Call(server->address(), kUpper, absl::StrCat(k),
                          RequestOptions::Timeout(absl::Milliseconds(40 * k))),
              &out[i]));
    scope.Spawn(
        Store(client.Call(server->address(), kUpper, std::string("now"),
                          RequestOptions::Timeout(absl::Milliseconds(30 * k))),
              &out[5 + i]));
  }
  ASSERT_TRUE(RunUntil(loop_, [&] { return fired.size() == 5; }));
  EXPECT_EQ(fired, (std::vector<std::string>{"1", "2", "3", "4", "5"}));
  for (int i = 5; i < 10; ++i) {
    ASSERT_TRUE(out[i].has_value() && out[i]->ok()) << i;
  }
}

TEST_F(ServicesServerTest, AnAnswerThatCanNeverFitIsReplacedByAnError) {
  ServerOptions options;
  options.connection.max_output_bytes = size_t{64} << 10;
  auto server = BindOrDie(loop_, options);
  ClientTransport client(loop_, FastClient());
  TaskScope scope(loop_, FailOnError());
  ASSERT_TRUE(server
                  ->Handle(kUpper,
                           [](RequestContext&, std::string)
                               -> Task<absl::StatusOr<std::string>> {
                             co_return std::string(size_t{128} << 10, 'x');
                           })
                  .ok());
  Outcome<std::string> out;
  scope.Spawn(
      Store(client.Call(server->address(), kUpper, std::string("big")), &out));
  ASSERT_TRUE(RunUntil(loop_, [&] { return out.has_value(); }));
  EXPECT_EQ(out->status().code(), absl::StatusCode::kResourceExhausted)
      << out->status();
  EXPECT_TRUE(absl::StrContains(out->status().message(), "test.Text/Upper"))
      << out->status();
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
}

}  // namespace
}  // namespace moonpool::transport::testing
