// Reply streams end to end on real loopback sockets: ServerTransport::
// HandleStream with a StreamWriter, ClientTransport::CallStream with a
// ReplyStream; flow control bounds both sides; the four ways a stream ends
// besides done (error, cancel, deadline, connection loss).
#include "moonpool/transport/reply_stream.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/transport/stream_method.h"
#include "moonpool/transport/stream_writer.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

// Request: "<count> <size>"; items: `count` strings of `size` bytes, the
// i-th filled with 'a' + i % 26.
const StreamMethod<std::string, std::string> kCount{"test.Stream/Count"};

struct Served {
  uint64_t items_written = 0;
  absl::Status last_write;  // what the last Write yielded
  bool ended = false;
  int started = 0;
};

absl::Status ServeCount(ServerTransport& server, Served& served,
                        absl::Status end = absl::OkStatus()) {
  return server.HandleStream(
      kCount,
      [&served, end](RequestContext&, std::string request,
                     StreamWriter<std::string>& out) -> Task<absl::Status> {
        ++served.started;
        const size_t space = request.find(' ');
        const int count = std::stoi(request.substr(0, space));
        const size_t size = std::stoul(request.substr(space + 1));
        for (int i = 0; i < count; ++i) {
          served.last_write = co_await out.Write(
              std::string(size, static_cast<char>('a' + i % 26)));
          if (!served.last_write.ok()) co_return served.last_write;
          ++served.items_written;
        }
        served.ended = true;
        co_return end;
      });
}

// Reads every item of `stream` into `items`, then stores the end.
Task<void> ReadAll(ReplyStream<std::string>& stream,
                   std::vector<std::string>* items,
                   std::optional<absl::Status>* end) {
  while (true) {
    absl::StatusOr<std::optional<std::string>> next = co_await stream.Next();
    if (!next.ok()) {
      *end = next.status();
      co_return;
    }
    if (!next->has_value()) {
      *end = absl::OkStatus();
      co_return;
    }
    items->push_back(std::move(**next));
  }
}

TEST(ReplyStream, ItemsInOrderThenTheEnd) {
  UvLoop loop(UvLoopOptions{.seed = 1});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(ServeCount(*server, served).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  absl::StatusOr<ReplyStream<std::string>> stream =
      client.CallStream(server->address(), kCount, std::string("100 10"));
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<std::string> items;
  std::optional<absl::Status> end;
  scope.Spawn(ReadAll(*stream, &items, &end));
  ASSERT_TRUE(RunUntil(loop, [&] { return end.has_value(); }));
  EXPECT_TRUE(end->ok()) << *end;
  ASSERT_EQ(items.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(items[i], std::string(10, static_cast<char>('a' + i % 26)));
  }
  // The end again, every time.
  std::optional<absl::StatusOr<std::optional<std::string>>> again;
  scope.Spawn(Store(stream->Next(), &again));
  ASSERT_TRUE(RunUntil(loop, [&] { return again.has_value(); }));
  ASSERT_TRUE(again->ok());
  EXPECT_FALSE(again->value().has_value());
  std::optional<MethodStats> stats = server->method_stats(kCount);
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->items, 100u);
  EXPECT_EQ(stats->replies, 1u);
}

