// ClientTransport and ServerTransport over TLS (ServerOptions::tls,
// PeerOptions::tls through ClientOptions::peer), on a real UvLoop over
// loopback, with the test PKI (MOONPOOL_TEST_CERTS): calls work and the
// handler sees the client's verified identity; authorizers refuse with their
// Status before the handler runs; a failed handshake is a clear Status on
// the side that should see it, counted and reported, and a good client on
// another connection never notices; plaintext and TLS do not mix silently.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/method_handler.h"
#include "moonpool/transport/request_context.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const Method<std::string, std::string> kWhoAmI{"test.Tls/WhoAmI"};
const Method<std::string, std::string> kSecret{"test.Vault/Secret"};
const Method<std::string, std::string> kOpen{"test.Vault/Open"};

std::string Cert(absl::string_view name) {
  const char* dir = std::getenv("MOONPOOL_TEST_CERTS");
  if (dir == nullptr) {
    ADD_FAILURE() << "MOONPOOL_TEST_CERTS is not set (run through ctest)";
    return "";
  }
  return absl::StrCat(dir, "/", name);
}

std::shared_ptr<const driver::TlsContext> ServerTls(
    bool require_client = true, absl::string_view cert = "server") {
  driver::TlsConfig c;
  c.certificate_chain_file = Cert(absl::StrCat(cert, ".pem"));
  c.private_key_file = Cert(absl::StrCat(cert, ".key"));
  c.trusted_ca_file = Cert("ca.pem");
  c.require_client_certificate = require_client;
  c.handshake_timeout = absl::Seconds(2);
  auto ctx = driver::TlsContext::CreateServer(c);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

std::shared_ptr<const driver::TlsContext> ClientTls(
    absl::string_view cert = "client", absl::string_view ca = "ca") {
  driver::TlsConfig c;
  if (!cert.empty()) {
    c.certificate_chain_file = Cert(absl::StrCat(cert, ".pem"));
    c.private_key_file = Cert(absl::StrCat(cert, ".key"));
  }
  c.trusted_ca_file = Cert(absl::StrCat(ca, ".pem"));
  auto ctx = driver::TlsContext::CreateClient(c);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

ClientOptions TlsClient(std::shared_ptr<const driver::TlsContext> tls) {
  ClientOptions o = FastClient();
  o.peer.tls = std::move(tls);
  return o;
}

// Answers with the caller's certificate subject and first URI SAN, or
// "anonymous".
absl::Status ServeWhoAmI(ServerTransport& server) {
  return server.Handle(kWhoAmI,
                       [](RequestContext& ctx,
                          std::string) -> Task<absl::StatusOr<std::string>> {
                         const driver::PeerIdentity* id = ctx.peer_identity();
                         if (id == nullptr) co_return std::string("anonymous");
                         co_return absl::StrCat(
                             id->subject, " ",
                             id->uris.empty() ? "" : id->uris[0]);
                       });
}

class TlsTransportTest : public ::testing::Test {
 protected:
  template <typename T>
  absl::StatusOr<T> Await(Task<absl::StatusOr<T>> task) {
    std::optional<absl::StatusOr<T>> out;
    scope_->Spawn(Store(std::move(task), &out));
    EXPECT_TRUE(RunUntil(
        loop_, [&] { return out.has_value(); }, absl::Seconds(20)));
    if (!out.has_value()) return absl::DeadlineExceededError("test timeout");
    return std::move(*out);
  }

  UvLoop loop_{UvLoopOptions{}};
  std::unique_ptr<TaskScope> scope_ =
      std::make_unique<TaskScope>(loop_, FailOnError());
};

TEST_F(TlsTransportTest, MutualTlsCallSeesTheClientsIdentity) {
  ServerOptions so;
  so.tls = ServerTls();
  auto server = BindOrDie(loop_, so);
  ASSERT_TRUE(ServeWhoAmI(*server).ok());
  ClientTransport client(loop_, TlsClient(ClientTls()));
  absl::StatusOr<std::string> who =
      Await(client.Call(server->address(), kWhoAmI, std::string("?"),
                        RequestOptions::Timeout(absl::Seconds(10))));
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_THAT(*who, HasSubstr("CN=client-a"));
  EXPECT_THAT(*who, HasSubstr("spiffe://moonpool.test/client-a"));
  EXPECT_EQ(server->stats().tls_handshakes, 1u);
  EXPECT_EQ(server->stats().tls_handshake_failures, 0u);
  // Many calls, one connection, one handshake.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(Await(client.Call(server->address(), kWhoAmI, std::string("?"),
                                  RequestOptions::Timeout(absl::Seconds(10))))
                    .ok());
  }
  EXPECT_EQ(server->stats().tls_handshakes, 1u);
  scope_.reset();
}

