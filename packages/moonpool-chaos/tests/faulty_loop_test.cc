// FaultyLoop over a real UvLoop on loopback: the faults of the plan happen,
// and the Stream contract still holds through them (bytes whole and in
// order, OnWritten exact, errors on both ends of a reset, no callback inside
// a call or after destruction). The UvLoop is declared first and destroyed
// last; ASan checks the memory.
#include "moonpool/chaos/faulty_loop.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/sim_certificates.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "sim_test_util.h"

namespace moonpool::chaos {
namespace {

using driver::Task;
using testing::Pair;
using testing::Pattern;
using testing::Recorder;
using testing::WriteAll;

constexpr absl::Duration kPatience = absl::Seconds(20);

// Bigger than a loopback read, so a short read is the shim's.
constexpr size_t kReadSize = 64 * 1024;

// A server listening on `server_loop` and a client connected from
// `client_loop`, both reading (the client unless `client_reads` is false).
std::unique_ptr<Pair> Connect(driver::UvLoop& uv, driver::Loop& client_loop,
                              driver::Loop& server_loop,
                              bool client_reads = true) {
  auto p = std::make_unique<Pair>();
  p->client_rec = Recorder(kReadSize);
  p->server_rec = Recorder(kReadSize);
  Pair* raw = p.get();
  auto l = server_loop.Listen(
      driver::Address::Loopback(0), {},
      [raw](absl::StatusOr<std::unique_ptr<driver::Stream>> s) {
        ASSERT_TRUE(s.ok()) << s.status();
        raw->server = std::move(*s);
        raw->server->SetHandler(&raw->server_rec);
        EXPECT_TRUE(raw->server->StartReading().ok());
      });
  EXPECT_TRUE(l.ok()) << l.status();
  p->listener = std::move(*l);
  auto c = client_loop.Connect(p->listener->address(),
                               [raw](absl::Status s) { raw->connected = s; });
  EXPECT_TRUE(c.ok()) << c.status();
  p->client = std::move(*c);
  p->client->SetHandler(&p->client_rec);
  if (client_reads) {
    EXPECT_TRUE(p->client->StartReading().ok());
  }
  uv.RunUntil([&] { return raw->connected.has_value() && raw->server; },
              uv.Now() + kPatience);
  EXPECT_TRUE(p->connected.has_value() && p->connected->ok());
  EXPECT_NE(p->server, nullptr);
  return p;
}

ChaosConfig DelaysPartialWritesShortReads() {
  ChaosConfig c;
  c.clog_probability = 0.05;
  c.stall_min = absl::Milliseconds(1);
  c.stall_max = absl::Milliseconds(20);
  c.latency.tail_probability = 0.05;
  c.latency.tail_mean = absl::Milliseconds(5);
  c.latency.max = absl::Milliseconds(30);
  c.partial_write_probability = 0.5;
  c.short_read_probability = 0.5;
  return c;
}

// Runs `uv` until each end has read as much as the other wrote (`up` from
// the client, `down` from the server) and each write is accounted for:
// taken at once (`*_taken`) or reported by OnWritten.
void RunUntilExchanged(driver::UvLoop& uv, Pair& p, const std::string& up,
                       size_t up_taken, const std::string& down,
                       size_t down_taken) {
  uv.RunUntil(
      [&] {
        return p.server_rec.data.size() >= up.size() &&
               p.client_rec.data.size() >= down.size() &&
               up_taken + p.client_rec.written == up.size() &&
               down_taken + p.server_rec.written == down.size();
      },
      uv.Now() + kPatience);
}

TEST(FaultyLoop, NoFaultsIsAByteIdenticalPassthrough) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 1});
  FaultyLoop client_loop(uv, {.seed = 1});
  FaultyLoop server_loop(uv, {.seed = 2});
  auto p = Connect(uv, client_loop, server_loop);
  const std::string up = Pattern(300000, 1);
  const std::string down = Pattern(200000, 2);
  size_t up_taken = WriteAll(*p->client, up, 4000);
  size_t down_taken = WriteAll(*p->server, down, 3000);
  RunUntilExchanged(uv, *p, up, up_taken, down, down_taken);
  EXPECT_EQ(p->server_rec.data, up);
  EXPECT_EQ(p->client_rec.data, down);
  EXPECT_EQ(up_taken + p->client_rec.written, up.size());
  EXPECT_EQ(down_taken + p->server_rec.written, down.size());
  for (const FaultyLoop* l : {&client_loop, &server_loop}) {
    const FaultCounts& f = l->faults();
    EXPECT_EQ(f.delays + f.partial_writes + f.short_reads + f.resets +
                  f.connects_refused + f.connects_hung,
              0u)
        << f.ToString();
  }
  EXPECT_EQ(client_loop.faults().connects, 1u);
  EXPECT_EQ(server_loop.faults().accepts, 1u);
  EXPECT_EQ(p->client->peer_address(), p->listener->address());
  EXPECT_EQ(p->server->local_address(), p->listener->address());
}

