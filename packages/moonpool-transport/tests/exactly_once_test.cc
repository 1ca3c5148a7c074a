// Exactly-once requests end to end on real loopback sockets (DESIGN.md
// sections 5 and 6, "Exactly-once"): the flag goes out from a method's
// declaration or a call's options; a connection cut while the handler runs,
// or after it finished but before its reply was read, makes the client send
// the request again with the same id, and the server answers that resend
// from its record (waiting for the running original) instead of running the
// handler again; answeredBelow lets records go; a bound makes the server
// forget, and a resend of a forgotten id is answered Aborted and runs
// nothing; a restarted server (a new incarnation) means Aborted; the
// default queue keeps the same promises; reply streams refuse the flag.
//
// The cuts come from Proxy, a TCP proxy on the test's loop between the
// client and the server: it closes both sides of every connection it
// carries at once, and can drop what the server sends (a reply the client
// never reads). The old ids are sent again by BareClient, a bare
// driver::ConnectionDriver with an incarnation of the test's choosing.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/connection_driver.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/stream.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/reply_stream.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/transport/stream_method.h"
#include "transport_test_util.h"

namespace moonpool::transport::testing {
namespace {

const Method<std::string, std::string> kOnce{"test.Once/Echo",
                                             {.exactly_once = true}};
const Method<std::string, std::string> kPlain{"test.Plain/Echo"};

// A TCP proxy on the loop: every connection accepted is joined to a new
// connection to `target`, bytes copied both ways. Cut() closes both sides
// of every connection it carries (each end sees its connection end);
// `drop_replies` throws away what the server sends, as a link that loses
// the replies would.
class Proxy {
 public:
  Proxy(UvLoop& loop, driver::Address target)
      : loop_(loop), target_(std::move(target)) {
    absl::StatusOr<std::unique_ptr<driver::Listener>> l =
        loop.Listen(driver::Address::Loopback(0), {},
                    [this](absl::StatusOr<std::unique_ptr<driver::Stream>> s) {
                      if (s.ok()) Accept(std::move(*s));
                    });
    EXPECT_TRUE(l.ok()) << l.status();
    if (l.ok()) listener_ = std::move(*l);
  }

  const driver::Address& address() const { return listener_->address(); }
  // Closes every connection carried now; later ones are carried anew.
  void Cut() {
    for (auto& p : pairs_) p->Close();
  }
  size_t accepted() const { return pairs_.size(); }

  bool drop_replies = false;

 private:
  class Pair;
  // One end of a Pair: what it reads goes to the other end.
  class End final : public driver::StreamHandler {
   public:
    End(Pair& pair, bool from_server)
        : pair_(pair), from_server_(from_server) {}
    absl::Span<char> ReadBuffer(size_t) override {
      return absl::MakeSpan(buffer_, sizeof(buffer_));
    }
    void OnRead(size_t n) override { pair_.Forward(from_server_, buffer_, n); }
    void OnReadEnd(absl::Status) override { pair_.Close(); }
    void OnWritten(size_t) override {}
    void OnWriteError(absl::Status) override { pair_.Close(); }

   private:
    Pair& pair_;
    const bool from_server_;
    char buffer_[16384];
  };

  class Pair {
   public:
    Pair(Proxy& proxy, std::unique_ptr<driver::Stream> client)
        : proxy_(proxy),
          client_end_(*this, /*from_server=*/false),
          server_end_(*this, /*from_server=*/true),
          client_(std::move(client)) {
      client_->SetHandler(&client_end_);
      absl::StatusOr<std::unique_ptr<driver::Stream>> server =
          proxy.loop_.Connect(proxy.target_, [this](absl::Status s) {
            if (!s.ok() || closed_) {
              Close();
              return;
            }
            if (!server_->StartReading().ok()) Close();
          });
      if (!server.ok()) {
        Close();
        return;
      }
      server_ = std::move(*server);
      server_->SetHandler(&server_end_);
      if (!client_->StartReading().ok()) Close();
    }

