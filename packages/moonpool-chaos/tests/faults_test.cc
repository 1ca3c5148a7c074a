// The faults of ChaosConfig, one at a time, and the integrity checker.
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "sim_test_util.h"

namespace moonpool::chaos {
namespace {

using testing::Pattern;
using testing::WriteAll;

uint64_t Held(SimLoop& sim, const std::string& point) {
  auto it = sim.assertions().points().find(point);
  return it == sim.assertions().points().end() ? 0 : it->second.held;
}

TEST(Faults, AllOffByDefault) {
  EXPECT_FALSE(ChaosConfig{}.any_fault());
  SimRandom rng(1);
  bool some = false;
  for (int i = 0; i < 10; ++i) some |= ChaosConfig::Random(rng).any_fault();
  EXPECT_TRUE(some);
}

TEST(Faults, SwarmSwitchesFamiliesOffPerSeed) {
  SimRandom rng(11);
  int resets_on = 0, resets_off = 0;
  for (int i = 0; i < 200; ++i) {
    (ChaosConfig::Random(rng).reset_probability > 0 ? resets_on : resets_off)++;
  }
  EXPECT_GT(resets_on, 50);
  EXPECT_GT(resets_off, 50);
  SimRandom rng2(11);
  EXPECT_GT(ChaosConfig::Random(rng2, /*swarm=*/false).reset_probability, 0);
}

TEST(Faults, StallHoldsBytesThenReleasesThemAllInOrder) {
  SimLoop sim({.seed = 4});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  ASSERT_TRUE(p->connected->ok());
  ChaosConfig chaos;
  chaos.stall_probability = 1;
  chaos.stall_min = chaos.stall_max = absl::Seconds(2);
  chaos.kernel_buffer_bytes = 8192;
  sim.set_chaos(chaos);
  const absl::Time t0 = sim.Now();
  const std::string data = Pattern(20000);
  WriteAll(*p->client, data, 1000);
  sim.RunUntil([] { return false; }, t0 + absl::Seconds(1));
  // Stalled: nothing arrived, nothing failed, writes still queue.
  EXPECT_TRUE(p->server_rec.data.empty());
  EXPECT_FALSE(p->client_rec.write_error.has_value());
  EXPECT_FALSE(p->server_rec.end.has_value());
  EXPECT_TRUE(p->client->Write(absl::MakeConstSpan("!", 1)).ok());
  sim.set_chaos(ChaosConfig{});  // the next segments go straight through
  sim.Run();
  EXPECT_GE(sim.Now(), t0 + absl::Seconds(2));
  EXPECT_EQ(p->server_rec.data, data + "!");
  EXPECT_TRUE(sim.violations().empty());
  EXPECT_GT(Held(sim, "fault.stall"), 0u);
}

TEST(Faults, OneWayClogHoldsOneDirectionOnly) {
  SimLoop sim({.seed = 4});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  ChaosConfig chaos;
  chaos.clog_probability = 1;
  chaos.stall_min = chaos.stall_max = absl::Seconds(5);
  sim.set_chaos(chaos);
  ASSERT_TRUE(p->client->Write(absl::MakeConstSpan("up", 2)).ok());
  sim.RunUntil([] { return false; }, sim.Now() + absl::Milliseconds(10));
  sim.set_chaos(ChaosConfig{});
  ASSERT_TRUE(p->server->Write(absl::MakeConstSpan("down", 4)).ok());
  sim.RunUntil([] { return false; }, sim.Now() + absl::Seconds(1));
  EXPECT_EQ(p->client_rec.data, "down");
  EXPECT_TRUE(p->server_rec.data.empty());
  sim.Run();
  EXPECT_EQ(p->server_rec.data, "up");
  EXPECT_GT(Held(sim, "fault.clog"), 0u);
}

TEST(Faults, ResetFailsBothEndsWithUnavailable) {
  SimLoop sim({.seed = 6});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  ChaosConfig chaos;
  chaos.reset_probability = 1;
  sim.set_chaos(chaos);
  ASSERT_TRUE(p->client->Write(Pattern(100)).ok());
  sim.Run();
  ASSERT_TRUE(p->client_rec.end.has_value());
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_EQ(p->client_rec.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p->server_rec.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p->client->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(sim.violations().empty());  // lost bytes of a reset stream
  EXPECT_GT(Held(sim, "fault.reset"), 0u);
}

TEST(Faults, HalfCloseEndsOneDirectionAfterItsBytes) {
  SimLoop sim({.seed = 6});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  ChaosConfig chaos;
  chaos.half_close_probability = 1;
  sim.set_chaos(chaos);
  ASSERT_TRUE(p->client->Write(absl::MakeConstSpan("last", 4)).ok());
  sim.Run();
  sim.set_chaos(ChaosConfig{});
  EXPECT_EQ(p->server_rec.data, "last");
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_TRUE(p->server_rec.end->ok());
  EXPECT_EQ(p->client->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(p->server->Write(absl::MakeConstSpan("back", 4)).ok());
  sim.Run();
  EXPECT_EQ(p->client_rec.data, "back");
  EXPECT_TRUE(sim.violations().empty());
}

TEST(Faults, RefusedConnectFailsThroughTheCallback) {
  ChaosConfig chaos;
  chaos.connect_refused_probability = 1;
  SimLoop sim({.seed = 8, .chaos = chaos});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto l = b.Listen(b.Addr(1), {}, [](auto) { ADD_FAILURE() << "accepted"; });
  std::optional<absl::Status> r;
  auto s = sim.Connect(b.Addr(1), [&](absl::Status st) { r = st; });
  sim.Run();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code(), absl::StatusCode::kUnavailable);
  EXPECT_GT(Held(sim, "fault.connect_refused"), 0u);
}

TEST(Faults, HangingConnectNeverAnswersAndKeepsNothingScheduled) {
  ChaosConfig chaos;
  chaos.connect_hang_probability = 1;
  SimLoop sim({.seed = 8, .chaos = chaos});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto l = b.Listen(b.Addr(1), {}, [](auto) { ADD_FAILURE() << "accepted"; });
  bool called = false;
  auto s = sim.Connect(b.Addr(1), [&](absl::Status) { called = true; });
  EXPECT_FALSE(
      sim.RunUntil([&] { return called; }, sim.Now() + absl::Seconds(600)));
  EXPECT_EQ(sim.pending_events(), 0u);
  (*s).reset();  // the caller's timeout: destroying it ends the attempt
  EXPECT_FALSE(called);
  EXPECT_GT(Held(sim, "fault.connect_hang"), 0u);
}

TEST(Faults, BitFlipIsRecordedAndCaughtByTheFrameDecoder) {
  SimLoop sim({.seed = 12});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  wire::FrameEncoder encoder;
  wire::ByteBuffer out;
  for (uint64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(encoder.Encode(wire::Ping{i}, out).ok());
  }
  ChaosConfig chaos;
  chaos.bit_flip_probability = 1;
  chaos.max_bit_flips = 3;
  sim.set_chaos(chaos);
  ASSERT_TRUE(p->client->Write(out.Readable()).ok());
  sim.Run();
  ASSERT_EQ(p->server_rec.data.size(), out.size());
  EXPECT_NE(p->server_rec.data, std::string(out.Readable().data(), out.size()));
  // The checker knows about the flips: no violation.
  EXPECT_TRUE(sim.violations().empty());
  EXPECT_GT(Held(sim, "fault.bit_flip"), 0u);
  wire::FrameDecoder decoder;
  decoder.Feed(absl::MakeConstSpan(p->server_rec.data));
  absl::Status status;
  for (;;) {
    absl::StatusOr<const wire::FrameValue*> f = decoder.Next();
    if (!f.ok()) {
      status = f.status();
      break;
    }
    if (*f == nullptr) break;
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

class PlantedFaultTest : public ::testing::TestWithParam<PlantedFault> {};

TEST_P(PlantedFaultTest, CheckerReportsBytesChangedBehindItsBack) {
  SimLoop sim({.seed = 13});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  sim.TestOnlyPlantFault(GetParam());
  ASSERT_TRUE(p->client->Write(Pattern(1000)).ok());
  p->client->Shutdown();
  sim.Run();
  ASSERT_FALSE(sim.violations().empty());
  absl::Status s = sim.CheckInvariants();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("integrity"), std::string::npos) << s;
  EXPECT_EQ(sim.violations().front().connection, 1u);
}

INSTANTIATE_TEST_SUITE_P(Kinds, PlantedFaultTest,
                         ::testing::Values(PlantedFault::kDropByte,
                                           PlantedFault::kDuplicateByte,
                                           PlantedFault::kFlipUnrecorded));

TEST(Faults, CheckerCatchesALostLastByteAtEndOfStream) {
  SimLoop sim({.seed = 13});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  sim.TestOnlyPlantFault(PlantedFault::kDropByte);
  // Two bytes, equal: dropping one shifts nothing, only the count shows.
  ASSERT_TRUE(p->client->Write(absl::MakeConstSpan("aa", 2)).ok());
  p->client->Shutdown();
  sim.Run();
  EXPECT_EQ(p->server_rec.data, "a");
  ASSERT_EQ(sim.violations().size(), 1u);
  EXPECT_NE(sim.violations()[0].what.find("lost"), std::string::npos);
}

TEST(Faults, KillHostResetsPeersSilencesTheHostAndRestartRevivesIt) {
  SimLoop sim({.seed = 14});
  SimHost& b = **sim.AddHost("10.0.0.2");
  auto p = testing::Connect(sim, sim.default_host(), b);
  bool timer_fired = false;
  auto timer = b.CreateTimer([&] { timer_fired = true; });
  timer->Start(sim.Now() + absl::Seconds(1));
  ASSERT_TRUE(sim.KillHost("10.0.0.2").ok());
  EXPECT_FALSE(b.up());
  sim.Run();
  ASSERT_TRUE(p->client_rec.end.has_value());
  EXPECT_EQ(p->client_rec.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(p->server_rec.end.has_value());  // the dead hear nothing
  EXPECT_FALSE(timer_fired);
  EXPECT_EQ(b.Listen(b.Addr(1), {}, [](auto) {}).status().code(),
            absl::StatusCode::kUnavailable);
  std::optional<absl::Status> r;
  auto s = sim.Connect(b.Addr(4500), [&](absl::Status st) { r = st; });
  sim.Run();
  EXPECT_EQ(r->code(), absl::StatusCode::kUnavailable);  // listener gone

  ASSERT_TRUE(sim.RestartHost("10.0.0.2").ok());
  p.reset();
  s->reset();
  auto q = testing::Connect(sim, sim.default_host(), b);
  ASSERT_TRUE(q->connected->ok());
  EXPECT_GT(Held(sim, "fault.host_killed"), 0u);
  EXPECT_EQ(sim.KillHost("10.9.9.9").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moonpool::chaos
