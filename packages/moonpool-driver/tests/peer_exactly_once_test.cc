// Peer exactly-once requests (PeerRequestOptions::exactly_once, DESIGN.md
// section 5 "Exactly-once", section 6) on real loopback sockets and UvLoop:
// they wait for the server's Hello; they carry exactlyOnce and answeredBelow
// on version 2; a maybe-delivered one is sent again with the same id to the
// same server incarnation, before anything else, and fails Aborted when the
// server restarted or speaks version 1; one that never ran goes again with
// a new id; answeredBelow is the lowest unsettled id of the client, shared by
// its Peers.
//
// The server here is a protocol::Connection in server role on each accepted
// socket, driven by hand (as test_server.cc does) so that a test can read what
// the client sent (ids, flags, answeredBelow), choose per request what to do
// (reply, hold, reset the connection, say Goodbye, reply and then corrupt the
// stream), withhold its Hello for a while, and change its incarnation or
// version between connections.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/client_request_ids.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::driver {
namespace {

// One request as the server read it.
struct Seen {
  int connection = 0;  // 1 for the first connection accepted
  uint64_t id = 0;
  bool exactly_once = false;
  uint64_t answered_below = 0;
  std::string payload;
};

enum class Action {
  kReply,  // "re:" + payload
  kHold,   // never answered (unless ReplyTo)
  kReset,  // closes the connection abruptly at once
  // Goodbye (requests above this one are refused), then the reply.
  kGoodbyeThenReply,
  // The reply, and in the same write bytes that are no frame: the client
  // reads the reply and then closes the connection (DataLoss) in the same
  // pump, before it writes anything more.
  kReplyThenGarbage,
  // An error reply Aborted "outcome forgotten, maybe delivered", as a
  // server that let the record go answers a resend.
  kForgotten,
};

class ScriptedServer {
 public:
  using Policy = std::function<Action(const Seen&)>;

  explicit ScriptedServer(Loop& loop) : loop_(loop) {
    absl::StatusOr<std::unique_ptr<Listener>> listener =
        loop_.Listen(Address::Loopback(0), {},
                     [this](absl::StatusOr<std::unique_ptr<Stream>> stream) {
                       if (stream.ok()) OnAccept(std::move(*stream));
                     });
    EXPECT_TRUE(listener.ok()) << listener.status();
    if (listener.ok()) {
      listener_ = std::move(*listener);
      address_ = listener_->address();
    }
  }
  ~ScriptedServer() { Stop(); }

  const Address& address() const { return address_; }
  // For connections accepted from now on.
  void set_incarnation(uint64_t incarnation) { incarnation_ = incarnation; }
  void set_max_version(uint32_t version) { max_version_ = version; }
  // New connections write nothing (not even their Hello) until
  // ReleaseOutput.
  void set_withhold_output(bool withhold) { withhold_ = withhold; }
  void set_policy(Policy policy) { policy_ = std::move(policy); }

  void ReleaseOutput();
  // Answers held request `id` ("re:" + payload) on whichever live
  // connection holds it; false if none does.
  bool ReplyTo(uint64_t id);
  // Closes every connection abruptly; keeps listening.
  void ResetAll();
  void Stop() {
    listener_.reset();
    ResetAll();
  }

  const std::vector<Seen>& seen() const { return seen_; }
  int connections_accepted() const { return accepted_; }
  uint64_t requests_refused() const { return requests_refused_; }

 private:
  class Conn;
  void OnAccept(std::unique_ptr<Stream> stream);

  Loop& loop_;
  Address address_;
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<Conn>> connections_;
  uint64_t incarnation_ = 99;
  uint32_t max_version_ = 2;
  bool withhold_ = false;
  Policy policy_;
  std::vector<Seen> seen_;
  int accepted_ = 0;
  uint64_t requests_refused_ = 0;
};

class ScriptedServer::Conn final : public StreamHandler {
 public:
  Conn(ScriptedServer& server, std::unique_ptr<Stream> stream, int number)
      : server_(server),
        number_(number),
        stream_(std::move(stream)),
        connection_(Options(server), server.loop_.Now()),
        timer_(server.loop_.CreateTimer([this] { OnTimer(); })),
        withhold_(server.withhold_) {
    stream_->SetHandler(this);
    EXPECT_TRUE(stream_->StartReading().ok());
    ArmTimer();
  }
  ~Conn() override { Close(); }

  void Close() {
    if (closed_) return;
    closed_ = true;
    server_.requests_refused_ += connection_.stats().requests_refused;
    timer_->Stop();
    stream_->Close();
  }

  void Release() {
    withhold_ = false;
    Pump();
  }