    void Forward(bool from_server, const char* bytes, size_t n) {
      if (closed_) return;
      if (from_server && proxy_.drop_replies) return;
      driver::Stream* to = from_server ? client_.get() : server_.get();
      if (to == nullptr) return;
      if (!to->Write(absl::MakeConstSpan(bytes, n)).ok()) Close();
    }
    // Both sides at once; the streams live on (closed) until the proxy goes,
    // so no callback ever runs on a destroyed handler.
    void Close() {
      closed_ = true;
      if (client_ != nullptr) client_->Close();
      if (server_ != nullptr) server_->Close();
    }

   private:
    Proxy& proxy_;
    End client_end_;
    End server_end_;
    std::unique_ptr<driver::Stream> client_;
    std::unique_ptr<driver::Stream> server_;
    bool closed_ = false;
  };

  void Accept(std::unique_ptr<driver::Stream> s) {
    pairs_.push_back(std::make_unique<Pair>(*this, std::move(s)));
  }

  UvLoop& loop_;
  const driver::Address target_;
  std::unique_ptr<driver::Listener> listener_;
  std::vector<std::unique_ptr<Pair>> pairs_;
};

// A bare client connection (no Peer, no retries, no settling): requests go
// out with the ids, flags and answeredBelow the test chooses, from the
// client incarnation it chooses, so a test can send an old id again on a
// new connection as a Peer would after a loss.
class BareClient final : public driver::ConnectionHandler {
 public:
  BareClient(UvLoop& loop, const driver::Address& server,
             uint64_t incarnation) {
    bool connected = false;
    absl::StatusOr<std::unique_ptr<driver::Stream>> stream =
        loop.Connect(server, [&](absl::Status s) {
          EXPECT_TRUE(s.ok()) << s;
          connected = true;
        });
    EXPECT_TRUE(stream.ok()) << stream.status();
    EXPECT_TRUE(RunUntil(loop, [&] { return connected; }));
    driver::ConnectionDriverOptions o;
    o.connection.role = protocol::Role::kClient;
    o.connection.incarnation = incarnation;
    o.connection.peer_name = "raw-client";
    driver_ = std::make_unique<driver::ConnectionDriver>(
        loop, std::move(*stream), o, *this);
    driver_->Start(/*pump_now=*/true);
    EXPECT_TRUE(RunUntil(loop, [&] { return handshake_done; }));
  }
  ~BareClient() { driver_->Close(); }

  // Sends an exactly-once request to the default queue with id `id`.
  void Send(uint64_t id, absl::string_view payload,
            CorrelationId answered_below = CorrelationId()) {
    protocol::RequestOptions o;
    o.exactly_once = true;
    o.id = CorrelationId(id);
    o.answered_below = answered_below;
    absl::StatusOr<CorrelationId> sent = driver_->SendRequest(payload, o);
    EXPECT_TRUE(sent.ok()) << sent.status();
  }

  bool handshake_done = false;
  // Each request's outcome by id: the reply's payload or the error.
  std::map<uint64_t, absl::StatusOr<std::string>> outcomes;

 private:
  void OnEvent(protocol::Event& event) override {
    if (std::holds_alternative<protocol::HandshakeDone>(event)) {
      handshake_done = true;
    } else if (auto* r = std::get_if<protocol::ReplyReceived>(&event)) {
      outcomes.insert_or_assign(
          r->id.value(),
          r->status.ok() ? absl::StatusOr<std::string>(std::string(r->payload))
                         : absl::StatusOr<std::string>(r->status));
    } else if (auto* f = std::get_if<protocol::RequestFailed>(&event)) {
      outcomes.insert_or_assign(f->id.value(), f->status);
    }
  }
  void OnClosed(const absl::Status&) override {}