TEST(FaultyLoop, DelaysPartialWritesAndShortReadsKeepBytesWholeAndInOrder) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 3});
  FaultyLoop client_loop(uv,
                         {.seed = 3, .chaos = DelaysPartialWritesShortReads()});
  FaultyLoop server_loop(uv,
                         {.seed = 4, .chaos = DelaysPartialWritesShortReads()});
  auto p = Connect(uv, client_loop, server_loop);
  const std::string up = Pattern(500000, 3);
  const std::string down = Pattern(400000, 4);
  size_t up_taken = WriteAll(*p->client, up, 5000);
  size_t down_taken = WriteAll(*p->server, down, 7000);
  EXPECT_GT(p->client->queued_write_bytes(), 0u);
  RunUntilExchanged(uv, *p, up, up_taken, down, down_taken);
  EXPECT_TRUE(p->server_rec.data == up) << "upstream bytes differ";
  EXPECT_TRUE(p->client_rec.data == down) << "downstream bytes differ";
  EXPECT_EQ(up_taken + p->client_rec.written, up.size());
  EXPECT_EQ(down_taken + p->server_rec.written, down.size());
  EXPECT_EQ(p->client->queued_write_bytes(), 0u);
  EXPECT_FALSE(p->client_rec.end.has_value());
  EXPECT_FALSE(p->server_rec.end.has_value());
  for (const FaultyLoop* l : {&client_loop, &server_loop}) {
    const FaultCounts& f = l->faults();
    EXPECT_GT(f.delays, 0u) << f.ToString();
    EXPECT_GT(f.partial_writes, 0u) << f.ToString();
    EXPECT_GT(f.short_reads, 0u) << f.ToString();
    EXPECT_EQ(f.resets, 0u) << f.ToString();
  }

  // Shutdown waits for held bytes, then the peer sees end of stream.
  ChaosConfig hold;
  hold.clog_probability = 1;
  hold.stall_min = hold.stall_max = absl::Milliseconds(30);
  client_loop.set_chaos(hold);
  const std::string tail = Pattern(1000, 5);
  ASSERT_EQ(*p->client->Write(tail), 0u);
  p->client->Shutdown();
  EXPECT_FALSE(p->client->Write(tail).ok());
  uv.RunUntil([&] { return p->server_rec.end.has_value(); },
              uv.Now() + kPatience);
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_TRUE(p->server_rec.end->ok()) << *p->server_rec.end;
  EXPECT_EQ(p->server_rec.data, up + tail);
}