  bool ReplyTo(uint64_t id) {
    if (closed_) return false;
    for (size_t i = 0; i < held_.size(); ++i) {
      if (held_[i].first != id) continue;
      EXPECT_TRUE(connection_
                      .SendReply(CorrelationId(id),
                                 absl::StrCat("re:", held_[i].second))
                      .ok());
      held_.erase(held_.begin() + static_cast<ptrdiff_t>(i));
      Pump();
      return true;
    }
    return false;
  }

 private:
  static protocol::ConnectionOptions Options(const ScriptedServer& server) {
    protocol::ConnectionOptions o;
    o.role = protocol::Role::kServer;
    o.peer_name = "scripted-server";
    o.incarnation = server.incarnation_;
    o.max_protocol_version = server.max_version_;
    return o;
  }

  absl::Span<char> ReadBuffer(size_t suggested) override {
    return connection_.PrepareReceive(suggested);
  }
  void OnRead(size_t n) override {
    connection_.CommitReceive(n, server_.loop_.Now());
    Pump();
  }
  void OnReadEnd(absl::Status status) override {
    connection_.OnTransportClosed(status, server_.loop_.Now());
    Pump();
  }
  void OnWritten(size_t n) override {
    if (garbage_sent_) return;  // the output is no longer the protocol's
    connection_.ConsumeOutput(n);
    handed_off_ -= n;
  }
  void OnWriteError(absl::Status status) override {
    connection_.OnTransportClosed(status, server_.loop_.Now());
    Pump();
  }

  void OnTimer() {
    connection_.AdvanceTime(server_.loop_.Now());
    Pump();
  }
  void ArmTimer() {
    if (!closed_) timer_->Start(connection_.NextWakeup());
  }

  void Pump() {
    while (!closed_) {
      std::optional<protocol::Event> e = connection_.NextEvent();
      if (!e.has_value()) break;
      if (std::holds_alternative<protocol::Closed>(*e)) {
        Close();
        return;
      }
      auto* r = std::get_if<protocol::RequestReceived>(&*e);
      if (r == nullptr) continue;
      const CorrelationId id = r->request.correlation_id;
      Seen seen{number_, id.value(), r->exactly_once, r->answered_below.value(),
                std::string(r->request.payload)};
      server_.seen_.push_back(seen);
      const Action action =
          server_.policy_ ? server_.policy_(seen) : Action::kReply;
      const std::string reply = absl::StrCat("re:", seen.payload);
      switch (action) {
        case Action::kReply:
          EXPECT_TRUE(connection_.SendReply(id, reply).ok());
          break;
        case Action::kForgotten:
          EXPECT_TRUE(connection_
                          .SendErrorReply(
                              id, absl::AbortedError("outcome forgotten, maybe "
                                                     "delivered"))
                          .ok());
          break;
        case Action::kHold:
          held_.emplace_back(id.value(), seen.payload);
          break;
        case Action::kReset:
          Close();
          return;
        case Action::kGoodbyeThenReply:
          EXPECT_TRUE(connection_.SendGoodbye("scripted goodbye").ok());
          EXPECT_TRUE(connection_.SendReply(id, reply).ok());
          break;
        case Action::kReplyThenGarbage: {
          EXPECT_TRUE(connection_.SendReply(id, reply).ok());
          EXPECT_FALSE(withhold_);
          absl::Span<const char> out =
              connection_.PendingOutput().subspan(handed_off_);
          // 16 bytes whose header check cannot match: DataLoss at once.
          std::string bytes =
              absl::StrCat(absl::string_view(out.data(), out.size()),
                           std::string(16, '\xff'));
          connection_.ConsumeOutput(connection_.PendingOutput().size());
          garbage_sent_ = true;
          EXPECT_TRUE(stream_->Write(bytes).ok());
          break;
        }
      }
    }
    Flush();
    ArmTimer();
  }

  void Flush() {
    if (withhold_ || garbage_sent_ || closed_) return;
    absl::Span<const char> out = connection_.PendingOutput();
    if (out.size() <= handed_off_) return;
    absl::Span<const char> rest = out.subspan(handed_off_);
    absl::StatusOr<size_t> n = stream_->Write(rest);
    if (!n.ok()) return;
    connection_.ConsumeOutput(*n);
    handed_off_ += rest.size() - *n;
  }

