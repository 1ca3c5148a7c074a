// TlsStream over real loopback sockets (UvLoop), with the certificates the
// test PKI script made (test_certs.h): each test pins down one promise of
// tls_stream.h / tls_context.h: the handshake's outcome and its Status,
// bytes both ways whole and counted, the peer's identity, close_notify, the
// handshake timeout, and a flipped bit failing the stream instead of
// reaching the handler.
#include "moonpool/driver/tls_stream.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/driver/uv_loop.h"
#include "test_certs.h"

namespace moonpool::driver {
namespace {

using test_certs::ReadTestCert;
using test_certs::TestCertPath;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kPatience = absl::Seconds(20);

class Recorder : public StreamHandler {
 public:
  absl::Span<char> ReadBuffer(size_t) override {
    buffer_.resize(64 * 1024);
    return absl::MakeSpan(buffer_);
  }
  void OnRead(size_t n) override { received.append(buffer_.data(), n); }
  void OnReadEnd(absl::Status status) override { end = std::move(status); }
  void OnWritten(size_t n) override { written += n; }
  void OnWriteError(absl::Status status) override {
    write_error = std::move(status);
  }

  std::string received;
  std::optional<absl::Status> end;
  size_t written = 0;
  std::optional<absl::Status> write_error;

 private:
  std::vector<char> buffer_;
};

TlsConfig ServerConfig(absl::string_view cert = "server") {
  TlsConfig c;
  c.certificate_chain_file = TestCertPath(absl::StrCat(cert, ".pem"));
  c.private_key_file = TestCertPath(absl::StrCat(cert, ".key"));
  c.trusted_ca_file = TestCertPath("ca.pem");
  return c;
}

TlsConfig ClientConfig(absl::string_view ca = "ca") {
  TlsConfig c;
  c.trusted_ca_file = TestCertPath(absl::StrCat(ca, ".pem"));
  return c;
}

// A listener and a TLS server stream for the first connection; a TLS
// client stream toward it; both handshakes' outcomes.
struct Pair {
  explicit Pair(UvLoop& loop_in) : loop(loop_in) {}

  void Start(std::shared_ptr<const TlsContext> server_ctx,
             std::shared_ptr<const TlsContext> client_ctx,
             absl::string_view server_name = "localhost") {
    absl::StatusOr<std::unique_ptr<Listener>> l = loop.Listen(
        Address::Loopback(0), {},
        [this, server_ctx](absl::StatusOr<std::unique_ptr<Stream>> s) {
          ASSERT_TRUE(s.ok()) << s.status();
          absl::StatusOr<std::unique_ptr<TlsStream>> t =
              TlsStream::Accept(loop, std::move(*s), server_ctx,
                                [this](absl::Status st) { server_done = st; });
          ASSERT_TRUE(t.ok()) << t.status();
          server = std::move(*t);
        });
    ASSERT_TRUE(l.ok()) << l.status();
    listener = std::move(*l);
    std::string name(server_name);
    absl::StatusOr<std::unique_ptr<Stream>> raw = loop.Connect(
        listener->address(), [this, client_ctx, name](absl::Status st) {
          ASSERT_TRUE(st.ok()) << st;
          absl::StatusOr<std::unique_ptr<TlsStream>> t =
              TlsStream::Connect(loop, std::move(raw_client), client_ctx, name,
                                 [this](absl::Status s) {
                                   client_done = s;
                                   if (destroy_client_in_callback) {
                                     client.reset();
                                   }
                                 });
          ASSERT_TRUE(t.ok()) << t.status();
          client = std::move(*t);
        });
    ASSERT_TRUE(raw.ok()) << raw.status();
    raw_client = std::move(*raw);
  }

  bool RunUntilBothDone() {
    return loop.RunUntil(
        [&] { return server_done.has_value() && client_done.has_value(); },
        loop.Now() + kPatience);
  }

