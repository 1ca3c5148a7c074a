// TLS in the simulation (issue 17): certificates made from a seed, TLS
// streams over simulated connections whose randomness and calendar are the
// SimLoop's (so a seed replays byte for byte on the wire), and a bit flipped
// inside a TLS record ending the stream with DataLoss before any of it
// reaches the reader.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/sim_certificates.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/driver/tls_stream.h"
#include "sim_test_util.h"

namespace moonpool::chaos {
namespace {

using testing::Pattern;
using testing::Recorder;

constexpr char kServerName[] = "server0.sim";
constexpr char kClientUri[] = "spiffe://moonpool.sim/client-0";

struct Pki {
  std::string ca_pem;
  SimCertificate server;
  SimCertificate client;
  std::shared_ptr<const driver::TlsContext> server_context;
  std::shared_ptr<const driver::TlsContext> client_context;
};

Pki MakePki(uint64_t seed) {
  absl::StatusOr<SimCertificateAuthority> ca =
      SimCertificateAuthority::Create(seed);
  EXPECT_TRUE(ca.ok()) << ca.status();
  Pki p;
  p.ca_pem = ca->certificate_pem();
  absl::StatusOr<SimCertificate> server =
      ca->Issue({.common_name = kServerName,
                 .dns_names = {kServerName},
                 .ip_addresses = {"10.0.0.3"}});
  absl::StatusOr<SimCertificate> client =
      ca->Issue({.common_name = "client-0", .uris = {kClientUri}});
  EXPECT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(client.ok()) << client.status();
  p.server = *server;
  p.client = *client;
  auto sc = driver::TlsContext::CreateServer(ca->ServerConfig(p.server));
  auto cc = driver::TlsContext::CreateClient(ca->ClientConfig(&p.client));
  EXPECT_TRUE(sc.ok()) << sc.status();
  EXPECT_TRUE(cc.ok()) << cc.status();
  if (sc.ok()) p.server_context = *sc;
  if (cc.ok()) p.client_context = *cc;
  return p;
}

TEST(SimCertificates, ASeedMakesTheSameCertificatesByteForByte) {
  const Pki a = MakePki(7);
  const Pki b = MakePki(7);
  const Pki c = MakePki(8);
  EXPECT_EQ(a.ca_pem, b.ca_pem);
  EXPECT_EQ(a.server.certificate_pem, b.server.certificate_pem);
  EXPECT_EQ(a.server.private_key_pem, b.server.private_key_pem);
  EXPECT_EQ(a.client.certificate_pem, b.client.certificate_pem);
  EXPECT_NE(a.ca_pem, c.ca_pem);
  EXPECT_NE(a.server.private_key_pem, c.server.private_key_pem);
  // Each Issue takes the next key.
  EXPECT_NE(a.server.private_key_pem, a.client.private_key_pem);
  EXPECT_NE(a.server_context, nullptr);
  EXPECT_NE(a.client_context, nullptr);
}

TEST(SimCertificates, ABadIpLiteralIsInvalidArgument) {
  absl::StatusOr<SimCertificateAuthority> ca =
      SimCertificateAuthority::Create(1);
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<SimCertificate> leaf =
      ca->Issue({.common_name = "x", .ip_addresses = {"10.0.0.300"}});
  EXPECT_EQ(leaf.status().code(), absl::StatusCode::kInvalidArgument)
      << leaf.status();
}

// A TLS client on host 10.0.0.2 and server on 10.0.0.3, over the SimLoop's
// simulated TCP; each end records its handshake and what it reads.
struct TlsPair {
  std::unique_ptr<driver::Listener> listener;
  std::unique_ptr<driver::Stream> raw_client;
  std::optional<absl::Status> connected;
  std::unique_ptr<driver::TlsStream> client;
  std::unique_ptr<driver::TlsStream> server;
  std::optional<absl::Status> client_handshake;
  std::optional<absl::Status> server_handshake;
  Recorder client_rec{64 * 1024};
  Recorder server_rec{64 * 1024};
};

std::unique_ptr<TlsPair> ConnectTls(SimLoop& sim, const Pki& pki) {
  SimHost& from = **sim.AddHost("10.0.0.2");
  SimHost& to = **sim.AddHost("10.0.0.3");
  auto p = std::make_unique<TlsPair>();
  TlsPair* raw = p.get();
  auto l = to.Listen(
      to.Addr(4433), {},
      [raw, &to, &pki](absl::StatusOr<std::unique_ptr<driver::Stream>> s) {
        ASSERT_TRUE(s.ok()) << s.status();
        auto tls = driver::TlsStream::Accept(
            to, std::move(*s), pki.server_context, [raw](absl::Status st) {
              raw->server_handshake = st;
              if (!st.ok()) return;
              raw->server->SetHandler(&raw->server_rec);
              EXPECT_TRUE(raw->server->StartReading().ok());
            });
        ASSERT_TRUE(tls.ok()) << tls.status();
        raw->server = std::move(*tls);
      });
  EXPECT_TRUE(l.ok()) << l.status();
  p->listener = std::move(*l);
  auto c = from.Connect(to.Addr(4433),
                        [raw](absl::Status s) { raw->connected = s; });
  EXPECT_TRUE(c.ok()) << c.status();
  p->raw_client = std::move(*c);
  sim.RunUntil([&] { return raw->connected.has_value(); },
               sim.Now() + absl::Seconds(10));
  EXPECT_TRUE(raw->connected.has_value() && raw->connected->ok());
  auto tls = driver::TlsStream::Connect(
      from, std::move(p->raw_client), pki.client_context, kServerName,
      [raw](absl::Status st) {
        raw->client_handshake = st;
        if (!st.ok()) return;
        raw->client->SetHandler(&raw->client_rec);
        EXPECT_TRUE(raw->client->StartReading().ok());
      });
  EXPECT_TRUE(tls.ok()) << tls.status();
  if (tls.ok()) p->client = std::move(*tls);
  sim.RunUntil(
      [&] {
        return raw->client_handshake.has_value() &&
               raw->server_handshake.has_value();
      },
      sim.Now() + absl::Seconds(30));
  return p;
}

struct Exchange {
  std::optional<absl::Status> client_handshake;
  std::optional<absl::Status> server_handshake;
  bool bytes_intact = false;
  uint64_t trace_hash = 0;
  uint64_t wire_hash = 0;
  int tls_random_fills = 0;
  std::string server_subject;
  std::vector<std::string> client_uris;  // as the server saw them
};

// A handshake and 100 KB each way on a fresh SimLoop of `seed` that starts
// at `start`.
Exchange RunExchange(uint64_t seed, absl::Time start) {
  const Pki pki = MakePki(seed);
  Exchange e;
  SimLoopOptions o;
  o.seed = seed;
  o.start = start;
  o.trace.keep_full = true;
  SimLoop sim(o);
  auto p = ConnectTls(sim, pki);
  e.client_handshake = p->client_handshake;
  e.server_handshake = p->server_handshake;
  if (e.client_handshake == absl::OkStatus() &&
      e.server_handshake == absl::OkStatus()) {
    if (auto id = p->server->peer_identity(); id != nullptr) {
      e.client_uris = id->uris;
    }
    if (auto id = p->client->peer_identity(); id != nullptr) {
      e.server_subject = id->subject;
    }
    const std::string up = Pattern(100000, 1);
    const std::string down = Pattern(100000, 2);
    testing::WriteAll(*p->client, up, 7000);
    testing::WriteAll(*p->server, down, 5000);
    sim.RunUntil(
        [&] {
          return p->server_rec.data.size() >= up.size() &&
                 p->client_rec.data.size() >= down.size();
        },
        sim.Now() + absl::Seconds(30));
    e.bytes_intact = p->server_rec.data == up && p->client_rec.data == down;
  }
  p->client.reset();
  p->server.reset();
  p->listener.reset();
  EXPECT_TRUE(sim.CheckInvariants().ok()) << sim.CheckInvariants();
  e.trace_hash = sim.trace().hash();
  e.wire_hash = sim.wire_hash();
  for (const TraceEvent& t : sim.trace().full()) {
    if (t.kind == TraceKind::kTlsRandom) ++e.tls_random_fills;
  }
  return e;
}

const absl::Time kSimStart = SimLoopOptions{}.start;

TEST(SimTls, MutualTlsOnTheSimulatedNetworkVerifiesBothEnds) {
  const Exchange e = RunExchange(11, kSimStart);
  ASSERT_TRUE(e.client_handshake.has_value());
  ASSERT_TRUE(e.server_handshake.has_value());
  EXPECT_TRUE(e.client_handshake->ok()) << *e.client_handshake;
  EXPECT_TRUE(e.server_handshake->ok()) << *e.server_handshake;
  EXPECT_TRUE(e.bytes_intact);
  EXPECT_EQ(e.client_uris, std::vector<std::string>{kClientUri});
  EXPECT_NE(e.server_subject.find(kServerName), std::string::npos)
      << e.server_subject;
  // OpenSSL's randomness came from the loop (keys, hello randoms).
  EXPECT_GT(e.tls_random_fills, 0);
}

TEST(SimTls, ASeedReplaysTheSameBytesOnTheWire) {
  const Exchange a = RunExchange(12, kSimStart);
  const Exchange b = RunExchange(12, kSimStart);
  ASSERT_TRUE(a.bytes_intact);
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.wire_hash, b.wire_hash);
  // Another seed: other keys and randoms, other ciphertext.
  const Exchange c = RunExchange(13, kSimStart);
  ASSERT_TRUE(c.bytes_intact);
  EXPECT_NE(a.wire_hash, c.wire_hash);
}

TEST(SimTls, CertificatesAreCheckedAgainstTheVirtualCalendar) {
  // The certificates end on 2040-01-01; a simulation that starts in 2041
  // sees them expired, whatever the machine's clock says.
  const Exchange e = RunExchange(
      14, absl::FromCivil(absl::CivilDay(2041, 1, 1), absl::UTCTimeZone()));
  ASSERT_TRUE(e.client_handshake.has_value());
  EXPECT_EQ(e.client_handshake->code(), absl::StatusCode::kUnauthenticated)
      << *e.client_handshake;
  EXPECT_FALSE(e.bytes_intact);
}

TEST(SimTls, ABitFlippedInsideARecordEndsReadingWithDataLoss) {
  const Pki pki = MakePki(15);
  SimLoop sim({.seed = 15});
  auto p = ConnectTls(sim, pki);
  ASSERT_TRUE(p->client_handshake == absl::OkStatus());
  ASSERT_TRUE(p->server_handshake == absl::OkStatus());
  const std::string first = Pattern(3000, 3);
  testing::WriteAll(*p->client, first, 3000);
  sim.RunUntil([&] { return p->server_rec.data.size() >= first.size(); },
               sim.Now() + absl::Seconds(10));
  ASSERT_EQ(p->server_rec.data, first);

  // One bit of the next segment: a 16 KiB record (header 5 bytes of it),
  // so the flip lands in its ciphertext or tag for this seed.
  ChaosConfig flip;
  flip.bit_flip_probability = 1;
  flip.max_bit_flips = 1;
  sim.set_chaos(flip);
  const std::string second = Pattern(16 * 1024, 4);
  testing::WriteAll(*p->client, second, second.size());
  sim.RunUntil([&] { return p->server_rec.end.has_value(); },
               sim.Now() + absl::Seconds(10));
  sim.set_chaos(ChaosConfig{});
  ASSERT_TRUE(p->server_rec.end.has_value());
  EXPECT_EQ(p->server_rec.end->code(), absl::StatusCode::kDataLoss)
      << *p->server_rec.end;
  // Nothing of the corrupted record reached the reader.
  EXPECT_EQ(p->server_rec.data, first);
  // The flip was the plan's, recorded: the simulated stream itself kept
  // its promises.
  EXPECT_TRUE(sim.CheckInvariants().ok()) << sim.CheckInvariants();
  p->client.reset();
  p->server.reset();
}

}  // namespace
}  // namespace moonpool::chaos