  std::unique_ptr<driver::ConnectionDriver> driver_;
};

// Runs of a handler, by the request's correlation id.
using Runs = std::map<uint64_t, int>;

int TotalRuns(const Runs& runs) {
  int n = 0;
  for (const auto& [id, count] : runs) n += count;
  return n;
}

// Waits (polling the loop's clock) while `*flag`.
Task<void> WaitWhile(driver::Loop& loop, const bool* flag) {
  while (*flag) co_await driver::Sleep(loop, absl::Milliseconds(1));
}

// Serves kOnce and kPlain: counts each run, holds the answer while `*hold`,
// answers the payload, or `error` when it is not OK.
absl::Status ServeCounting(UvLoop& loop, ServerTransport& server, Runs* runs,
                           const bool* hold, const absl::Status* error,
                           HandlerOptions options = {}) {
  auto handler = [&loop, runs, hold, error](
                     RequestContext& ctx,
                     std::string request) -> Task<absl::StatusOr<std::string>> {
    ++(*runs)[ctx.correlation_id().value()];
    if (hold != nullptr) co_await WaitWhile(loop, hold);
    if (error != nullptr && !error->ok()) co_return *error;
    co_return request;
  };
  if (absl::Status s = server.Handle(kOnce, handler, options); !s.ok()) {
    return s;
  }
  return server.Handle(kPlain, handler, options);
}

// The default queue: counts each message by id, answers its payload.
Task<void> CountingEcho(ServerTransport& server, Runs* runs,
                        std::vector<bool>* flags) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    ++(*runs)[m->envelope.correlation_id.value()];
    if (flags != nullptr) flags->push_back(m->envelope.exactly_once);
    if (m->is_request()) (void)server.Reply(*m, m->envelope.payload);
  }
}

