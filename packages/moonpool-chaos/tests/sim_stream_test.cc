// Simulated streams without faults (and with the benign ones: partial
// writes, short reads): order, reliability, the bounded kernel buffer,
// OnWritten accounting, backpressure, shutdown, close.
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/sim_loop.h"
#include "sim_test_util.h"

namespace moonpool::chaos {
namespace {

using testing::Pattern;
using testing::WriteAll;

TEST(SimStream, ConnectAcceptAndBytesBothWays) {
  SimLoop sim({.seed = 1});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  ASSERT_TRUE(p->connected.has_value());
  ASSERT_TRUE(p->connected->ok()) << *p->connected;
  ASSERT_NE(p->server, nullptr);
  EXPECT_EQ(p->client->peer_address().ToString(), "10.0.0.2:4500");
  EXPECT_EQ(p->server->local_address().ToString(), "10.0.0.2:4500");
  EXPECT_EQ(p->server->peer_address(), p->client->local_address());
  EXPECT_EQ(p->client->local_address().HostString(), "10.0.0.1");

  ASSERT_EQ(*p->client->Write(absl::MakeConstSpan("ping", 4)), 4u);
  ASSERT_EQ(*p->server->Write(absl::MakeConstSpan("pong!", 5)), 5u);
  sim.Run();
  EXPECT_EQ(p->server_rec.data, "ping");
  EXPECT_EQ(p->client_rec.data, "pong!");
  EXPECT_TRUE(sim.CheckInvariants().ok());
}

TEST(SimStream, ConnectToNoListenerIsRefusedByCallbackOnly) {
  SimLoop sim;
  SimHost& b = **sim.AddHost("10.0.0.2");
  std::optional<absl::Status> result;
  auto s = sim.Connect(b.Addr(9), [&](absl::Status st) { result = st; });
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(result.has_value());  // never inside the call
  sim.Run();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*s)->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(SimStream, ListenRejectsForeignAddressAndPortInUse) {
  SimLoop sim;
  auto ok = sim.Listen(sim.default_host().Addr(80), {}, [](auto) {});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(
      sim.Listen(sim.default_host().Addr(80), {}, [](auto) {}).status().code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sim.Listen(*driver::Address::Parse("10.9.9.9:80"), {}, [](auto) {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  auto any = sim.Listen(*driver::Address::Parse("0.0.0.0:0"), {}, [](auto) {});
  ASSERT_TRUE(any.ok());
  EXPECT_NE((*any)->address().port(), 0);
  EXPECT_EQ((*any)->address().HostString(), "10.0.0.1");
}

TEST(SimStream, OrderAndReliabilityUnderPartialWritesAndShortReads) {
  ChaosConfig chaos;
  chaos.partial_write_probability = 0.5;
  chaos.short_read_probability = 0.5;
  chaos.kernel_buffer_bytes = 1024;
  chaos.latency.typical = absl::Milliseconds(3);
  SimLoop sim({.seed = 5, .chaos = chaos});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b, true, 700);
  ASSERT_TRUE(p->connected->ok());
  const std::string up = Pattern(200000);
  const std::string down = Pattern(150000, 3);
  const size_t taken_up = WriteAll(*p->client, up, 777);
  const size_t taken_down = WriteAll(*p->server, down, 5000);
  sim.Run();
  EXPECT_EQ(p->server_rec.data, up);
  EXPECT_EQ(p->client_rec.data, down);
  // Every byte is either taken at once or reported by OnWritten, once.
  EXPECT_EQ(taken_up + p->client_rec.written, up.size());
  EXPECT_EQ(taken_down + p->server_rec.written, down.size());
  EXPECT_EQ(p->client->queued_write_bytes(), 0u);
  EXPECT_TRUE(sim.violations().empty());
  EXPECT_GT(sim.assertions().points().at("fault.partial_write").held, 0u);
  EXPECT_GT(sim.assertions().points().at("fault.short_read").held, 0u);
}

TEST(SimStream, KernelBufferIsBoundedAndOnWrittenReportsTheQueue) {
  ChaosConfig chaos;
  chaos.kernel_buffer_bytes = 4096;
  SimLoop sim({.seed = 2, .chaos = chaos});
  SimHost& b = **sim.AddHost("10.0.0.2");
  // The server does not read: backpressure reaches the writer.
  auto p = testing::Connect(sim, sim.default_host(), b, false);
  ASSERT_TRUE(p->connected->ok());
  const std::string data = Pattern(10000);
  absl::StatusOr<size_t> n = p->client->Write(data);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4096u);
  EXPECT_EQ(p->client->queued_write_bytes(), 10000u - 4096u);
  // Queued bytes go behind: nothing more is taken at once.
  EXPECT_EQ(*p->client->Write(absl::MakeConstSpan("zz", 2)), 0u);
  sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(5));
  EXPECT_EQ(p->client_rec.written, 0u);  // no room ever came
  EXPECT_EQ(p->client->queued_write_bytes(), 10000u - 4096u + 2);

  ASSERT_TRUE(p->server->StartReading().ok());
  sim.Run();
  EXPECT_EQ(p->server_rec.data, data + "zz");
  EXPECT_EQ(p->client_rec.written, 10000u - 4096u + 2);
  EXPECT_EQ(p->client->queued_write_bytes(), 0u);

  // StopReading holds the bytes; StartReading releases them, in order.
  p->server->StopReading();
  ASSERT_EQ(*p->client->Write(absl::MakeConstSpan("abc", 3)), 3u);
  sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(1));
  EXPECT_EQ(p->server_rec.data.size(), data.size() + 2);
  ASSERT_TRUE(p->server->StartReading().ok());
  sim.Run();
  EXPECT_EQ(p->server_rec.data, data + "zzabc");
  EXPECT_TRUE(sim.violations().empty());
}

TEST(SimStream, ShutdownSendsFinAfterQueuedBytesAndReadingGoesOn) {
  ChaosConfig chaos;
  chaos.kernel_buffer_bytes = 1000;
  SimLoop sim({.seed = 3, .chaos = chaos});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  const std::string data = Pattern(5000);
  WriteAll(*p->client, data, 5000);
  p->client->Shutdown();
  EXPECT_EQ(p->client->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  sim.Run();
  EXPECT_EQ(p->server_rec.data, data);
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_TRUE(p->server_rec.end->ok());
  // The other direction still works.
  ASSERT_TRUE(p->server->Write(absl::MakeConstSpan("back", 4)).ok());
  sim.Run();
  EXPECT_EQ(p->client_rec.data, "back");
  EXPECT_FALSE(p->client_rec.end.has_value());
  EXPECT_TRUE(sim.CheckInvariants().ok());
}

TEST(SimStream, CloseDeliversTakenBytesThenEndAndNothingAfterToTheCloser) {
  SimLoop sim;
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  ASSERT_TRUE(p->client->Write(absl::MakeConstSpan("bye", 3)).ok());
  p->client->Close();
  p->client->Close();  // idempotent
  sim.Run();
  EXPECT_EQ(p->server_rec.data, "bye");
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_TRUE(p->server_rec.end->ok());
  // Writing to the closed peer resets the writer.
  ASSERT_TRUE(p->server->Write(absl::MakeConstSpan("late", 4)).ok());
  sim.Run();
  EXPECT_TRUE(p->client_rec.data.empty());
  EXPECT_FALSE(p->client_rec.end.has_value());
  EXPECT_EQ(p->server->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kUnavailable);
  p.reset();
  EXPECT_EQ(sim.live_connections(), 0u);
}

TEST(SimStream, HandlerMayDestroyItsStreamInsideOnRead) {
  SimLoop sim;
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  struct Killer : testing::Recorder {
    void OnRead(size_t n) override {
      testing::Recorder::OnRead(n);
      stream->reset();
    }
    std::unique_ptr<driver::Stream>* stream = nullptr;
  } killer;
  killer.stream = &p->server;
  p->server->SetHandler(&killer);
  ASSERT_TRUE(p->client->Write(Pattern(100)).ok());
  sim.Run();
  EXPECT_EQ(p->server, nullptr);
  EXPECT_FALSE(killer.data.empty());
}

}  // namespace
}  // namespace moonpool::chaos