  ScriptedServer& server_;
  const int number_;
  std::unique_ptr<Stream> stream_;
  protocol::Connection connection_;
  std::unique_ptr<Timer> timer_;
  bool withhold_;
  size_t handed_off_ = 0;
  bool garbage_sent_ = false;
  bool closed_ = false;
  // Requests held: id, payload.
  std::vector<std::pair<uint64_t, std::string>> held_;
};

void ScriptedServer::OnAccept(std::unique_ptr<Stream> stream) {
  ++accepted_;
  connections_.push_back(
      std::make_unique<Conn>(*this, std::move(stream), accepted_));
}

void ScriptedServer::ReleaseOutput() {
  withhold_ = false;
  for (auto& c : connections_) c->Release();
}

bool ScriptedServer::ReplyTo(uint64_t id) {
  for (auto& c : connections_) {
    if (c->ReplyTo(id)) return true;
  }
  return false;
}

void ScriptedServer::ResetAll() {
  for (auto& c : connections_) c->Close();
  connections_.clear();
}

// ---- The client side ----

struct Outcome {
  bool done = false;
  bool destroyed = false;  // the callback was destroyed
  absl::Status status;
  std::string reply;
};

class DestroyFlag {
 public:
  explicit DestroyFlag(Outcome& o) : o_(&o) {}
  DestroyFlag(DestroyFlag&& other) noexcept : o_(std::exchange(other.o_, {})) {}
  DestroyFlag& operator=(DestroyFlag&&) = delete;
  ~DestroyFlag() {
    if (o_ != nullptr) o_->destroyed = true;
  }

 private:
  Outcome* o_;
};

ReplyCallback Record(Outcome& o) {
  return [&o, flag = DestroyFlag(o)](absl::StatusOr<absl::string_view> r) {
    EXPECT_FALSE(o.done) << "second outcome";
    o.done = true;
    if (r.ok()) {
      o.reply = std::string(*r);
    } else {
      o.status = r.status();
    }
  };
}

PeerOptions FastOptions(ClientRequestIds& ids) {
  PeerOptions o;
  o.connection.keepalive_interval = absl::Milliseconds(100);
  o.connection.keepalive_timeout = absl::Seconds(2);
  o.connection.default_request_timeout = absl::Seconds(5);
  o.backoff.initial = absl::Milliseconds(20);
  o.backoff.max = absl::Milliseconds(200);
  o.ids = &ids;
  return o;
}

PeerRequestOptions ExactlyOnce() {
  PeerRequestOptions o;
  o.exactly_once = true;
  return o;
}

bool RunUntil(UvLoop& loop, const std::function<bool()>& done,
              absl::Duration timeout = absl::Seconds(5)) {
  return loop.RunUntil(done, loop.Now() + timeout);
}

void RunFor(UvLoop& loop, absl::Duration d) {
  loop.RunUntil([] { return false; }, loop.Now() + d);
}

// Sends a plain request and waits for its reply: the Peer is then
// connected and handshaken.
void WarmUp(UvLoop& loop, Peer& peer) {
  Outcome o;
  ASSERT_TRUE(peer.Request("warm-up", {}, Record(o)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return o.done; }));
  ASSERT_TRUE(o.status.ok()) << o.status;
}

std::vector<std::string> Payloads(const std::vector<Seen>& seen,
                                  int connection) {
  std::vector<std::string> out;
  for (const Seen& s : seen) {
    if (s.connection == connection) out.push_back(s.payload);
  }
  return out;
}

const Seen* Find(const std::vector<Seen>& seen, absl::string_view payload,
                 int connection) {
  for (const Seen& s : seen) {
    if (s.payload == payload && s.connection == connection) return &s;
  }
  return nullptr;
}

// ---- The handshake ----

TEST(PeerExactlyOnce, WaitsForTheServersHelloAndAPlainOneBehindItWaitsToo) {
  UvLoop loop(UvLoopOptions{.seed = 31});
  ScriptedServer server(loop);
  server.set_withhold_output(true);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  Outcome once, plain;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(peer.Request("plain", {}, Record(plain)).ok());
  // The server read the client's Hello and withholds its own: nothing
  // was pipelined behind the client's Hello.
  ASSERT_TRUE(
      RunUntil(loop, [&] { return server.connections_accepted() > 0; }));
  RunFor(loop, absl::Milliseconds(150));
  EXPECT_TRUE(server.seen().empty());
  EXPECT_EQ(peer.stats().handshakes, 0u);
  server.ReleaseOutput();
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done && plain.done; }));
  EXPECT_TRUE(once.status.ok()) << once.status;
  EXPECT_EQ(once.reply, "re:once");
  EXPECT_TRUE(plain.status.ok()) << plain.status;
  EXPECT_EQ(Payloads(server.seen(), 1),
            (std::vector<std::string>{"once", "plain"}));
}

TEST(PeerExactlyOnce, APlainRequestAloneIsPipelinedBeforeTheHello) {
  // The contrast to the test above: the server sees a plain request while
  // it withholds its Hello, so seeing none there means something.
  UvLoop loop(UvLoopOptions{.seed = 32});
  ScriptedServer server(loop);
  server.set_withhold_output(true);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  Outcome plain;
  ASSERT_TRUE(peer.Request("plain", {}, Record(plain)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return server.seen().size() == 1; }));
  EXPECT_EQ(peer.stats().handshakes, 0u);
  server.ReleaseOutput();
  ASSERT_TRUE(RunUntil(loop, [&] { return plain.done; }));
  EXPECT_TRUE(plain.status.ok()) << plain.status;
}

