// ServerTransport::ReplyWhenWritable: a full output (a client that does not
// read) is waited out, not returned; the wait ends at the request's
// deadline. The client is a raw stream that reads only when told to.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_encoder.h"
#include "transport_test_util.h"

namespace moonpool::transport {
namespace {

using testing::BindOrDie;
using testing::FailOnError;
using testing::RawClient;
using testing::RunUntil;

constexpr size_t kRequests = 64;
constexpr size_t kReplyBytes = size_t{256} << 10;  // 16 MiB in all

// Answers every request with kReplyBytes through ReplyWhenWritable, and
// stores each outcome.
driver::Task<void> Serve(ServerTransport& server, driver::TaskScope& scope,
                         std::vector<std::optional<absl::Status>>& outcomes) {
  auto answer = [](ServerTransport& s, IncomingMessage m,
                   std::optional<absl::Status>* out) -> driver::Task<void> {
    out->emplace(co_await s.ReplyWhenWritable(std::move(m),
                                              std::string(kReplyBytes, 'r')));
  };
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    const size_t i = m->envelope.correlation_id.value() - 1;
    scope.Spawn(answer(server, *std::move(m), &outcomes[i]));
  }
}

// Connects a raw client that sends a Hello and kRequests requests with
// `budget` each, and does not read.
std::unique_ptr<driver::Stream> Flood(driver::UvLoop& loop,
                                      const driver::Address& address,
                                      RawClient& raw, absl::Duration budget) {
  std::unique_ptr<driver::Stream> stream =
      testing::ConnectRaw(loop, address, raw, /*read=*/false);
  if (stream == nullptr) return nullptr;
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  wire::Hello hello;
  hello.peer_name = "slow-reader";
  hello.incarnation = 3;
  EXPECT_TRUE(encoder.Encode(hello, out).ok());
  for (size_t i = 1; i <= kRequests; ++i) {
    Envelope e;
    e.correlation_id = CorrelationId(i);
    e.kind = EnvelopeKind::kRequest;
    e.timeout = budget;
    e.payload = "give me a lot";
    EXPECT_TRUE(encoder.EncodeEnvelope(e, out).ok());
  }
  EXPECT_TRUE(stream->Write(out.Readable()).ok());
  return stream;
}

ServerOptions SmallOutput() {
  ServerOptions o;
  o.connection.max_output_bytes = size_t{1} << 20;
  return o;
}

// A server whose output is bounded to 1 MiB answering kRequests of a raw
// client that does not read (until told to), each with `budget`.
struct Rig {
  explicit Rig(uint64_t seed, absl::Duration budget)
      : loop(driver::UvLoopOptions{.seed = seed}),
        server(BindOrDie(loop, SmallOutput())),
        scope(loop, FailOnError()),
        outcomes(kRequests) {
    scope.Spawn(Serve(*server, scope, outcomes));
    stream = Flood(loop, server->address(), raw, budget);
  }
  size_t Count(absl::StatusCode code) const {
    size_t n = 0;
    for (const auto& o : outcomes) n += o.has_value() && o->code() == code;
    return n;
  }

  driver::UvLoop loop;
  std::unique_ptr<ServerTransport> server;
  driver::TaskScope scope;
  std::vector<std::optional<absl::Status>> outcomes;
  RawClient raw;
  std::unique_ptr<driver::Stream> stream;
};

TEST(ReplyWhenWritable, WaitsForAClientThatReadsLateThenAnswersEverything) {
  Rig rig(21, absl::Seconds(60));
  // Not read: the kernel's buffers and the 1 MiB output fill, and the
  // rest of the answers wait instead of failing.
  testing::RunFor(rig.loop, absl::Milliseconds(500));
  EXPECT_LT(rig.Count(absl::StatusCode::kOk), kRequests);
  EXPECT_EQ(rig.Count(absl::StatusCode::kResourceExhausted), 0u);

  ASSERT_TRUE(rig.stream->StartReading().ok());
  ASSERT_TRUE(RunUntil(rig.loop,
                       [&] {
                         return rig.Count(absl::StatusCode::kOk) == kRequests &&
                                rig.raw.received.size() >=
                                    kRequests * kReplyBytes;
                       }))
      << "ok " << rig.Count(absl::StatusCode::kOk) << " not found "
      << rig.Count(absl::StatusCode::kNotFound) << " received "
      << rig.raw.received.size() << " ended "
      << (rig.raw.ended ? rig.raw.ended->ToString() : "no");
}

TEST(ReplyWhenWritable, GivesUpAtTheRequestsDeadline) {
  Rig rig(22, absl::Milliseconds(300));
  ASSERT_TRUE(RunUntil(rig.loop, [&] {
    return rig.Count(absl::StatusCode::kDeadlineExceeded) +
               rig.Count(absl::StatusCode::kOk) ==
           kRequests;
  }));
  EXPECT_GT(rig.Count(absl::StatusCode::kDeadlineExceeded), 0u);
  EXPECT_EQ(rig.server->stats().requests_in_flight, 0u);
}

}  // namespace
}  // namespace moonpool::transport