TEST(FaultyLoop, ResetFailsBothSidesHereAndResetsThePeer) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 5});
  FaultyLoop client_loop(uv, {.seed = 5});
  // The server is a plain UvLoop stream: it sees what the kernel sends.
  auto p = Connect(uv, client_loop, uv, /*client_reads=*/false);
  // Unread bytes at the client make its close a real RST.
  ASSERT_TRUE(p->server->Write(Pattern(10000, 6)).ok());
  uv.RunUntil([] { return false; }, uv.Now() + absl::Milliseconds(50));

  ChaosConfig reset;
  reset.reset_probability = 1;
  client_loop.set_chaos(reset);
  absl::StatusOr<size_t> n = p->client->Write(Pattern(100, 7));
  ASSERT_TRUE(n.ok()) << n.status();  // taken; the reset comes later
  EXPECT_EQ(*n, 0u);
  EXPECT_FALSE(p->client_rec.write_error.has_value());  // not inside Write
  ASSERT_TRUE(p->client->StartReading().ok());
  EXPECT_FALSE(p->client_rec.end.has_value());
  uv.RunUntil(
      [&] {
        return p->client_rec.end.has_value() && p->server_rec.end.has_value();
      },
      uv.Now() + kPatience);
  ASSERT_TRUE(p->client_rec.write_error.has_value());
  EXPECT_EQ(p->client_rec.write_error->code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(p->client_rec.end.has_value());
  EXPECT_EQ(p->client_rec.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p->client_rec.written, 0u);
  EXPECT_EQ(p->client->Write("x").status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_EQ(p->server_rec.end->code(), absl::StatusCode::kUnavailable)
      << *p->server_rec.end;
  EXPECT_EQ(client_loop.faults().resets, 1u);
}

TEST(FaultyLoop, NoCallbackAfterTheHandlerDestroysTheStreamOnReset) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 6});
  FaultyLoop client_loop(uv, {.seed = 6});
  auto p = Connect(uv, client_loop, uv);
  p->client_rec.on_write_error = [&] { p->client.reset(); };
  ChaosConfig reset;
  reset.reset_probability = 1;
  client_loop.set_chaos(reset);
  ASSERT_TRUE(p->client->Write(Pattern(100, 8)).ok());
  uv.RunUntil([&] { return p->server_rec.end.has_value(); },
              uv.Now() + kPatience);
  EXPECT_EQ(p->client, nullptr);
  EXPECT_TRUE(p->client_rec.write_error.has_value());
  EXPECT_FALSE(p->client_rec.end.has_value());  // destroyed before it
  EXPECT_TRUE(p->server_rec.end.has_value());
}

TEST(FaultyLoop, ResetOnReadEndsTheStreamAfterTheRead) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 7});
  ChaosConfig reset;
  reset.reset_probability = 1;
  FaultyLoop server_loop(uv, {.seed = 7});
  auto p = Connect(uv, uv, server_loop);
  server_loop.set_chaos(reset);  // accepted already: resets on its next read
  ASSERT_TRUE(p->client->Write("hello").ok());
  uv.RunUntil(
      [&] {
        return p->server_rec.end.has_value() && p->client_rec.end.has_value();
      },
      uv.Now() + kPatience);
  EXPECT_FALSE(p->server_rec.data.empty());
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_EQ(p->server_rec.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(p->server_rec.write_error.has_value());  // nothing queued
  EXPECT_TRUE(p->client_rec.end.has_value());           // EOF or reset
}

TEST(FaultyLoop, RefusedConnectFailsWithUnavailableOnALaterTurn) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 8});
  ChaosConfig refuse;
  refuse.connect_refused_probability = 1;
  FaultyLoop loop(uv, {.seed = 8, .chaos = refuse});
  auto listener =
      uv.Listen(driver::Address::Loopback(0), {},
                [](absl::StatusOr<std::unique_ptr<driver::Stream>>) {
                  ADD_FAILURE() << "nothing should connect";
                });
  ASSERT_TRUE(listener.ok());
  std::optional<absl::Status> connected;
  auto s = loop.Connect((*listener)->address(),
                        [&](absl::Status st) { connected = st; });
  ASSERT_TRUE(s.ok());
  Recorder rec(kReadSize);
  (*s)->SetHandler(&rec);
  EXPECT_TRUE((*s)->StartReading().ok());
  EXPECT_EQ(*(*s)->Write("queued"), 0u);
  EXPECT_FALSE(connected.has_value());  // not inside Connect
  uv.RunUntil([&] { return connected.has_value(); }, uv.Now() + kPatience);
  ASSERT_TRUE(connected.has_value());
  EXPECT_EQ(connected->code(), absl::StatusCode::kUnavailable) << *connected;
  EXPECT_EQ((*s)->Write("x").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*s)->queued_write_bytes(), 0u);
  uv.RunUntil([] { return false; }, uv.Now() + absl::Milliseconds(20));
  // The callback alone reports it, as UvLoop does.
  EXPECT_FALSE(rec.end.has_value());
  EXPECT_FALSE(rec.write_error.has_value());
  EXPECT_EQ(loop.faults().connects_refused, 1u);

  // Destroyed before its turn: the callback never runs.
  bool called = false;
  auto s2 = loop.Connect((*listener)->address(),
                         [&](absl::Status) { called = true; });
  ASSERT_TRUE(s2.ok());
  s2->reset();
  uv.RunUntil([] { return false; }, uv.Now() + absl::Milliseconds(20));
  EXPECT_FALSE(called);
}