TEST(PeerExactlyOnce, WrittenWithExactlyOnceAndAnsweredBelowOnVersion2) {
  UvLoop loop(UvLoopOptions{.seed = 33});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  EXPECT_EQ(peer.server_incarnation(), 99u);
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_TRUE(once.status.ok()) << once.status;
  const Seen* s = Find(server.seen(), "once", 1);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->exactly_once);
  // Nothing else unsettled: its own id.
  EXPECT_EQ(s->answered_below, s->id);
  // The plain warm-up carried no flag.
  const Seen* warm = Find(server.seen(), "warm-up", 1);
  ASSERT_NE(warm, nullptr);
  EXPECT_FALSE(warm->exactly_once);
  EXPECT_EQ(ids.unsettled(), 0u);
}

// ---- Maybe delivered: the same id to the same server ----

TEST(PeerExactlyOnce, ResetAfterWrittenResendsTheSameIdFirstToTheSameServer) {
  UvLoop loop(UvLoopOptions{.seed = 34});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  PeerOptions options = FastOptions(ids);
  options.backoff.initial = absl::Milliseconds(150);
  Peer peer(loop, server.address(), options);
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 ? Action::kReset : Action::kReply;
  });
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(
      RunUntil(loop, [&] { return peer.state() == PeerState::kBackingOff; }));
  EXPECT_FALSE(once.done);
  EXPECT_EQ(peer.pending_requests(), 1u);
  // A fresh request made while the resend waits for the next connection.
  Outcome fresh;
  ASSERT_TRUE(peer.Request("fresh", {}, Record(fresh)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done && fresh.done; }));
  EXPECT_TRUE(once.status.ok()) << once.status;
  EXPECT_EQ(once.reply, "re:once");
  EXPECT_TRUE(fresh.status.ok()) << fresh.status;
  const Seen* first = Find(server.seen(), "once", 1);
  const Seen* again = Find(server.seen(), "once", 2);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->id, first->id);
  EXPECT_TRUE(again->exactly_once);
  // Its own id is still unsettled while it is resent.
  EXPECT_EQ(again->answered_below, first->id);
  EXPECT_EQ(Payloads(server.seen(), 2),
            (std::vector<std::string>{"once", "fresh"}));
  EXPECT_EQ(peer.stats().resent_exactly_once, 1u);
  EXPECT_EQ(peer.stats().exactly_once_aborted, 0u);
  EXPECT_EQ(peer.stats().connections, 2u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

TEST(PeerExactlyOnce, LostAgainAfterAResendIsResentAgainWithTheSameId) {
  UvLoop loop(UvLoopOptions{.seed = 50});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection <= 2 ? Action::kReset : Action::kReply;
  });
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_TRUE(once.status.ok()) << once.status;
  std::vector<uint64_t> sent_ids;
  for (int c = 1; c <= 3; ++c) {
    const Seen* s = Find(server.seen(), "once", c);
    ASSERT_NE(s, nullptr) << "connection " << c;
    EXPECT_TRUE(s->exactly_once);
    sent_ids.push_back(s->id);
  }
  EXPECT_EQ(sent_ids[1], sent_ids[0]);
  EXPECT_EQ(sent_ids[2], sent_ids[0]);
  EXPECT_EQ(peer.stats().resent_exactly_once, 2u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

TEST(PeerExactlyOnce, AResendTheServerForgotIsAbortedToTheCaller) {
  UvLoop loop(UvLoopOptions{.seed = 51});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 ? Action::kReset : Action::kForgotten;
  });
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_EQ(once.status.code(), absl::StatusCode::kAborted) << once.status;
  EXPECT_NE(once.status.message().find("outcome forgotten"),
            absl::string_view::npos)
      << once.status;
  // Resent, and the server's answer is the outcome: no further resend.
  EXPECT_EQ(peer.stats().resent_exactly_once, 1u);
  EXPECT_EQ(peer.stats().exactly_once_aborted, 0u);
  EXPECT_EQ(server.seen().size(), 3u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

TEST(PeerExactlyOnce, ServerRestartedWithAnotherIncarnationFailsAborted) {
  UvLoop loop(UvLoopOptions{.seed = 35});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 ? Action::kReset : Action::kReply;
  });
  server.set_incarnation(100);  // the next connection: a restarted server
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_EQ(once.status.code(), absl::StatusCode::kAborted) << once.status;
  EXPECT_NE(once.status.message().find("may have been delivered"),
            absl::string_view::npos)
      << once.status;
  EXPECT_EQ(peer.server_incarnation(), 100u);
  EXPECT_EQ(peer.stats().exactly_once_aborted, 1u);
  EXPECT_EQ(peer.stats().resent_exactly_once, 0u);
  EXPECT_EQ(Find(server.seen(), "once", 2), nullptr);
  EXPECT_EQ(ids.unsettled(), 0u);
  // The new connection serves what comes next.
  Outcome next;
  ASSERT_TRUE(peer.Request("next", ExactlyOnce(), Record(next)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return next.done; }));
  EXPECT_TRUE(next.status.ok()) << next.status;
}