TEST(ExactlyOnce, MethodOptionSendsTheFlagAndTheServerRecordsTheOutcome) {
  UvLoop loop(UvLoopOptions{.seed = 151});
  auto server = BindOrDie(loop);
  Runs runs;
  ASSERT_TRUE(ServeCounting(loop, *server, &runs, nullptr, nullptr).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  Reply plain, once;
  scope.Spawn(
      Store(client.Call(server->address(), kPlain, std::string("p")), &plain));
  ASSERT_TRUE(RunUntil(loop, [&] { return plain.has_value(); }));
  ASSERT_TRUE(plain->ok()) << plain->status();
  // A plain call leaves no record.
  EXPECT_EQ(server->stats().exactly_once.recorded, 0u);

  scope.Spawn(
      Store(client.Call(server->address(), kOnce, std::string("o")), &once));
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  ASSERT_TRUE(once->ok()) << once->status();
  EXPECT_EQ(**once, "o");
  // The method's declaration alone made it exactly-once: its outcome was
  // recorded, and the record stays until a later request settles it.
  EXPECT_EQ(server->stats().exactly_once.recorded, 1u);
  EXPECT_EQ(server->stats().exactly_once.records, 1u);
  EXPECT_EQ(TotalRuns(runs), 2);
  for (const auto& [id, n] : runs) EXPECT_EQ(n, 1) << "request " << id;
}

TEST(ExactlyOnce, RequestOptionSendsTheFlagToTheDefaultQueue) {
  UvLoop loop(UvLoopOptions{.seed = 152});
  auto server = BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  Runs runs;
  std::vector<bool> flags;
  scope.Spawn(CountingEcho(*server, &runs, &flags));

  Reply plain, once;
  scope.Spawn(
      Store(client.Request<std::string>(server->address(), std::string("p")),
            &plain));
  ASSERT_TRUE(RunUntil(loop, [&] { return plain.has_value(); }));
  RequestOptions eo;
  eo.exactly_once = true;
  scope.Spawn(Store(
      client.Request<std::string>(server->address(), std::string("o"), eo),
      &once));
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  ASSERT_TRUE(plain->ok()) << plain->status();
  ASSERT_TRUE(once->ok()) << once->status();
  EXPECT_EQ(flags, (std::vector<bool>{false, true}));
  EXPECT_EQ(server->stats().exactly_once.recorded, 1u);

  // The per-call option works on a method not declared exactly-once too.
  Runs method_runs;
  ASSERT_TRUE(
      ServeCounting(loop, *server, &method_runs, nullptr, nullptr).ok());
  Reply called;
  scope.Spawn(Store(
      client.Call(server->address(), kPlain, std::string("c"), eo), &called));
  ASSERT_TRUE(RunUntil(loop, [&] { return called.has_value(); }));
  ASSERT_TRUE(called->ok()) << called->status();
  EXPECT_EQ(server->stats().exactly_once.recorded, 2u);
  EXPECT_EQ(TotalRuns(method_runs), 1);
}

TEST(ExactlyOnce, CutWhileTheHandlerRunsTheResendWaitsAndItRunsOnce) {
  UvLoop loop(UvLoopOptions{.seed = 153});
  auto server = BindOrDie(loop);
  Runs runs;
  bool hold = true;
  ASSERT_TRUE(ServeCounting(loop, *server, &runs, &hold, nullptr).ok());
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  Reply once;
  scope.Spawn(
      Store(client.Call(proxy.address(), kOnce, std::string("run me")), &once));
  ASSERT_TRUE(RunUntil(loop, [&] { return TotalRuns(runs) == 1; }));
  proxy.Cut();
  // The client sees a maybe-delivered loss, reconnects to the same server
  // and sends it again; the resend finds the handler still running.
  ASSERT_TRUE(RunUntil(loop, [&] {
    return server->stats().exactly_once.duplicates_running == 1;
  }));
  EXPECT_FALSE(once.has_value());
  hold = false;
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  ASSERT_TRUE(once->ok()) << once->status();
  EXPECT_EQ(**once, "run me");
  EXPECT_EQ(TotalRuns(runs), 1);
  EXPECT_EQ(proxy.accepted(), 2u);
  const driver::Peer* peer = client.peer(proxy.address());
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(peer->stats().resent_exactly_once, 1u);
  EXPECT_EQ(peer->stats().exactly_once_aborted, 0u);
  EXPECT_EQ(server->stats().exactly_once.duplicates_completed, 0u);
}

// The reply is lost on the way (the proxy drops what the server sends), the
// connection is cut: the resend is answered from the record.
void CutAfterTheHandlerFinished(const absl::Status& outcome) {
  UvLoop loop(UvLoopOptions{.seed = 154});
  auto server = BindOrDie(loop);
  Runs runs;
  ASSERT_TRUE(ServeCounting(loop, *server, &runs, nullptr, &outcome).ok());
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  // The handshake first, so that only the reply is dropped.
  Reply warm;
  scope.Spawn(
      Store(client.Call(proxy.address(), kPlain, std::string("warm")), &warm));
  ASSERT_TRUE(RunUntil(loop, [&] { return warm.has_value(); }));
  proxy.drop_replies = true;

  Reply once;
  scope.Spawn(
      Store(client.Call(proxy.address(), kOnce, std::string("once")), &once));
  ASSERT_TRUE(RunUntil(
      loop, [&] { return server->stats().exactly_once.recorded == 1; }));
  RunFor(loop, absl::Milliseconds(20));
  EXPECT_FALSE(once.has_value());  // its reply was dropped
  proxy.drop_replies = false;
  proxy.Cut();
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  if (outcome.ok()) {
    ASSERT_TRUE(once->ok()) << once->status();
    EXPECT_EQ(**once, "once");
  } else {
    EXPECT_EQ(once->status(), outcome);
  }
  EXPECT_EQ(TotalRuns(runs), 2);  // warm, once
  for (const auto& [id, n] : runs) EXPECT_EQ(n, 1) << "request " << id;
  EXPECT_EQ(server->stats().exactly_once.duplicates_completed, 1u);
  EXPECT_EQ(server->stats().exactly_once.duplicates_running, 0u);
  EXPECT_EQ(client.peer(proxy.address())->stats().resent_exactly_once, 1u);
}

TEST(ExactlyOnce, CutAfterTheHandlerRepliedTheResendGetsTheRecordedReply) {
  CutAfterTheHandlerFinished(absl::OkStatus());
}

TEST(ExactlyOnce, CutAfterTheHandlerFailedTheResendGetsTheRecordedError) {
  CutAfterTheHandlerFinished(
      absl::FailedPreconditionError("the account is closed"));
}

TEST(ExactlyOnce, AnsweredBelowLetsTheRecordsGo) {
  UvLoop loop(UvLoopOptions{.seed = 155});
  auto server = BindOrDie(loop);
  Runs runs;
  ASSERT_TRUE(ServeCounting(loop, *server, &runs, nullptr, nullptr).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  constexpr int kCalls = 5;
  for (int i = 0; i < kCalls; ++i) {
    Reply r;
    scope.Spawn(
        Store(client.Call(server->address(), kOnce, std::string("x")), &r));
    ASSERT_TRUE(RunUntil(loop, [&] { return r.has_value(); }));
    ASSERT_TRUE(r->ok()) << r->status();
  }
  // Each call settled the ones before it; the last is still recorded.
  EXPECT_EQ(server->stats().exactly_once.records, 1u);
  EXPECT_EQ(server->stats().exactly_once.settled, kCalls - 1u);
  // A later request, even a plain one, settles it.
  Reply plain;
  scope.Spawn(
      Store(client.Call(server->address(), kPlain, std::string("p")), &plain));
  ASSERT_TRUE(RunUntil(loop, [&] { return plain.has_value(); }));
  const protocol::OutcomeTableStats st = server->stats().exactly_once;
  EXPECT_EQ(st.records, 0u);
  EXPECT_EQ(st.running, 0u);
  EXPECT_EQ(st.bytes, 0u);
  EXPECT_EQ(st.recorded, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(st.settled, static_cast<uint64_t>(kCalls));
}

TEST(ExactlyOnce, ABoundForgetsAndAForgottenResendIsAbortedAndRunsNothing) {
  UvLoop loop(UvLoopOptions{.seed = 156});
  ServerOptions options;
  options.exactly_once.max_records_per_client = 2;
  auto server = BindOrDie(loop, options);
  TaskScope scope(loop, FailOnError());
  Runs runs;
  scope.Spawn(CountingEcho(*server, &runs, nullptr));

  constexpr uint64_t kIncarnation = 0xC0FFEE;
  {
    // A client that never settles: five records, two kept.
    BareClient raw(loop, server->address(), kIncarnation);
    for (uint64_t id = 1; id <= 5; ++id) raw.Send(id, "r" + std::to_string(id));
    ASSERT_TRUE(RunUntil(loop, [&] { return raw.outcomes.size() == 5; }));
    for (const auto& [id, outcome] : raw.outcomes) {
      EXPECT_TRUE(outcome.ok()) << id << ": " << outcome.status();
    }
  }
  EXPECT_EQ(TotalRuns(runs), 5);
  EXPECT_EQ(server->stats().exactly_once.forgotten_by_bound, 3u);
  EXPECT_EQ(server->stats().exactly_once.records, 2u);

  // The same incarnation on a new connection, as a Peer after a loss.
  BareClient again(loop, server->address(), kIncarnation);
  again.Send(2, "r2 again");  // forgotten
  again.Send(5, "r5 again");  // still recorded
  ASSERT_TRUE(RunUntil(loop, [&] { return again.outcomes.size() == 2; }));
  const absl::StatusOr<std::string>& forgotten = again.outcomes.at(2);
  EXPECT_EQ(forgotten.status().code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(absl::StrContains(forgotten.status().message(),
                                "outcome forgotten, maybe delivered"))
      << forgotten.status();
  const absl::StatusOr<std::string>& kept = again.outcomes.at(5);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, "r5");  // the first outcome, not the resend's payload
  RunFor(loop, absl::Milliseconds(20));
  EXPECT_EQ(TotalRuns(runs), 5);  // neither ran again
  EXPECT_EQ(server->stats().exactly_once.forgotten_answers, 1u);
  EXPECT_EQ(server->stats().exactly_once.duplicates_completed, 1u);
}

TEST(ExactlyOnce, AClientPastMaxClientsIsRefusedAndRunsNothing) {
  UvLoop loop(UvLoopOptions{.seed = 164});
  ServerOptions options;
  options.exactly_once.max_clients = 1;
  auto server = BindOrDie(loop, options);
  TaskScope scope(loop, FailOnError());
  Runs runs;
  scope.Spawn(CountingEcho(*server, &runs, nullptr));

  BareClient first(loop, server->address(), /*incarnation=*/11);
  first.Send(1, "first");
  ASSERT_TRUE(RunUntil(loop, [&] { return first.outcomes.size() == 1; }));
  ASSERT_TRUE(first.outcomes.at(1).ok()) << first.outcomes.at(1).status();

  // Another incarnation while the first still has a record: refused, not
  // run (it did not run anywhere: the client may try again later).
  BareClient second(loop, server->address(), /*incarnation=*/22);
  second.Send(1, "second");
  ASSERT_TRUE(RunUntil(loop, [&] { return second.outcomes.size() == 1; }));
  EXPECT_EQ(second.outcomes.at(1).status().code(),
            absl::StatusCode::kResourceExhausted)
      << second.outcomes.at(1).status();
  RunFor(loop, absl::Milliseconds(20));
  EXPECT_EQ(TotalRuns(runs), 1);
  EXPECT_EQ(server->stats().exactly_once.clients_refused, 1u);
}

TEST(ExactlyOnce, AServerRestartedOnThePortMeansAbortedMaybeDelivered) {
  UvLoop loop(UvLoopOptions{.seed = 157});
  auto first = BindOrDie(loop);
  const driver::Address address = first->address();
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*first, &taken));
  Reply once;
  RequestOptions eo;
  eo.exactly_once = true;
  scope.Spawn(Store(
      client.Request<std::string>(address, std::string("once"), eo), &once));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  ASSERT_TRUE(taken->has_value());
  EXPECT_TRUE((*taken)->envelope.exactly_once);

  // The server process "restarts": a new transport, a new incarnation, on
  // the same port. It never saw the request.
  first.reset();
  auto second = BindOrDie(loop, {}, address);
  ASSERT_NE(second, nullptr);
  Runs runs;
  scope.Spawn(CountingEcho(*second, &runs, nullptr));
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  EXPECT_EQ(once->status().code(), absl::StatusCode::kAborted)
      << once->status();
  // The message names the incarnation change (not "outcome forgotten").
  EXPECT_TRUE(absl::StrContains(once->status().message(), "incarnation"))
      << once->status();
  EXPECT_EQ(TotalRuns(runs), 0);
  EXPECT_EQ(client.peer(address)->stats().exactly_once_aborted, 1u);
  EXPECT_EQ(client.peer(address)->stats().resent_exactly_once, 0u);
}

TEST(ExactlyOnce, TheDefaultQueueHoldsADuplicateUntilTheReply) {
  UvLoop loop(UvLoopOptions{.seed = 158});
  auto server = BindOrDie(loop);
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  std::optional<std::optional<IncomingMessage>> taken;
  scope.Spawn(TakeOne(*server, &taken));
  Reply once;
  RequestOptions eo;
  eo.exactly_once = true;
  scope.Spawn(
      Store(client.Request<std::string>(proxy.address(), std::string("q"), eo),
            &once));
  ASSERT_TRUE(RunUntil(loop, [&] { return taken.has_value(); }));
  ASSERT_TRUE(taken->has_value());
  IncomingMessage m = std::move(**taken);

  proxy.Cut();
  ASSERT_TRUE(RunUntil(loop, [&] {
    return server->stats().exactly_once.duplicates_running == 1;
  }));
  // The duplicate is not handed out a second time.
  std::optional<std::optional<IncomingMessage>> second;
  scope.Spawn(TakeOne(*server, &second));
  RunFor(loop, absl::Milliseconds(20));
  EXPECT_FALSE(second.has_value());

  // The original's connection is gone: Reply says so, and still records
  // the outcome, which answers the resend on the new connection.
  EXPECT_EQ(server->Reply(m, std::string("answer")).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  ASSERT_TRUE(once->ok()) << once->status();
  EXPECT_EQ(**once, "answer");
  EXPECT_FALSE(second.has_value());
  EXPECT_EQ(server->stats().exactly_once.recorded, 1u);
}

TEST(ExactlyOnce, TheDefaultQueueAnswersAResendFromTheRecord) {
  UvLoop loop(UvLoopOptions{.seed = 159});
  auto server = BindOrDie(loop);
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  Runs runs;
  scope.Spawn(CountingEcho(*server, &runs, nullptr));

  Reply warm;
  scope.Spawn(Store(
      client.Request<std::string>(proxy.address(), std::string("w")), &warm));
  ASSERT_TRUE(RunUntil(loop, [&] { return warm.has_value(); }));
  proxy.drop_replies = true;
  Reply once;
  RequestOptions eo;
  eo.exactly_once = true;
  scope.Spawn(
      Store(client.Request<std::string>(proxy.address(), std::string("q"), eo),
            &once));
  ASSERT_TRUE(RunUntil(
      loop, [&] { return server->stats().exactly_once.recorded == 1; }));
  proxy.drop_replies = false;
  proxy.Cut();
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  ASSERT_TRUE(once->ok()) << once->status();
  EXPECT_EQ(**once, "q");
  EXPECT_EQ(TotalRuns(runs), 2);
  for (const auto& [id, n] : runs) EXPECT_EQ(n, 1) << "request " << id;
  EXPECT_EQ(server->stats().exactly_once.duplicates_completed, 1u);
}

TEST(ExactlyOnce, ReplyStreamsRefuseExactlyOnce) {
  UvLoop loop(UvLoopOptions{.seed = 160});
  auto server = BindOrDie(loop);
  ClientTransport client(loop, FastClient());
  const StreamMethod<std::string, std::string> declared{"test.Stream/Once",
                                                        {.exactly_once = true}};
  const StreamMethod<std::string, std::string> plain{"test.Stream/Plain"};

  absl::StatusOr<ReplyStream<std::string>> a =
      client.CallStream(server->address(), declared, std::string("x"));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  StreamOptions options;
  options.exactly_once = true;
  absl::StatusOr<ReplyStream<std::string>> b =
      client.CallStream(server->address(), plain, std::string("x"), options);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  // Refused up front: nothing was sent, no connection made.
  EXPECT_EQ(client.peer_count(), 0u);
}

TEST(ExactlyOnce, AQueuedCallWhoseConnectionDiedRunsOnceForItsResend) {
  UvLoop loop(UvLoopOptions{.seed = 161});
  auto server = BindOrDie(loop);
  Runs runs;
  bool hold = true;
  // One handler at a time: the second call waits in the method's queue.
  HandlerOptions one_at_a_time;
  one_at_a_time.max_concurrent = 1;
  ASSERT_TRUE(
      ServeCounting(loop, *server, &runs, &hold, nullptr, one_at_a_time).ok());
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  Reply first, queued;
  scope.Spawn(
      Store(client.Call(proxy.address(), kOnce, std::string("first")), &first));
  ASSERT_TRUE(RunUntil(loop, [&] { return TotalRuns(runs) == 1; }));
  scope.Spawn(Store(client.Call(proxy.address(), kOnce, std::string("queued")),
                    &queued));
  ASSERT_TRUE(RunUntil(
      loop, [&] { return server->stats().exactly_once.running == 2; }));
  EXPECT_EQ(TotalRuns(runs), 1);  // the second is queued
  EXPECT_EQ(server->method_stats(kOnce)->queued, 1u);

  proxy.Cut();
  // Both are sent again and wait: one for its running original, one for
  // its original still in the queue of a connection that is gone.
  ASSERT_TRUE(RunUntil(loop, [&] {
    return server->stats().exactly_once.duplicates_running == 2;
  }));
  hold = false;
  ASSERT_TRUE(
      RunUntil(loop, [&] { return first.has_value() && queued.has_value(); }));
  ASSERT_TRUE(first->ok()) << first->status();
  ASSERT_TRUE(queued->ok()) << queued->status();
  EXPECT_EQ(**first, "first");
  EXPECT_EQ(**queued, "queued");
  EXPECT_EQ(TotalRuns(runs), 2);
  for (const auto& [id, n] : runs) EXPECT_EQ(n, 1) << "request " << id;
  EXPECT_EQ(client.peer(proxy.address())->stats().resent_exactly_once, 2u);
}

TEST(ExactlyOnce, AnExpiredOriginalTakesItsWaitingDuplicateWithIt) {
  UvLoop loop(UvLoopOptions{.seed = 163});
  auto server = BindOrDie(loop);
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  // Nothing takes messages yet: the request waits in the default queue.
  Reply once;
  RequestOptions eo = RequestOptions::Timeout(absl::Milliseconds(300));
  eo.exactly_once = true;
  scope.Spawn(Store(
      client.Request<std::string>(proxy.address(), std::string("late"), eo),
      &once));
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().queued_messages == 1; }));
  proxy.Cut();
  ASSERT_TRUE(RunUntil(loop, [&] {
    return server->stats().exactly_once.duplicates_running == 1;
  }));
  // The resend waits on the new connection, and counts in flight there.
  EXPECT_EQ(server->stats().requests_in_flight, 1u);
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  EXPECT_EQ(once->status().code(), absl::StatusCode::kDeadlineExceeded)
      << once->status();

  // The queue reaches the original past its deadline: dropped unrun, and
  // the duplicate waiting for it is forgotten too (nothing stays in flight,
  // which would hold a drain and the connection's bound).
  Runs runs;
  scope.Spawn(CountingEcho(*server, &runs, nullptr));
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server->stats().expired_dropped == 1; }));
  EXPECT_EQ(TotalRuns(runs), 0);
  EXPECT_EQ(server->stats().requests_in_flight, 0u);
  EXPECT_EQ(server->stats().exactly_once.records, 0u);
  EXPECT_EQ(server->stats().exactly_once.abandoned, 1u);
}