  UvLoop& loop;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Stream> raw_client;
  std::unique_ptr<TlsStream> server;
  std::unique_ptr<TlsStream> client;
  std::optional<absl::Status> server_done;
  std::optional<absl::Status> client_done;
  bool destroy_client_in_callback = false;
};

std::shared_ptr<const TlsContext> Server(TlsConfig c) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> ctx =
      TlsContext::CreateServer(c);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

std::shared_ptr<const TlsContext> Client(TlsConfig c) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> ctx =
      TlsContext::CreateClient(c);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

TEST(TlsContextTest, ServerWithoutCertificateIsInvalidArgument) {
  TlsConfig c;
  absl::StatusOr<std::shared_ptr<const TlsContext>> ctx =
      TlsContext::CreateServer(c);
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TlsContextTest, MissingFileNamesTheSetting) {
  TlsConfig c = ServerConfig();
  c.private_key_file = "/nonexistent/key.pem";
  absl::StatusOr<std::shared_ptr<const TlsContext>> ctx =
      TlsContext::CreateServer(c);
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ctx.status().message(), HasSubstr("private_key_file"));
}

TEST(TlsContextTest, KeyOfAnotherCertificateIsRefused) {
  TlsConfig c = ServerConfig();
  c.private_key_file = TestCertPath("client.key");
  absl::StatusOr<std::shared_ptr<const TlsContext>> ctx =
      TlsContext::CreateServer(c);
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ctx.status().message(), HasSubstr("does not match"));
}