TEST(PeerExactlyOnce, ServerNowOnVersion1FailsAWaitingResendAborted) {
  UvLoop loop(UvLoopOptions{.seed = 36});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 ? Action::kReset : Action::kReply;
  });
  server.set_max_version(1);  // same incarnation, but it keeps no records
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_EQ(once.status.code(), absl::StatusCode::kAborted) << once.status;
  EXPECT_EQ(peer.stats().exactly_once_aborted, 1u);
  EXPECT_EQ(Find(server.seen(), "once", 2), nullptr);
  EXPECT_EQ(ids.unsettled(), 0u);
}

// ---- Version 1 ----

TEST(PeerExactlyOnce, Version1SendsItPlainAndALossIsAbortedAsForAPlainOne) {
  UvLoop loop(UvLoopOptions{.seed = 37});
  ScriptedServer server(loop);
  server.set_max_version(1);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.payload == "reset" ? Action::kReset : Action::kReply;
  });
  Outcome answered, lost;
  ASSERT_TRUE(peer.Request("answered", ExactlyOnce(), Record(answered)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return answered.done; }));
  EXPECT_TRUE(answered.status.ok()) << answered.status;
  const Seen* s = Find(server.seen(), "answered", 1);
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(s->exactly_once);
  EXPECT_EQ(s->answered_below, 0u);
  EXPECT_EQ(ids.unsettled(), 0u);  // nothing for a server to keep
  ASSERT_TRUE(peer.Request("reset", ExactlyOnce(), Record(lost)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return lost.done; }));
  EXPECT_EQ(lost.status.code(), absl::StatusCode::kAborted) << lost.status;
  // A plain request's loss, not a resend that found another server.
  EXPECT_EQ(peer.stats().exactly_once_aborted, 0u);
  EXPECT_EQ(peer.stats().resent_exactly_once, 0u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

TEST(PeerExactlyOnce, Version1IdempotentAndExactlyOnceIsRetriedAsIdempotent) {
  UvLoop loop(UvLoopOptions{.seed = 38});
  ScriptedServer server(loop);
  server.set_max_version(1);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 ? Action::kReset : Action::kReply;
  });
  PeerRequestOptions options = ExactlyOnce();
  options.idempotent = true;
  Outcome o;
  ASSERT_TRUE(peer.Request("both", options, Record(o)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return o.done; }));
  EXPECT_TRUE(o.status.ok()) << o.status;
  const Seen* first = Find(server.seen(), "both", 1);
  const Seen* again = Find(server.seen(), "both", 2);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(again, nullptr);
  EXPECT_FALSE(again->exactly_once);
  EXPECT_EQ(peer.stats().retries, 1u);
  EXPECT_EQ(peer.stats().resent_exactly_once, 0u);
}

// ---- Never ran: a new id ----