TEST(FaultyLoop, HungConnectNeverCallsBack) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 9});
  ChaosConfig hang;
  hang.connect_hang_probability = 1;
  FaultyLoop loop(uv, {.seed = 9, .chaos = hang});
  bool called = false;
  auto s = loop.Connect(driver::Address::Loopback(9),
                        [&](absl::Status) { called = true; });
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*(*s)->Write("queued"), 0u);
  uv.RunUntil([] { return false; }, uv.Now() + absl::Milliseconds(50));
  EXPECT_FALSE(called);
  EXPECT_EQ(loop.faults().connects_hung, 1u);
}

TEST(FaultyLoop, TimersAndPostsAreTheInnerLoops) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 10});
  FaultyLoop loop(uv, {.seed = 10});
  int fired = 0;
  auto timer = loop.CreateTimer([&] { ++fired; });
  timer->Start(loop.Now() + absl::Milliseconds(1));
  loop.Post([&] { ++fired; });
  EXPECT_EQ(loop.Now(), uv.Now());
  EXPECT_TRUE(
      loop.RunUntil([&] { return fired == 2; }, loop.Now() + kPatience));
}

TEST(FaultyLoop, ResolveIsTheInnerLoopsUntouchedByThePlan) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 1});
  ChaosConfig storm;
  storm.resolve_failed_probability = 1;  // not applied on real sockets
  storm.connect_refused_probability = 1;
  FaultyLoop loop(uv, {.seed = 1, .chaos = storm});
  std::optional<absl::StatusOr<std::vector<driver::Address>>> answer;
  auto r = loop.Resolve("localhost", 80, [&](auto a) { answer = a; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(answer.has_value());
  ASSERT_TRUE(loop.RunUntil([&] { return answer.has_value(); },
                            loop.Now() + kPatience));
  ASSERT_TRUE(answer->ok()) << answer->status();
  EXPECT_FALSE((*answer)->empty());
  EXPECT_EQ((*answer)->front().port(), 80);
}

// ---- TLS under faults on real sockets (issue 17) ----

Task<void> EchoTls(transport::ServerTransport& server) {
  while (std::optional<transport::IncomingMessage> m =
             co_await server.NextMessage()) {
    if (m->is_request()) {
      EXPECT_TRUE(server.Reply(*m, m->envelope.payload).ok());
    }
  }
}

struct TlsOutcomes {
  int ok = 0;
  int failed = 0;  // a legal transport outcome
  int done = 0;
};

// One lane: `n` requests one after another, each payload naming itself, so
// a reply that is not its own request's bytes shows.
Task<void> TlsLane(transport::ClientTransport& client, driver::Address to,
                   int lane, int n, TlsOutcomes* out) {
  for (int i = 0; i < n; ++i) {
    transport::RequestOptions o;
    o.timeout = absl::Seconds(5);
    o.idempotent = i % 2 == 0;
    const std::string req =
        absl::StrCat("lane ", lane, " request ", i, " ", Pattern(1000 + i, i));
    absl::StatusOr<std::string> r =
        co_await client.Request<std::string>(to, req, o);
    ++out->done;
    if (r.ok()) {
      EXPECT_TRUE(*r == req) << "lane " << lane << " request " << i
                             << ": a reply that is not its request's echo";
      ++out->ok;
      continue;
    }
    ++out->failed;
    const absl::StatusCode code = r.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kUnavailable ||
                code == absl::StatusCode::kAborted ||
                code == absl::StatusCode::kDeadlineExceeded)
        << "lane " << lane << " request " << i << ": " << r.status();
    if (o.idempotent) {
      EXPECT_NE(code, absl::StatusCode::kAborted) << r.status();
    }
  }
}