TEST(ReplyStream, HandlerErrorEndsTheStreamAfterItsItems) {
  UvLoop loop(UvLoopOptions{.seed = 2});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(
      ServeCount(*server, served, absl::DataLossError("disk gone")).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  absl::StatusOr<ReplyStream<std::string>> stream =
      client.CallStream(server->address(), kCount, std::string("3 5"));
  ASSERT_TRUE(stream.ok());
  std::vector<std::string> items;
  std::optional<absl::Status> end;
  scope.Spawn(ReadAll(*stream, &items, &end));
  ASSERT_TRUE(RunUntil(loop, [&] { return end.has_value(); }));
  EXPECT_EQ(items.size(), 3u);
  EXPECT_EQ(*end, absl::DataLossError("disk gone"));
}

// A consumer that stops reading: the server's writer waits at the window,
// the client holds at most the window plus one item, and reading on gets
// everything.
TEST(ReplyStream, StalledConsumerBoundsBothSides) {
  UvLoop loop(UvLoopOptions{.seed = 3});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(ServeCount(*server, served).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  StreamOptions options;
  options.window_bytes = 64 << 10;
  const size_t item = 1000;
  absl::StatusOr<ReplyStream<std::string>> stream = client.CallStream(
      server->address(), kCount, absl::StrCat(1000, " ", item), options);
  ASSERT_TRUE(stream.ok());
  // Nobody reads for a while.
  RunFor(loop, absl::Milliseconds(300));
  EXPECT_GT(served.items_written, 0u);
  EXPECT_LE(served.items_written * item, options.window_bytes + item);
  EXPECT_FALSE(served.ended);
  EXPECT_LE(stream->buffered_bytes(), options.window_bytes + item);
  EXPECT_GE(stream->buffered_bytes(), options.window_bytes / 2);
  // Reading on drains it all.
  std::vector<std::string> items;
  std::optional<absl::Status> end;
  scope.Spawn(ReadAll(*stream, &items, &end));
  ASSERT_TRUE(RunUntil(loop, [&] { return end.has_value(); }));
  EXPECT_TRUE(end->ok()) << *end;
  EXPECT_EQ(items.size(), 1000u);
  EXPECT_LE(stream->stats().max_buffered_bytes, options.window_bytes + item);
  EXPECT_GE(stream->stats().grants, 1000 * item / options.window_bytes);
}

// Destroying the stream cancels the call: the server's writer yields
// Cancelled and the handler ends.
TEST(ReplyStream, DestroyingTheStreamCancelsTheHandler) {
  UvLoop loop(UvLoopOptions{.seed = 4});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(ServeCount(*server, served).ok());
  ClientTransport client(loop, FastClient());
  StreamOptions options;
  options.window_bytes = 4096;
  {
    absl::StatusOr<ReplyStream<std::string>> stream = client.CallStream(
        server->address(), kCount, std::string("100000 100"), options);
    ASSERT_TRUE(stream.ok());
    RunFor(loop, absl::Milliseconds(100));
    EXPECT_GT(served.items_written, 0u);
  }
  ASSERT_TRUE(RunUntil(loop, [&] { return !served.last_write.ok(); }));
  EXPECT_EQ(served.last_write.code(), absl::StatusCode::kCancelled)
      << served.last_write;
  EXPECT_FALSE(served.ended);
  ASSERT_TRUE(RunUntil(loop, [&] {
    std::optional<MethodStats> s = server->method_stats(kCount);
    return s.has_value() && s->running == 0;
  }));
  EXPECT_EQ(server->method_stats(kCount)->cancelled, 1u);
}

TEST(ReplyStream, DeadlineBoundsTheWholeStream) {
  UvLoop loop(UvLoopOptions{.seed = 5});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(ServeCount(*server, served).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  StreamOptions options;
  options.window_bytes = 1024;
  options.timeout = absl::Milliseconds(200);
  absl::StatusOr<ReplyStream<std::string>> stream = client.CallStream(
      server->address(), kCount, std::string("100000 100"), options);
  ASSERT_TRUE(stream.ok());
  // Reads slowly: one item per 20 ms, so the deadline comes first.
  std::optional<absl::Status> end;
  uint64_t read = 0;
  scope.Spawn([](ReplyStream<std::string>& s, driver::Loop& l, uint64_t* count,
                 std::optional<absl::Status>* out) -> Task<void> {
    while (true) {
      absl::StatusOr<std::optional<std::string>> next = co_await s.Next();
      if (!next.ok()) {
        *out = next.status();
        co_return;
      }
      if (!next->has_value()) {
        *out = absl::OkStatus();
        co_return;
      }
      ++*count;
      co_await driver::Sleep(l, absl::Milliseconds(20));
    }
  }(*stream, loop, &read, &end));
  ASSERT_TRUE(RunUntil(loop, [&] { return end.has_value(); }));
  EXPECT_EQ(end->code(), absl::StatusCode::kDeadlineExceeded) << *end;
  EXPECT_GT(read, 0u);
  // The server's handler heard of it too (its deadline passed).
  ASSERT_TRUE(RunUntil(loop, [&] { return !served.last_write.ok(); }));
  EXPECT_EQ(served.last_write.code(), absl::StatusCode::kCancelled);
}

TEST(ReplyStream, ConnectionLossAfterAnItemIsNeverRetried) {
  UvLoop loop(UvLoopOptions{.seed = 6});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(ServeCount(*server, served).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  StreamOptions options;
  options.window_bytes = 1024;
  options.idempotent = true;  // even so: an item arrived
  absl::StatusOr<ReplyStream<std::string>> stream = client.CallStream(
      server->address(), kCount, std::string("100000 100"), options);
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return stream->buffered_bytes() > 0; }));
  // The server goes away at once: the connection is cut.
  bool closed = false;
  scope.Spawn([](ServerTransport& s, bool* done) -> Task<void> {
    co_await s.Close(/*drain=*/false);
    *done = true;
  }(*server, &closed));
  std::vector<std::string> items;
  std::optional<absl::Status> end;
  scope.Spawn(ReadAll(*stream, &items, &end));
  ASSERT_TRUE(RunUntil(loop, [&] { return end.has_value() && closed; }));
  EXPECT_FALSE(end->ok());
  EXPECT_NE(end->code(), absl::StatusCode::kDeadlineExceeded) << *end;
  EXPECT_GT(items.size(), 0u);
  EXPECT_EQ(served.started, 1);
}

TEST(ReplyStream, UnaryCallOfAStreamMethodFailsPrecondition) {
  UvLoop loop(UvLoopOptions{.seed = 7});
  auto server = BindOrDie(loop);
  Served served;
  ASSERT_TRUE(ServeCount(*server, served).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  const Method<std::string, std::string> unary{"test.Stream/Count"};
  std::optional<absl::StatusOr<std::string>> reply;
  scope.Spawn(
      Store(client.Call(server->address(), unary, std::string("1 1")), &reply));
  ASSERT_TRUE(RunUntil(loop, [&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kFailedPrecondition)
      << reply->status();
  EXPECT_EQ(served.started, 0);
}

TEST(ReplyStream, StreamCallOfAUnaryMethodIsAStreamOfOne) {
  UvLoop loop(UvLoopOptions{.seed = 8});
  auto server = BindOrDie(loop);
  const Method<std::string, std::string> unary{"test.Unary/Echo"};
  ASSERT_TRUE(server
                  ->Handle(unary,
                           [](RequestContext&, std::string s)
                               -> Task<absl::StatusOr<std::string>> {
                             co_return s + "!";
                           })
                  .ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  const StreamMethod<std::string, std::string> as_stream{"test.Unary/Echo"};
  absl::StatusOr<ReplyStream<std::string>> stream =
      client.CallStream(server->address(), as_stream, std::string("one"));
  ASSERT_TRUE(stream.ok());
  std::vector<std::string> items;
  std::optional<absl::Status> end;
  scope.Spawn(ReadAll(*stream, &items, &end));
  ASSERT_TRUE(RunUntil(loop, [&] { return end.has_value(); }));
  EXPECT_TRUE(end->ok());
  EXPECT_EQ(items, std::vector<std::string>{"one!"});
}

TEST(ReplyStream, ZeroWindowFailsUpFront) {
  UvLoop loop(UvLoopOptions{.seed = 9});
  auto server = BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  StreamOptions options;
  options.window_bytes = 0;
  absl::StatusOr<ReplyStream<std::string>> stream =
      client.CallStream(server->address(), kCount, std::string("1 1"), options);
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moonpool::transport::testing