TEST(PeerExactlyOnce, NeverWrittenIsSentAgainWithANewIdAndTheOldOneSettled) {
  UvLoop loop(UvLoopOptions{.seed = 39});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  // "trigger" is answered, and the connection then breaks (corrupt bytes)
  // in the same pump of the client's events: what its callback sends never
  // leaves the client.
  server.set_policy([](const Seen& s) {
    return s.payload == "trigger" ? Action::kReplyThenGarbage : Action::kReply;
  });
  Outcome trigger, once;
  uint64_t first_id = 0;
  ASSERT_TRUE(
      peer.Request(
              "trigger", {},
              [&](absl::StatusOr<absl::string_view> r) {
                Record(trigger)(r);
                ASSERT_TRUE(
                    peer.Request("once", ExactlyOnce(), Record(once)).ok());
                first_id = ids.generator().last().value();
                // Sent at once on the open connection: unsettled.
                EXPECT_EQ(ids.unsettled(), 1u);
              })
          .ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_TRUE(trigger.status.ok()) << trigger.status;
  EXPECT_TRUE(once.status.ok()) << once.status;
  ASSERT_NE(first_id, 0u);
  EXPECT_EQ(Find(server.seen(), "once", 1), nullptr) << "it was written";
  const Seen* again = Find(server.seen(), "once", 2);
  ASSERT_NE(again, nullptr);
  EXPECT_GT(again->id, first_id);
  EXPECT_TRUE(again->exactly_once);
  // The first id was settled: nothing below the new one is unsettled.
  EXPECT_EQ(again->answered_below, again->id);
  EXPECT_EQ(peer.stats().retries, 1u);
  EXPECT_EQ(peer.stats().resent_exactly_once, 0u);
  EXPECT_EQ(peer.stats().protocol_errors, 1u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

TEST(PeerExactlyOnce, RefusedByGoodbyeIsSentAgainWithANewId) {
  UvLoop loop(UvLoopOptions{.seed = 40});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  // "bye" is answered after a Goodbye that names it the last processed:
  // "once", written in the same turn behind it, is refused.
  server.set_policy([](const Seen& s) {
    return s.payload == "bye" && s.connection == 1 ? Action::kGoodbyeThenReply
                                                   : Action::kReply;
  });
  Outcome bye, once;
  ASSERT_TRUE(peer.Request("bye", {}, Record(bye)).ok());
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  const uint64_t first_id = ids.generator().last().value();
  EXPECT_EQ(ids.unsettled(), 1u);
  ASSERT_TRUE(RunUntil(loop, [&] { return bye.done && once.done; }));
  EXPECT_TRUE(bye.status.ok()) << bye.status;
  EXPECT_TRUE(once.status.ok()) << once.status;
  const Seen* refused = Find(server.seen(), "once", 1);
  const Seen* again = Find(server.seen(), "once", 2);
  EXPECT_EQ(refused, nullptr) << "a refused request is no event";
  ASSERT_NE(again, nullptr);
  EXPECT_GT(again->id, first_id);
  EXPECT_EQ(again->answered_below, again->id);
  EXPECT_EQ(peer.stats().resent_exactly_once, 0u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

// ---- answeredBelow ----

TEST(PeerExactlyOnce, AnsweredBelowIsTheLowestUnsettledAndRisesWithOutcomes) {
  UvLoop loop(UvLoopOptions{.seed = 41});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.exactly_once ? Action::kHold : Action::kReply;
  });
  Outcome e1, e2;
  ASSERT_TRUE(peer.Request("e1", ExactlyOnce(), Record(e1)).ok());
  ASSERT_TRUE(peer.Request("e2", ExactlyOnce(), Record(e2)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return server.seen().size() == 3; }));
  const uint64_t id1 = server.seen()[1].id;
  const uint64_t id2 = server.seen()[2].id;
  EXPECT_EQ(server.seen()[2].answered_below, id1);
  // The probe: a plain request tells the mark too.
  auto probe = [&](const std::string& name) -> uint64_t {
    Outcome o;
    EXPECT_TRUE(peer.Request(name, {}, Record(o)).ok());
    EXPECT_TRUE(RunUntil(loop, [&] { return o.done; }));
    const Seen* s = Find(server.seen(), name, 1);
    return s == nullptr ? 0 : s->answered_below;
  };
  EXPECT_EQ(probe("p1"), id1);
  ASSERT_TRUE(server.ReplyTo(id1));
  ASSERT_TRUE(RunUntil(loop, [&] { return e1.done; }));
  EXPECT_EQ(probe("p2"), id2);
  ASSERT_TRUE(server.ReplyTo(id2));
  ASSERT_TRUE(RunUntil(loop, [&] { return e2.done; }));
  // None unsettled: the probe's own id.
  const uint64_t next = ids.generator().last().value() + 1;
  EXPECT_EQ(probe("p3"), next);
  EXPECT_TRUE(e1.status.ok()) << e1.status;
  EXPECT_TRUE(e2.status.ok()) << e2.status;
}

TEST(PeerExactlyOnce, CancelledAndDeadlineFailedRequestsAreSettled) {
  UvLoop loop(UvLoopOptions{.seed = 42});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.exactly_once ? Action::kHold : Action::kReply;
  });
  Outcome cancelled, expired;
  absl::StatusOr<PeerRequestId> id =
      peer.Request("cancelled", ExactlyOnce(), Record(cancelled));
  ASSERT_TRUE(id.ok()) << id.status();
  PeerRequestOptions short_deadline = ExactlyOnce();
  short_deadline.deadline = loop.Now() + absl::Milliseconds(200);
  ASSERT_TRUE(peer.Request("expired", short_deadline, Record(expired)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return server.seen().size() == 3; }));
  EXPECT_EQ(ids.unsettled(), 2u);
  peer.Cancel(*id);
  EXPECT_TRUE(cancelled.destroyed);
  EXPECT_EQ(ids.unsettled(), 1u);
  ASSERT_TRUE(RunUntil(loop, [&] { return expired.done; }));
  EXPECT_EQ(expired.status.code(), absl::StatusCode::kDeadlineExceeded)
      << expired.status;
  EXPECT_EQ(ids.unsettled(), 0u);
  Outcome probe;
  ASSERT_TRUE(peer.Request("probe", {}, Record(probe)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return probe.done; }));
  const Seen* s = Find(server.seen(), "probe", 1);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->answered_below, s->id);
  EXPECT_FALSE(cancelled.done);
}

// ---- Waiting to be resent ----

