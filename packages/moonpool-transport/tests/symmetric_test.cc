// One connection driver for both ends: a server sends requests to the
// clients on the connections they opened, the clients serve them; and what
// the protocol queued before it closed reaches the peer before the socket
// closes (a refused Hello, seen from outside with a raw stream).
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "transport_test_util.h"

namespace moonpool::transport {
namespace {

using testing::BindOrDie;
using testing::ConnectRaw;
using testing::FailOnError;
using testing::FastClient;
using testing::RawClient;
using testing::Reply;
using testing::RunUntil;
using testing::Store;
using testing::TakeOne;

// Connects `client` to `server` and returns the connection id the server
// gave it (from the first request, which it answers).
uint64_t Connect(driver::UvLoop& loop, ClientTransport& client,
                 ServerTransport& server, driver::TaskScope& scope) {
  Reply hello;
  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(
      Store(client.Request<std::string>(server.address(), "hi"), &hello));
  scope.Spawn(TakeOne(server, &taken));
  EXPECT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  EXPECT_TRUE(taken->has_value());
  const uint64_t id = (*taken)->connection_id;
  EXPECT_TRUE(server.Reply(**taken, "welcome").ok());
  EXPECT_TRUE(RunUntil(loop, [&] { return hello.has_value(); }));
  return id;
}

TEST(SymmetricConnection, ServerRequestIsServedByTheClientsHandler) {
  driver::UvLoop loop(driver::UvLoopOptions{.seed = 7});
  std::unique_ptr<ServerTransport> server = BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  int served = 0;
  client.Serve(
      [&](IncomingMessage m) -> driver::Task<absl::StatusOr<std::string>> {
        ++served;
        EXPECT_EQ(m.peer_address, server->address());
        EXPECT_NE(m.deadline, absl::InfiniteFuture());
        if (m.envelope.payload == "fail") {
          co_return absl::PermissionDeniedError("no, thanks");
        }
        co_return absl::StrCat("client says ", m.envelope.payload);
      });
  driver::TaskScope scope(loop, FailOnError());
  const uint64_t connection = Connect(loop, client, *server, scope);

  Reply ok, failed;
  scope.Spawn(Store(
      server->Request<std::string>(connection, std::string("ping"),
                                   RequestOptions::Timeout(absl::Seconds(2))),
      &ok));
  scope.Spawn(Store(
      server->Request<std::string>(connection, std::string("fail")), &failed));
  ASSERT_TRUE(
      RunUntil(loop, [&] { return ok.has_value() && failed.has_value(); }));
  ASSERT_TRUE(ok->ok()) << ok->status();
  EXPECT_EQ(**ok, "client says ping");
  EXPECT_EQ(failed->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(failed->status().message(), "no, thanks");
  EXPECT_EQ(served, 2);
  EXPECT_EQ(client.peer(server->address())->stats().requests_served, 2u);
}

TEST(SymmetricConnection, ClientWithoutAHandlerAnswersUnimplemented) {
  driver::UvLoop loop(driver::UvLoopOptions{.seed = 8});
  std::unique_ptr<ServerTransport> server = BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  driver::TaskScope scope(loop, FailOnError());
  const uint64_t connection = Connect(loop, client, *server, scope);
  Reply r;
  scope.Spawn(
      Store(server->Request<std::string>(connection, std::string("x")), &r));
  ASSERT_TRUE(RunUntil(loop, [&] { return r.has_value(); }));
  EXPECT_EQ(r->status().code(), absl::StatusCode::kUnimplemented)
      << r->status();
}

TEST(SymmetricConnection, RequestToAGoneConnectionFailsUpFront) {
  driver::UvLoop loop(driver::UvLoopOptions{.seed = 9});
  std::unique_ptr<ServerTransport> server = BindOrDie(loop);
  driver::TaskScope scope(loop, FailOnError());
  Reply r;
  scope.Spawn(Store(server->Request<std::string>(42, std::string("x")), &r));
  ASSERT_TRUE(RunUntil(loop, [&] { return r.has_value(); }));
  EXPECT_EQ(r->status().code(), absl::StatusCode::kNotFound) << r->status();
}

TEST(SymmetricConnection, ClientClosingFailsTheServersRequestInFlight) {
  driver::UvLoop loop(driver::UvLoopOptions{.seed = 10});
  std::unique_ptr<ServerTransport> server = BindOrDie(loop);
  auto client = std::make_unique<ClientTransport>(loop, FastClient());
  bool started = false;
  client->Serve(
      [&](IncomingMessage) -> driver::Task<absl::StatusOr<std::string>> {
        started = true;
        co_await driver::Sleep(loop,
                               absl::Seconds(30));  // never answers in time
        co_return std::string("late");
      });
  driver::TaskScope scope(loop, FailOnError());
  const uint64_t connection = Connect(loop, *client, *server, scope);
  Reply r;
  scope.Spawn(
      Store(server->Request<std::string>(connection, std::string("x")), &r));
  ASSERT_TRUE(RunUntil(loop, [&] { return started; }));
  client.reset();  // Goodbye, close: the handler is destroyed unanswered
  ASSERT_TRUE(RunUntil(loop, [&] { return r.has_value(); }));
  EXPECT_FALSE(r->ok());
  const absl::StatusCode code = r->status().code();
  EXPECT_TRUE(code == absl::StatusCode::kAborted ||
              code == absl::StatusCode::kUnavailable)
      << r->status();
}

TEST(SymmetricConnection, RefusedHelloStillReachesTheClientBeforeTheClose) {
  driver::UvLoop loop(driver::UvLoopOptions{.seed = 11});
  std::unique_ptr<ServerTransport> server = BindOrDie(loop);
  RawClient raw;
  std::unique_ptr<driver::Stream> stream =
      ConnectRaw(loop, server->address(), raw, /*read=*/true);
  ASSERT_NE(stream, nullptr);

  // A Hello of a version this server does not speak, and a request right
  // behind it (pipelined, as clients do): unread bytes at the close.
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  wire::Hello hello;
  hello.protocol_version = 99;
  hello.peer_name = "future-client";
  hello.incarnation = 5;
  ASSERT_TRUE(encoder.Encode(hello, out).ok());
  Envelope request;
  request.correlation_id = CorrelationId(1);
  request.kind = EnvelopeKind::kRequest;
  request.payload = std::string(3000, 'x');
  ASSERT_TRUE(encoder.EncodeEnvelope(request, out).ok());
  absl::Span<const char> bytes = out.Readable();
  ASSERT_TRUE(stream->Write(bytes).ok());

  ASSERT_TRUE(RunUntil(loop, [&] { return raw.ended.has_value(); }));
  EXPECT_TRUE(raw.ended->ok())
      << "expected a clean end of stream, got " << *raw.ended;
  wire::FrameDecoder decoder;
  decoder.Feed(raw.received);
  absl::StatusOr<const wire::FrameValue*> frame = decoder.Next();
  ASSERT_TRUE(frame.ok()) << frame.status();
  ASSERT_NE(*frame, nullptr) << "the server closed without its Hello ("
                             << raw.received.size() << " bytes)";
  const auto* answer = std::get_if<wire::Hello>(*frame);
  ASSERT_NE(answer, nullptr) << wire::FrameKindName(**frame);
  EXPECT_EQ(answer->protocol_version, wire::kProtocolVersion1);
  EXPECT_EQ(server->stats().protocol_errors, 0u + 1u);
}

TEST(SymmetricConnection, ProtocolErrorsCountOnceWhetherTheServerClosesOrNot) {
  // The same hostile connection, counted by a server that stays open and
  // by one closed at once afterwards (CloseNow used to drop the count).
  for (bool close_now : {false, true}) {
    SCOPED_TRACE(close_now ? "closed at once" : "left open");
    driver::UvLoop loop(driver::UvLoopOptions{.seed = 12});
    std::unique_ptr<ServerTransport> server = BindOrDie(loop);
    RawClient raw;
    std::unique_ptr<driver::Stream> stream =
        ConnectRaw(loop, server->address(), raw, /*read=*/true);
    ASSERT_NE(stream, nullptr);
    const std::string garbage(64, '\x5a');
    ASSERT_TRUE(stream->Write(garbage).ok());
    ASSERT_TRUE(RunUntil(loop, [&] { return raw.ended.has_value(); }));
    if (close_now) {
      driver::TaskScope scope(loop, FailOnError());
      bool closed = false;
      scope.Spawn([](ServerTransport& s, bool* done) -> driver::Task<void> {
        co_await s.Close(/*drain=*/false);
        *done = true;
      }(*server, &closed));
      ASSERT_TRUE(RunUntil(loop, [&] { return closed; }));
    }
    EXPECT_EQ(server->stats().protocol_errors, 1u);
  }
}

}  // namespace
}  // namespace moonpool::transport