TEST_F(TlsTransportTest, LargePayloadsCrossWhole) {
  ServerOptions so;
  so.tls = ServerTls(/*require_client=*/false);
  auto server = BindOrDie(loop_, so);
  const Method<std::string, std::string> kEcho{"test.Tls/Echo"};
  ASSERT_TRUE(
      server
          ->Handle(kEcho,
                   [](RequestContext&, std::string s)
                       -> Task<absl::StatusOr<std::string>> { co_return s; })
          .ok());
  ClientTransport client(loop_, TlsClient(ClientTls("")));
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{16 * 1024 + 1}, size_t{3} << 20}) {
    std::string payload(size, '\0');
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 7);
    absl::StatusOr<std::string> back =
        Await(client.Call(server->address(), kEcho, payload,
                          RequestOptions::Timeout(absl::Seconds(15))));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == payload) << "size " << size;
  }
  scope_.reset();
}

TEST_F(TlsTransportTest, AuthorizersRefuseBeforeTheHandlerRuns) {
  ServerOptions so;
  so.tls = ServerTls();
  std::vector<std::string> order;
  so.authorize = [&](const RequestContext& ctx) {
    order.push_back("server");
    if (ctx.peer_identity() == nullptr) {
      return absl::UnauthenticatedError("who are you?");
    }
    return absl::OkStatus();
  };
  auto server = BindOrDie(loop_, so);
  int ran = 0;
  auto handler = [&](RequestContext&,
                     std::string s) -> Task<absl::StatusOr<std::string>> {
    ++ran;
    co_return s;
  };
  HandlerOptions only_b;
  only_b.authorize = [&](const RequestContext& ctx) {
    order.push_back("method");
    for (const std::string& uri : ctx.peer_identity()->uris) {
      if (uri == "spiffe://moonpool.test/client-b") return absl::OkStatus();
    }
    return absl::PermissionDeniedError("Secret is for client-b only");
  };
  ASSERT_TRUE(server->Handle(kSecret, handler, only_b).ok());
  ASSERT_TRUE(server->Handle(kOpen, handler).ok());
  ASSERT_TRUE(server
                  ->Authorize("test.Vault",
                              [&](const RequestContext& ctx) {
                                order.push_back("service");
                                EXPECT_THAT(ctx.method_name(),
                                            HasSubstr("test.Vault/"));
                                return absl::OkStatus();
                              })
                  .ok());
  EXPECT_EQ(server->Authorize("test.Vault/Open", {}).code(),
            absl::StatusCode::kInvalidArgument);

  ClientTransport a(loop_, TlsClient(ClientTls("client")));
  absl::StatusOr<std::string> denied =
      Await(a.Call(server->address(), kSecret, std::string("x"),
                   RequestOptions::Timeout(absl::Seconds(10))));
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
      << denied.status();
  EXPECT_THAT(denied.status().message(), HasSubstr("client-b only"));
  EXPECT_EQ(ran, 0);
  EXPECT_THAT(order, ElementsAre("server", "service", "method"));
  EXPECT_EQ(server->method_stats(kSecret)->denied, 1u);

  absl::StatusOr<std::string> open =
      Await(a.Call(server->address(), kOpen, std::string("y"),
                   RequestOptions::Timeout(absl::Seconds(10))));
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(ran, 1);

  ClientTransport b(loop_, TlsClient(ClientTls("client-b")));
  absl::StatusOr<std::string> allowed =
      Await(b.Call(server->address(), kSecret, std::string("z"),
                   RequestOptions::Timeout(absl::Seconds(10))));
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(*allowed, "z");
  EXPECT_EQ(ran, 2);

  // Removing the service's authorizer: it is asked no more.
  ASSERT_TRUE(server->Authorize("test.Vault", {}).ok());
  order.clear();
  ASSERT_TRUE(Await(a.Call(server->address(), kOpen, std::string("y"),
                           RequestOptions::Timeout(absl::Seconds(10))))
                  .ok());
  EXPECT_THAT(order, ElementsAre("server"));
  scope_.reset();
}

TEST_F(TlsTransportTest, UntrustedServerFailsTheCallWithTheReason) {
  ServerOptions so;
  so.tls = ServerTls(/*require_client=*/false, "other-server");
  auto server = BindOrDie(loop_, so);
  ASSERT_TRUE(ServeWhoAmI(*server).ok());
  ClientTransport client(loop_, TlsClient(ClientTls()));
  RequestOptions fail_fast = RequestOptions::Timeout(absl::Seconds(10));
  fail_fast.wait_for_ready = false;
  absl::StatusOr<std::string> who = Await(
      client.Call(server->address(), kWhoAmI, std::string("?"), fail_fast));
  ASSERT_FALSE(who.ok());
  EXPECT_THAT(who.status().message(), HasSubstr("certificate"));
  EXPECT_THAT(who.status().message(), HasSubstr("TLS"));
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return server->stats().tls_handshake_failures >= 1; }));
  scope_.reset();
}