TEST(PeerExactlyOnce, DeadlineWhileWaitingToBeResentIsDeadlineExceeded) {
  UvLoop loop(UvLoopOptions{.seed = 43});
  auto server = std::make_unique<ScriptedServer>(loop);
  ClientRequestIds ids;
  Peer peer(loop, server->address(), FastOptions(ids));
  WarmUp(loop, peer);
  server->set_policy([](const Seen&) { return Action::kReset; });
  PeerRequestOptions options = ExactlyOnce();
  options.deadline = loop.Now() + absl::Milliseconds(400);
  Outcome once;
  ASSERT_TRUE(peer.Request("once", options, Record(once)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return !server->seen().empty(); }));
  server.reset();  // gone: the resend waits for a connection that never comes
  ASSERT_TRUE(RunUntil(loop, [&] { return once.done; }));
  EXPECT_EQ(once.status.code(), absl::StatusCode::kDeadlineExceeded)
      << once.status;
  EXPECT_EQ(peer.pending_requests(), 0u);
  EXPECT_EQ(ids.unsettled(), 0u);
  EXPECT_EQ(peer.stats().resent_exactly_once, 0u);
}

TEST(PeerExactlyOnce, CancelWhileWaitingToBeResentSettlesWithoutACallback) {
  UvLoop loop(UvLoopOptions{.seed = 44});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  PeerOptions options = FastOptions(ids);
  options.backoff.initial = absl::Milliseconds(150);
  Peer peer(loop, server.address(), options);
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 ? Action::kReset : Action::kReply;
  });
  Outcome once;
  absl::StatusOr<PeerRequestId> id =
      peer.Request("once", ExactlyOnce(), Record(once));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(
      RunUntil(loop, [&] { return peer.state() == PeerState::kBackingOff; }));
  EXPECT_EQ(peer.pending_requests(), 1u);
  EXPECT_EQ(ids.unsettled(), 1u);
  peer.Cancel(*id);
  EXPECT_TRUE(once.destroyed);
  EXPECT_EQ(peer.pending_requests(), 0u);
  EXPECT_EQ(ids.unsettled(), 0u);
  EXPECT_EQ(peer.stats().cancelled_queued, 1u);
  // The next connection does not see it again.
  Outcome next;
  ASSERT_TRUE(peer.Request("next", {}, Record(next)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return next.done; }));
  EXPECT_EQ(Payloads(server.seen(), 2), std::vector<std::string>{"next"});
  EXPECT_FALSE(once.done);
}