TEST(TlsContextTest, RequiringClientCertificatesNeedsTrustedCas) {
  TlsConfig c = ServerConfig();
  c.trusted_ca_file.clear();
  c.require_client_certificate = true;
  EXPECT_EQ(TlsContext::CreateServer(c).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TlsContextTest, PemTextWorksLikeFiles) {
  TlsConfig c;
  c.certificate_chain_pem = ReadTestCert("server.pem");
  c.private_key_pem = ReadTestCert("server.key");
  c.trusted_ca_pem = ReadTestCert("ca.pem");
  EXPECT_TRUE(TlsContext::CreateServer(c).ok());
  c.private_key_pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n";
  EXPECT_EQ(TlsContext::CreateServer(c).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TlsStreamTest, HandshakeThenBytesBothWaysWholeAndCounted) {
  UvLoop loop;
  Pair p(loop);
  p.Start(Server(ServerConfig()), Client(ClientConfig()));
  ASSERT_TRUE(p.RunUntilBothDone());
  ASSERT_TRUE(p.server_done->ok()) << *p.server_done;
  ASSERT_TRUE(p.client_done->ok()) << *p.client_done;
  EXPECT_TRUE(p.client->handshake_done());
  EXPECT_THAT(p.client->cipher(), HasSubstr("TLS_"));
  // No client certificate: the server knows nothing of who it is.
  EXPECT_EQ(p.server->peer_identity(), nullptr);
  ASSERT_NE(p.client->peer_identity(), nullptr);
  EXPECT_THAT(p.client->peer_identity()->subject, HasSubstr("CN=localhost"));
  EXPECT_THAT(p.client->peer_identity()->ip_addresses,
              ElementsAre("127.0.0.1", "::1"));

  Recorder at_server, at_client;
  p.server->SetHandler(&at_server);
  p.client->SetHandler(&at_client);
  ASSERT_TRUE(p.server->StartReading().ok());
  ASSERT_TRUE(p.client->StartReading().ok());
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  size_t taken_at_once = 0;
  for (size_t off = 0; off < big.size(); off += 100'000) {
    absl::StatusOr<size_t> n = p.client->Write(absl::MakeConstSpan(big).subspan(
        off, std::min<size_t>(100'000, big.size() - off)));
    ASSERT_TRUE(n.ok()) << n.status();
    taken_at_once += *n;
  }
  absl::StatusOr<size_t> n = p.server->Write(absl::MakeConstSpan("pong", 4));
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE(loop.RunUntil(
      [&] {
        return at_server.received.size() == big.size() &&
               at_client.received.size() == 4 &&
               taken_at_once + at_client.written == big.size();
      },
      loop.Now() + kPatience));
  EXPECT_TRUE(at_server.received == big);
  EXPECT_EQ(at_client.received, "pong");
  EXPECT_EQ(p.client->queued_write_bytes(), 0u);
}

TEST(TlsStreamTest, MutualTlsGivesTheServerTheClientsIdentity) {
  UvLoop loop;
  TlsConfig s = ServerConfig();
  s.require_client_certificate = true;
  TlsConfig c = ClientConfig();
  c.certificate_chain_file = TestCertPath("client.pem");
  c.private_key_file = TestCertPath("client.key");
  Pair p(loop);
  p.Start(Server(s), Client(c));
  ASSERT_TRUE(p.RunUntilBothDone());
  ASSERT_TRUE(p.server_done->ok()) << *p.server_done;
  ASSERT_TRUE(p.client_done->ok()) << *p.client_done;
  std::shared_ptr<const PeerIdentity> id = p.server->peer_identity();
  ASSERT_NE(id, nullptr);
  EXPECT_THAT(id->subject, HasSubstr("CN=client-a"));
  EXPECT_THAT(id->uris, ElementsAre("spiffe://moonpool.test/client-a"));
  EXPECT_THAT(id->dns_names, ElementsAre("client-a.moonpool.test"));
}

// The client's side of a failed verification: Unauthenticated, saying why.
void ExpectClientRefuses(absl::string_view server_cert, absl::string_view ca,
                         absl::string_view name, absl::string_view why) {
  UvLoop loop;
  Pair p(loop);
  p.Start(Server(ServerConfig(server_cert)), Client(ClientConfig(ca)), name);
  ASSERT_TRUE(loop.RunUntil([&] { return p.client_done.has_value(); },
                            loop.Now() + kPatience));
  EXPECT_EQ(p.client_done->code(), absl::StatusCode::kUnauthenticated)
      << *p.client_done;
  EXPECT_THAT(p.client_done->message(), HasSubstr(why));
  // The server hears of it (the client's alert), not a hang.
  ASSERT_TRUE(loop.RunUntil([&] { return p.server_done.has_value(); },
                            loop.Now() + kPatience));
  EXPECT_FALSE(p.server_done->ok());
}

TEST(TlsStreamTest, UnknownCaIsUnauthenticated) {
  ExpectClientRefuses("other-server", "ca", "localhost",
                      "unable to get local issuer certificate");
}

TEST(TlsStreamTest, ExpiredCertificateIsUnauthenticated) {
  ExpectClientRefuses("expired", "ca", "localhost", "expired");
}

TEST(TlsStreamTest, WrongNameIsUnauthenticated) {
  ExpectClientRefuses("wrong-name", "ca", "localhost", "mismatch");
}

TEST(TlsStreamTest, WrongIpIsUnauthenticated) {
  ExpectClientRefuses("server", "ca", "10.1.2.3", "mismatch");
}

TEST(TlsStreamTest, MissingClientCertificateWhenRequired) {
  UvLoop loop;
  TlsConfig s = ServerConfig();
  s.require_client_certificate = true;
  Pair p(loop);
  p.Start(Server(s), Client(ClientConfig()));
  ASSERT_TRUE(loop.RunUntil([&] { return p.server_done.has_value(); },
                            loop.Now() + kPatience));
  EXPECT_EQ(p.server_done->code(), absl::StatusCode::kUnauthenticated)
      << *p.server_done;
  EXPECT_THAT(p.server_done->message(), HasSubstr("no certificate"));
  // In TLS 1.3 the client's handshake ends before the server has checked
  // its certificate: the refusal comes as an alert on its first read.
  ASSERT_TRUE(loop.RunUntil([&] { return p.client_done.has_value(); },
                            loop.Now() + kPatience));
  Recorder r;
  if (p.client_done->ok()) {
    p.client->SetHandler(&r);
    ASSERT_TRUE(p.client->StartReading().ok());
    ASSERT_TRUE(loop.RunUntil([&] { return r.end.has_value(); },
                              loop.Now() + kPatience));
    EXPECT_EQ(r.end->code(), absl::StatusCode::kUnauthenticated) << *r.end;
    EXPECT_THAT(r.end->message(), HasSubstr("certificate required"));
  } else {
    EXPECT_EQ(p.client_done->code(), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_TRUE(r.received.empty());
}

TEST(TlsStreamTest, ClientCertificateFromAnotherCaIsRefused) {
  UvLoop loop;
  TlsConfig s = ServerConfig();
  s.require_client_certificate = true;
  TlsConfig c = ClientConfig();
  c.certificate_chain_file = TestCertPath("other-client.pem");
  c.private_key_file = TestCertPath("other-client.key");
  Pair p(loop);
  p.Start(Server(s), Client(c));
  ASSERT_TRUE(loop.RunUntil([&] { return p.server_done.has_value(); },
                            loop.Now() + kPatience));
  EXPECT_EQ(p.server_done->code(), absl::StatusCode::kUnauthenticated)
      << *p.server_done;
  EXPECT_THAT(p.server_done->message(), HasSubstr("client's certificate"));
}

TEST(TlsStreamTest, HandshakeThatNeverFinishesTimesOut) {
  UvLoop loop;
  TlsConfig s = ServerConfig();
  s.handshake_timeout = absl::Milliseconds(200);
  std::shared_ptr<const TlsContext> ctx = Server(s);
  std::unique_ptr<TlsStream> server;
  std::optional<absl::Status> done;
  absl::StatusOr<std::unique_ptr<Listener>> l = loop.Listen(
      Address::Loopback(0), {},
      [&](absl::StatusOr<std::unique_ptr<Stream>> st) {
        ASSERT_TRUE(st.ok());
        auto t = TlsStream::Accept(loop, std::move(*st), ctx,
                                   [&](absl::Status x) { done = x; });
        ASSERT_TRUE(t.ok());
        server = std::move(*t);
      });
  ASSERT_TRUE(l.ok());
  // A client that connects and says nothing.
  absl::StatusOr<std::unique_ptr<Stream>> silent =
      loop.Connect((*l)->address(), [](absl::Status) {});
  ASSERT_TRUE(silent.ok());
  const absl::Time start = loop.Now();
  ASSERT_TRUE(
      loop.RunUntil([&] { return done.has_value(); }, start + kPatience));
  EXPECT_EQ(done->code(), absl::StatusCode::kDeadlineExceeded) << *done;
  EXPECT_GE(loop.Now() - start, absl::Milliseconds(190));
}

TEST(TlsStreamTest, PeerThatDoesNotSpeakTlsFailsTheHandshake) {
  UvLoop loop;
  // A server that answers anything with plaintext and closes.
  std::unique_ptr<Stream> accepted;
  absl::StatusOr<std::unique_ptr<Listener>> l =
      loop.Listen(Address::Loopback(0), {},
                  [&](absl::StatusOr<std::unique_ptr<Stream>> st) {
                    ASSERT_TRUE(st.ok());
                    accepted = std::move(*st);
                    (void)accepted->Write(
                        absl::MakeConstSpan("HTTP/1.0 400 no\r\n\r\n", 19));
                    accepted->Shutdown();
                  });
  ASSERT_TRUE(l.ok());
  std::unique_ptr<Stream> raw;
  std::unique_ptr<TlsStream> client;
  std::optional<absl::Status> done;
  absl::StatusOr<std::unique_ptr<Stream>> c =
      loop.Connect((*l)->address(), [&](absl::Status st) {
        ASSERT_TRUE(st.ok());
        auto t =
            TlsStream::Connect(loop, std::move(raw), Client(ClientConfig()),
                               "localhost", [&](absl::Status x) { done = x; });
        ASSERT_TRUE(t.ok());
        client = std::move(*t);
      });
  ASSERT_TRUE(c.ok());
  raw = std::move(*c);
  ASSERT_TRUE(
      loop.RunUntil([&] { return done.has_value(); }, loop.Now() + kPatience));
  EXPECT_EQ(done->code(), absl::StatusCode::kUnavailable) << *done;
  EXPECT_THAT(done->message(), HasSubstr("TLS handshake"));
}

TEST(TlsStreamTest, ShutdownSendsCloseNotifyWhichEndsThePeersReadOk) {
  UvLoop loop;
  Pair p(loop);
  p.Start(Server(ServerConfig()), Client(ClientConfig()));
  ASSERT_TRUE(p.RunUntilBothDone());
  ASSERT_TRUE(p.server_done->ok() && p.client_done->ok());
  Recorder at_server;
  p.server->SetHandler(&at_server);
  ASSERT_TRUE(p.server->StartReading().ok());
  ASSERT_TRUE(p.client->Write(absl::MakeConstSpan("last", 4)).ok());
  p.client->Shutdown();
  EXPECT_EQ(p.client->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(loop.RunUntil([&] { return at_server.end.has_value(); },
                            loop.Now() + kPatience));
  EXPECT_TRUE(at_server.end->ok()) << *at_server.end;
  EXPECT_EQ(at_server.received, "last");
}

TEST(TlsStreamTest, DestroyingTheStreamInsideItsHandshakeCallbackIsSafe) {
  for (absl::string_view ca : {"ca", "other-ca"}) {  // success, failure
    UvLoop loop;
    Pair p(loop);
    p.destroy_client_in_callback = true;
    p.Start(Server(ServerConfig()), Client(ClientConfig(ca)));
    ASSERT_TRUE(loop.RunUntil([&] { return p.client_done.has_value(); },
                              loop.Now() + kPatience));
    EXPECT_EQ(p.client, nullptr);
    EXPECT_EQ(p.client_done->ok(), ca == "ca") << *p.client_done;
    // The server hears the end of it, whichever it was.
    ASSERT_TRUE(loop.RunUntil([&] { return p.server_done.has_value(); },
                              loop.Now() + kPatience));
  }
}

}  // namespace
}  // namespace moonpool::driver