TEST(FaultyLoop, TlsRequestsUnderFaultsToARealTlsServerEndLegally) {
  driver::UvLoop uv(driver::UvLoopOptions{.seed = 11});
  // Certificates made in process (as the simulation's), for 127.0.0.1.
  absl::StatusOr<SimCertificateAuthority> ca =
      SimCertificateAuthority::Create(11);
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<SimCertificate> server_cert =
      ca->Issue({.common_name = "localhost", .ip_addresses = {"127.0.0.1"}});
  absl::StatusOr<SimCertificate> client_cert = ca->Issue(
      {.common_name = "client-0", .uris = {"spiffe://moonpool.sim/client-0"}});
  ASSERT_TRUE(server_cert.ok() && client_cert.ok());
  auto server_tls =
      driver::TlsContext::CreateServer(ca->ServerConfig(*server_cert));
  auto client_tls =
      driver::TlsContext::CreateClient(ca->ClientConfig(&*client_cert));
  ASSERT_TRUE(server_tls.ok()) << server_tls.status();
  ASSERT_TRUE(client_tls.ok()) << client_tls.status();

  // The server is a plain UvLoop TLS ServerTransport; only the client's
  // side of each connection is faulty (its writes split and held, its
  // reads cut short, now and then its connection reset).
  transport::ServerOptions so;
  so.tls = *server_tls;
  auto server =
      transport::ServerTransport::Bind(uv, driver::Address::Loopback(0), so);
  ASSERT_TRUE(server.ok()) << server.status();
  driver::TaskScope server_tasks(
      uv, [](absl::Status s) { ADD_FAILURE() << "server task failed: " << s; });
  server_tasks.Spawn(EchoTls(**server));

  ChaosConfig chaos = DelaysPartialWritesShortReads();
  chaos.reset_probability = 0.005;
  FaultyLoop loop(uv, {.seed = 11, .chaos = chaos});
  transport::ClientOptions co;
  co.peer.tls = *client_tls;
  co.peer.backoff.initial = absl::Milliseconds(5);
  co.peer.backoff.max = absl::Milliseconds(50);
  {
    transport::ClientTransport client(loop, co);
    driver::TaskScope client_tasks(loop, [](absl::Status s) {
      ADD_FAILURE() << "client task failed: " << s;
    });
    constexpr int kLanes = 4, kPerLane = 100;
    TlsOutcomes out;
    for (int l = 0; l < kLanes; ++l) {
      client_tasks.Spawn(
          TlsLane(client, (*server)->address(), l, kPerLane, &out));
    }
    uv.RunUntil([&] { return out.done == kLanes * kPerLane; },
                uv.Now() + absl::Seconds(120));
    EXPECT_EQ(out.done, kLanes * kPerLane);
    // Most succeed: the faults delay and split, and resets are rare.
    EXPECT_GE(out.ok, out.done * 8 / 10)
        << out.failed << " failed; " << loop.faults().ToString();
    const FaultCounts& f = loop.faults();
    EXPECT_GT(f.partial_writes, 0u) << f.ToString();
    EXPECT_GT(f.short_reads, 0u) << f.ToString();
    EXPECT_GT(f.delays, 0u) << f.ToString();
    // Resets, and so new connections, each with its own TLS handshake.
    EXPECT_GT(f.resets, 0u) << f.ToString();
    const transport::ServerStats st = (*server)->stats();
    EXPECT_GT(st.tls_handshakes, 1u) << f.ToString();
    // Every connection the server kept was a verified TLS one.
    EXPECT_EQ(st.protocol_errors, 0u);
    client_tasks.Clear();
    client.Close();
  }
  server_tasks.Clear();
  server->reset();
  uv.RunUntil([] { return false; }, uv.Now() + absl::Milliseconds(20));
}

}  // namespace
}  // namespace moonpool::chaos