TEST_F(TlsTransportTest, FailedHandshakesAreReportedAndDisturbNoOne) {
  ServerOptions so;
  so.tls = ServerTls();
  std::vector<std::string> failures;
  so.on_tls_handshake_failure = [&](const driver::Address& peer,
                                    const absl::Status& why) {
    failures.push_back(absl::StrCat(peer.HostString(), ": ", why.ToString()));
  };
  auto server = BindOrDie(loop_, so);
  ASSERT_TRUE(ServeWhoAmI(*server).ok());
  ClientTransport good(loop_, TlsClient(ClientTls()));
  ASSERT_TRUE(Await(good.Call(server->address(), kWhoAmI, std::string("?"),
                              RequestOptions::Timeout(absl::Seconds(10))))
                  .ok());

  // No client certificate, and one from a CA the server does not trust.
  for (absl::string_view cert : {"", "other-client"}) {
    ClientTransport bad(loop_, TlsClient(ClientTls(cert)));
    RequestOptions o = RequestOptions::Timeout(absl::Seconds(3));
    o.wait_for_ready = false;
    absl::StatusOr<std::string> r =
        Await(bad.Call(server->address(), kWhoAmI, std::string("?"), o));
    // Refused by the server after the client's side of the handshake
    // ended (TLS 1.3): nothing was written, so the request is not "maybe
    // delivered" but failed fast with the server's reason.
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable)
        << "cert " << cert << ": " << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr("certificate"))
        << "cert " << cert;
    // The good client is served all along.
    ASSERT_TRUE(Await(good.Call(server->address(), kWhoAmI, std::string("?"),
                                RequestOptions::Timeout(absl::Seconds(10))))
                    .ok());
  }
  ASSERT_TRUE(RunUntil(loop_, [&] { return failures.size() >= 2; }));
  EXPECT_THAT(failures, Contains(AllOf(HasSubstr("UNAUTHENTICATED"),
                                       HasSubstr("no certificate"))));
  EXPECT_THAT(failures,
              Contains(AllOf(HasSubstr("UNAUTHENTICATED"),
                             HasSubstr("client's certificate was refused"))));
  EXPECT_GE(server->stats().tls_handshake_failures, 2u);
  EXPECT_EQ(server->stats().tls_handshaking, 0u);
  EXPECT_EQ(server->stats().connections_open, 1u);
  scope_.reset();
}

TEST_F(TlsTransportTest, PlaintextClientOfATlsServerFailsNotHangs) {
  ServerOptions so;
  so.tls = ServerTls(/*require_client=*/false);
  auto server = BindOrDie(loop_, so);
  ASSERT_TRUE(ServeWhoAmI(*server).ok());
  ClientTransport plain(loop_, FastClient());
  RequestOptions o = RequestOptions::Timeout(absl::Seconds(5));
  o.wait_for_ready = false;
  const absl::Time start = loop_.Now();
  absl::StatusOr<std::string> r =
      Await(plain.Call(server->address(), kWhoAmI, std::string("?"), o));
  ASSERT_FALSE(r.ok());
  // Written before the server's refusal: maybe delivered, for all the
  // client knows; the reason names the likely cause.
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("TLS configured alike"));
  EXPECT_LT(loop_.Now() - start, absl::Seconds(4)) << r.status();
  ASSERT_TRUE(RunUntil(
      loop_, [&] { return server->stats().tls_handshake_failures >= 1; }));
  scope_.reset();
}

TEST_F(TlsTransportTest, TlsClientOfAPlaintextServerFailsNotHangs) {
  auto server = BindOrDie(loop_);
  ASSERT_TRUE(ServeWhoAmI(*server).ok());
  ClientTransport client(loop_, TlsClient(ClientTls()));
  RequestOptions o = RequestOptions::Timeout(absl::Seconds(5));
  o.wait_for_ready = false;
  const absl::Time start = loop_.Now();
  absl::StatusOr<std::string> r =
      Await(client.Call(server->address(), kWhoAmI, std::string("?"), o));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("TLS"));
  EXPECT_LT(loop_.Now() - start, absl::Seconds(4)) << r.status();
  scope_.reset();
}

}  // namespace
}  // namespace moonpool::transport::testing