TEST(PeerExactlyOnce, CloseWhileWaitingToBeResentIsCancelled) {
  UvLoop loop(UvLoopOptions{.seed = 45});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  PeerOptions options = FastOptions(ids);
  options.backoff.initial = absl::Milliseconds(150);
  Peer peer(loop, server.address(), options);
  WarmUp(loop, peer);
  server.set_policy([](const Seen&) { return Action::kReset; });
  Outcome once;
  ASSERT_TRUE(peer.Request("once", ExactlyOnce(), Record(once)).ok());
  ASSERT_TRUE(
      RunUntil(loop, [&] { return peer.state() == PeerState::kBackingOff; }));
  EXPECT_FALSE(once.done);
  peer.Close();
  EXPECT_TRUE(once.done);
  EXPECT_EQ(once.status.code(), absl::StatusCode::kCancelled) << once.status;
  EXPECT_EQ(peer.pending_requests(), 0u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

// Three exactly-once requests written and held, then the connection
// reset: on the next one (which withholds its Hello for a while) they go
// again in id order, with their ids, before requests queued while there was
// no connection (`queue_meanwhile`) and before one made while the resends
// wait for the Hello, with nothing queued, which would otherwise take the
// fast path straight onto the connection.
void ResendsGoBeforeFreshRequests(bool queue_meanwhile, uint32_t seed) {
  UvLoop loop(UvLoopOptions{.seed = seed});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  PeerOptions options = FastOptions(ids);
  options.backoff.initial = absl::Milliseconds(150);
  Peer peer(loop, server.address(), options);
  WarmUp(loop, peer);
  server.set_policy([](const Seen& s) {
    return s.connection == 1 && s.exactly_once ? Action::kHold : Action::kReply;
  });
  Outcome e1, e2, e3;
  ASSERT_TRUE(peer.Request("e1", ExactlyOnce(), Record(e1)).ok());
  ASSERT_TRUE(peer.Request("e2", ExactlyOnce(), Record(e2)).ok());
  ASSERT_TRUE(peer.Request("e3", ExactlyOnce(), Record(e3)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return server.seen().size() == 4; }));
  server.set_withhold_output(true);
  server.ResetAll();
  ASSERT_TRUE(
      RunUntil(loop, [&] { return peer.state() == PeerState::kBackingOff; }));
  std::vector<std::string> expected = {"e1", "e2", "e3"};
  Outcome queued_plain, queued_once;
  if (queue_meanwhile) {
    ASSERT_TRUE(peer.Request("queued-plain", {}, Record(queued_plain)).ok());
    ASSERT_TRUE(
        peer.Request("queued-once", ExactlyOnce(), Record(queued_once)).ok());
    expected.push_back("queued-plain");
    expected.push_back("queued-once");
  }
  ASSERT_TRUE(RunUntil(loop, [&] {
    return peer.state() == PeerState::kConnected &&
           peer.stats().connections == 2;
  }));
  Outcome fast;
  ASSERT_TRUE(peer.Request("fast", {}, Record(fast)).ok());
  expected.push_back("fast");
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_EQ(Payloads(server.seen(), 2), std::vector<std::string>{});
  server.ReleaseOutput();
  std::vector<Outcome*> all = {&e1, &e2, &e3, &fast};
  if (queue_meanwhile) {
    all.push_back(&queued_plain);
    all.push_back(&queued_once);
  }
  ASSERT_TRUE(RunUntil(loop, [&] {
    for (Outcome* o : all) {
      if (!o->done) return false;
    }
    return true;
  }));
  for (Outcome* o : all) EXPECT_TRUE(o->status.ok()) << o->status;
  EXPECT_EQ(Payloads(server.seen(), 2), expected);
  for (const char* name : {"e1", "e2", "e3"}) {
    const Seen* first = Find(server.seen(), name, 1);
    const Seen* again = Find(server.seen(), name, 2);
    ASSERT_NE(first, nullptr);
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(again->id, first->id) << name;
  }
  EXPECT_EQ(peer.stats().resent_exactly_once, 3u);
  EXPECT_EQ(ids.unsettled(), 0u);
}

TEST(PeerExactlyOnce, ResendsGoInIdOrderBeforeRequestsQueuedMeanwhile) {
  ResendsGoBeforeFreshRequests(/*queue_meanwhile=*/true, 46);
}

TEST(PeerExactlyOnce, AFastPathRequestDoesNotOvertakeResendsWaitingForHello) {
  ResendsGoBeforeFreshRequests(/*queue_meanwhile=*/false, 49);
}

// ---- Two Peers, one client incarnation ----

TEST(PeerExactlyOnce, TwoPeersSharingIdsNeverReuseOneAndShareTheMark) {
  UvLoop loop(UvLoopOptions{.seed = 47});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer a(loop, server.address(), FastOptions(ids));
  Peer b(loop, server.address(), FastOptions(ids));
  WarmUp(loop, a);
  WarmUp(loop, b);
  server.set_policy([](const Seen& s) {
    return s.payload == "a-held" ? Action::kHold : Action::kReply;
  });
  Outcome held;
  ASSERT_TRUE(a.Request("a-held", ExactlyOnce(), Record(held)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return server.seen().size() == 3; }));
  const uint64_t held_id = server.seen()[2].id;
  std::vector<Outcome> outcomes(6);
  for (int i = 0; i < 6; ++i) {
    Peer& peer = i % 2 == 0 ? b : a;
    PeerRequestOptions options;
    options.exactly_once = i % 3 != 2;
    ASSERT_TRUE(
        peer.Request(absl::StrCat("r", i), options, Record(outcomes[i])).ok());
  }
  ASSERT_TRUE(RunUntil(loop, [&] {
    for (const Outcome& o : outcomes) {
      if (!o.done) return false;
    }
    return true;
  }));
  std::vector<uint64_t> seen_ids;
  for (const Seen& s : server.seen()) {
    seen_ids.push_back(s.id);
    // A's unsettled request holds the mark for B's requests too.
    if (s.payload[0] == 'r') {
      EXPECT_EQ(s.answered_below, held_id) << s.payload;
    }
  }
  std::vector<uint64_t> sorted = seen_ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "an id used twice";
  ASSERT_TRUE(server.ReplyTo(held_id));
  ASSERT_TRUE(RunUntil(loop, [&] { return held.done; }));
  EXPECT_EQ(ids.unsettled(), 0u);
  Outcome probe;
  ASSERT_TRUE(b.Request("probe", {}, Record(probe)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return probe.done; }));
  const Seen& last = server.seen().back();
  EXPECT_EQ(last.payload, "probe");
  EXPECT_EQ(last.answered_below, last.id);
}

TEST(PeerExactlyOnce, RequestStreamWithExactlyOnceIsInvalidArgument) {
  UvLoop loop(UvLoopOptions{.seed = 48});
  ScriptedServer server(loop);
  ClientRequestIds ids;
  Peer peer(loop, server.address(), FastOptions(ids));
  PeerRequestOptions options = ExactlyOnce();
  options.stream_credit = 1024;
  Outcome o;
  absl::StatusOr<PeerRequestId> id = peer.RequestStream(
      "stream", options, [](absl::string_view) {}, Record(o));
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument)
      << id.status();
  EXPECT_EQ(peer.stats().requests, 0u);
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_FALSE(o.done);
  EXPECT_TRUE(server.seen().empty());
}

}  // namespace
}  // namespace moonpool::driver