TEST(ExactlyOnce, APlainCallCutInFlightIsAborted) {
  // The control of the cut tests: the same cut without exactly-once.
  UvLoop loop(UvLoopOptions{.seed = 162});
  auto server = BindOrDie(loop);
  Runs runs;
  bool hold = true;
  ASSERT_TRUE(ServeCounting(loop, *server, &runs, &hold, nullptr).ok());
  Proxy proxy(loop, server->address());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());

  Reply plain;
  scope.Spawn(Store(client.Call(proxy.address(), kPlain, std::string("plain")),
                    &plain));
  ASSERT_TRUE(RunUntil(loop, [&] { return TotalRuns(runs) == 1; }));
  proxy.Cut();
  ASSERT_TRUE(RunUntil(loop, [&] { return plain.has_value(); }));
  EXPECT_EQ(plain->status().code(), absl::StatusCode::kAborted)
      << plain->status();
  hold = false;
  RunFor(loop, absl::Milliseconds(20));
  EXPECT_EQ(server->stats().exactly_once.records, 0u);
}

// A closed server keeps no timer for its records' lifetimes: the loop ends
// once the work is done, not when the last record would have expired (60 s
// later by default).
TEST(ExactlyOnce, AClosedServerWithRecordsLetsItsLoopEnd) {
  UvLoop loop(UvLoopOptions{.seed = 170});
  auto server = BindOrDie(loop);
  Runs runs;
  ASSERT_TRUE(ServeCounting(loop, *server, &runs, nullptr, nullptr).ok());
  ClientTransport client(loop, FastClient());
  TaskScope scope(loop, FailOnError());
  Reply once;
  scope.Spawn(
      Store(client.Call(server->address(), kOnce, std::string("o")), &once));
  ASSERT_TRUE(RunUntil(loop, [&] { return once.has_value(); }));
  ASSERT_TRUE(once->ok()) << once->status();
  ASSERT_EQ(server->stats().exactly_once.records, 1u);
  client.Close();
  scope.Spawn(server->Close(/*drain=*/false));
  const absl::Time start = absl::Now();
  loop.Run();  // until nothing is left to do
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

}  // namespace
}  // namespace moonpool::transport::testing
