// Peer::RequestStream and Peer::GrantCredit on real loopback sockets and
// UvLoop (DESIGN.md section 5 "Reply streams", section 6): items in order and
// exactly one end; a server held to its credit until the client grants it
// back; a stream never sent again once an item arrived; Cancel mid-stream; a
// version 1 server's plain reply as a stream of one.
//
// The server here is a ConnectionDriver per accepted socket (the shared
// TestServer only answers plain replies): it sends a list of items to each
// stream request while StreamWritable, and can drip them on a timer, end with
// an error, or reset its first connection after some items.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/connection_driver.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/timer.h"
#include "moonpool/driver/uv_loop.h"

namespace moonpool::driver {
namespace {

// Records every failed Always point ("protocol.stream_within_credit") of the
// connections it is given to.
struct AlwaysLog {
  std::vector<std::string> failed;
  protocol::AlwaysFn Fn() {
    return [this](bool held, absl::string_view name, absl::string_view detail) {
      if (!held) failed.push_back(absl::StrCat(name, ": ", detail));
    };
  }
};

struct ServerOptions {
  uint32_t max_version = 2;
  // Sent, in order, to every stream request, each only while the stream is
  // writable.
  std::vector<std::string> items = {};
  enum class End { kStreamEnd, kLastItemAsReply, kError };
  End end = End::kStreamEnd;
  absl::Status error = absl::OkStatus();  // for End::kError
  // Answer every request with one plain reply ("reply:" + payload), as a
  // server that knows nothing of streams does.
  bool plain_reply = false;
  // Zero: as many items per turn as the credit allows; else one item per
  // interval.
  absl::Duration item_interval = absl::ZeroDuration();
  // On the first connection only: once this many items were sent (0: as
  // soon as a request arrives), stop and reset the connection a little later
  // (so what was sent is written first).
  std::optional<int> reset_first_connection_after = std::nullopt;
};

class StreamServer {
 public:
  StreamServer(Loop& loop, ServerOptions options)
      : loop_(loop), options_(std::move(options)) {
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
  ~StreamServer() {
    listener_.reset();
    connections_.clear();
  }

  const Address& address() const { return address_; }
  int connections_accepted() const { return static_cast<int>(accepted_); }
  int requests_seen() const { return requests_seen_; }
  int cancels_received() const { return cancels_received_; }
  int items_sent() const { return items_sent_; }
  uint64_t credit_bytes_received() const { return credit_bytes_; }
  // The stream_credit of every request received, in order.
  const std::vector<uint64_t>& credits_requested() const {
    return credits_requested_;
  }
  uint32_t last_version() const { return last_version_; }
  // Items the server would have sent past its credit by its own count.
  int over_credit() const { return over_credit_; }
  AlwaysLog& always() { return always_; }

 private:
  class Connection;

  void OnAccept(std::unique_ptr<Stream> stream) {
    ++accepted_;
    connections_.push_back(
        std::make_unique<Connection>(*this, std::move(stream), accepted_));
  }

  Loop& loop_;
  const ServerOptions options_;
  Address address_;
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<Connection>> connections_;
  size_t accepted_ = 0;
  int requests_seen_ = 0;
  int cancels_received_ = 0;
  int items_sent_ = 0;
  uint64_t credit_bytes_ = 0;
  std::vector<uint64_t> credits_requested_;
  uint32_t last_version_ = 0;
  int over_credit_ = 0;
  AlwaysLog always_;
};

class StreamServer::Connection final : public ConnectionHandler {
 public:
  Connection(StreamServer& server, std::unique_ptr<Stream> stream,
             size_t number)
      : server_(server),
        resets_(number == 1 &&
                server.options_.reset_first_connection_after.has_value()),
        driver_(std::make_unique<ConnectionDriver>(
            server.loop_, std::move(stream), Options(server), *this)),
        timer_(server.loop_.CreateTimer([this] { OnTimer(); })) {
    driver_->Start(/*pump_now=*/false);
  }
  ~Connection() { timer_->Stop(); }

 private:
  // One stream request being answered.
  struct Serving {
    uint64_t credit = 0;
    size_t next = 0;  // index of the next item
    uint64_t sent_bytes = 0;
    uint64_t granted_bytes = 0;
  };

  static ConnectionDriverOptions Options(StreamServer& server) {
    ConnectionDriverOptions o;
    o.connection.role = protocol::Role::kServer;
    o.connection.peer_name = "stream-server";
    o.connection.incarnation = 77;
    o.connection.max_protocol_version = server.options_.max_version;
    o.connection.always = server.always_.Fn();
    return o;
  }

  void OnEvent(protocol::Event& event) override {
    if (auto* h = std::get_if<protocol::HandshakeDone>(&event)) {
      server_.last_version_ = h->version;
    } else if (auto* r = std::get_if<protocol::RequestReceived>(&event)) {
      OnRequest(*r);
    } else if (auto* credit = std::get_if<protocol::CreditReceived>(&event)) {
      server_.credit_bytes_ += credit->bytes;
      auto it = serving_.find(credit->id.value());
      if (it == serving_.end()) return;
      it->second.granted_bytes += credit->bytes;
      SendMore(credit->id, it->second);
    } else if (auto* cancel = std::get_if<protocol::CancelReceived>(&event)) {
      ++server_.cancels_received_;
      if (serving_.erase(cancel->id.value()) > 0) {
        EXPECT_TRUE(driver_->AbandonRequest(cancel->id).ok());
      }
    }
  }

  void OnClosed(const absl::Status&) override {
    serving_.clear();
    timer_->Stop();
  }

  void OnRequest(const protocol::RequestReceived& r) {
    ++server_.requests_seen_;
    server_.credits_requested_.push_back(r.stream_credit);
    const CorrelationId id = r.request.correlation_id;
    if (resets_ && *server_.options_.reset_first_connection_after == 0) {
      ResetSoon();
      return;
    }
    if (server_.options_.plain_reply || r.stream_credit == 0) {
      EXPECT_TRUE(
          driver_->SendReply(id, absl::StrCat("reply:", r.request.payload))
              .ok());
      return;
    }
    auto [it, inserted] = serving_.emplace(id.value(), Serving{});
    EXPECT_TRUE(inserted);
    it->second.credit = r.stream_credit;
    SendMore(id, it->second);
  }

  // Sends what the credit allows (one item when dripping), and the end
  // after the last item.
  void SendMore(CorrelationId id, Serving& s) {
    const ServerOptions& o = server_.options_;
    const bool drip = o.item_interval > absl::ZeroDuration();
    while (!resetting_ && s.next < o.items.size() &&
           driver_->StreamWritable(id)) {
      if (drip && timer_->active()) return;  // the next one waits its turn
      const std::string& item = o.items[s.next];
      if (o.end == ServerOptions::End::kLastItemAsReply &&
          s.next + 1 == o.items.size()) {
        break;  // the last one goes as the reply
      }
      if (s.sent_bytes - s.granted_bytes >= s.credit) ++server_.over_credit_;
      absl::Status sent = driver_->SendStreamItem(id, item);
      EXPECT_TRUE(sent.ok()) << sent;
      if (!sent.ok()) return;
      ++s.next;
      s.sent_bytes += item.size();
      ++server_.items_sent_;
      ++items_sent_here_;
      if (resets_ &&
          items_sent_here_ == *server_.options_.reset_first_connection_after) {
        ResetSoon();
        return;
      }
      if (drip) {
        timer_->Start(server_.loop_.Now() + o.item_interval);
        return;
      }
    }
    if (resetting_) return;
    if (o.end == ServerOptions::End::kLastItemAsReply &&
        s.next + 1 == o.items.size()) {
      if (!driver_->StreamWritable(id)) return;
      EXPECT_TRUE(driver_->SendReply(id, o.items[s.next]).ok());
      ++server_.items_sent_;
      serving_.erase(id.value());
      return;
    }
    if (s.next < o.items.size()) return;  // waits for credit
    if (o.end == ServerOptions::End::kError) {
      EXPECT_TRUE(driver_->SendErrorReply(id, o.error).ok());
    } else {
      EXPECT_TRUE(driver_->SendStreamEnd(id).ok());
    }
    serving_.erase(id.value());  // `s` is gone
  }

  void ResetSoon() {
    resetting_ = true;
    timer_->Start(server_.loop_.Now() + absl::Milliseconds(30));
  }

  void OnTimer() {
    if (resetting_) {
      driver_->Close();  // abruptly: no Goodbye
      serving_.clear();
      return;
    }
    // Dripping: the next item of each stream (copied: SendMore may erase).
    std::vector<uint64_t> ids;
    for (const auto& [id, s] : serving_) ids.push_back(id);
    for (uint64_t id : ids) {
      auto it = serving_.find(id);
      if (it != serving_.end()) SendMore(CorrelationId(id), it->second);
    }
  }

  StreamServer& server_;
  const bool resets_;
  std::unique_ptr<ConnectionDriver> driver_;
  std::unique_ptr<Timer> timer_;
  absl::flat_hash_map<uint64_t, Serving> serving_;
  int items_sent_here_ = 0;
  bool resetting_ = false;
};

// What one stream delivered, kept past its callbacks.
struct StreamLog {
  std::vector<std::string> items = {};
  uint64_t bytes = 0;
  bool done = false;
  bool done_destroyed = false;  // `done` was destroyed (called or not)
  absl::Status status;
};

// Sets `done_destroyed` when the callback holding it goes.
class DestroyFlag {
 public:
  explicit DestroyFlag(StreamLog& log) : log_(&log) {}
  DestroyFlag(DestroyFlag&& other) noexcept
      : log_(std::exchange(other.log_, nullptr)) {}
  DestroyFlag& operator=(DestroyFlag&&) = delete;
  ~DestroyFlag() {
    if (log_ != nullptr) log_->done_destroyed = true;
  }

 private:
  StreamLog* log_;
};

StreamItemCallback Items(StreamLog& log) {
  return [&log](absl::string_view item) {
    EXPECT_FALSE(log.done) << "an item after the end: " << item;
    log.items.emplace_back(item);
    log.bytes += item.size();
  };
}

ReplyCallback Done(StreamLog& log) {
  return
      [&log, flag = DestroyFlag(log)](absl::StatusOr<absl::string_view> end) {
        EXPECT_FALSE(log.done) << "a second end";
        log.done = true;
        if (end.ok()) {
          EXPECT_TRUE(end->empty()) << "a stream ends OK with an empty view";
        } else {
          log.status = end.status();
        }
      };
}

PeerOptions FastOptions(AlwaysLog& always) {
  PeerOptions o;
  o.connection.keepalive_interval = absl::Milliseconds(100);
  o.connection.keepalive_timeout = absl::Seconds(2);
  o.connection.default_request_timeout = absl::Seconds(5);
  o.connection.always = always.Fn();
  o.backoff.initial = absl::Milliseconds(20);
  o.backoff.max = absl::Milliseconds(200);
  return o;
}

PeerRequestOptions WithCredit(uint64_t credit, bool idempotent = false) {
  PeerRequestOptions o;
  o.stream_credit = credit;
  o.idempotent = idempotent;
  return o;
}

std::vector<std::string> NumberedItems(int n, size_t size = 0) {
  std::vector<std::string> items = {};
  for (int i = 0; i < n; ++i) {
    std::string item = absl::StrCat("item-", i, "-");
    if (item.size() < size) item.resize(size, 'x');
    items.push_back(std::move(item));
  }
  return items;
}

void RunFor(UvLoop& loop, absl::Duration d) {
  loop.RunUntil([] { return false; }, loop.Now() + d);
}

bool RunUntil(UvLoop& loop, absl::FunctionRef<bool()> done) {
  return loop.RunUntil(done, loop.Now() + absl::Seconds(10));
}

// ---- Items and the end ----

TEST(PeerStream, ItemsArriveInOrderThenDoneOkOnce) {
  UvLoop loop(UvLoopOptions{.seed = 21});
  StreamServer server(loop, {.items = NumberedItems(5)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  absl::StatusOr<PeerRequestId> id =
      peer.RequestStream("scan", WithCredit(1 << 20), Items(log), Done(log));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(log.items.empty());  // never inside RequestStream
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_EQ(log.items, NumberedItems(5));
  EXPECT_EQ(peer.stats().stream_items, 5u);
  EXPECT_EQ(peer.pending_requests(), 0u);
  EXPECT_EQ(server.credits_requested(), std::vector<uint64_t>{1 << 20});
  EXPECT_EQ(server.last_version(), 2u);
  // Granting credit to a stream that ended does nothing.
  peer.GrantCredit(*id, 5);
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_EQ(server.credit_bytes_received(), 0u);
  EXPECT_TRUE(always.failed.empty()) << always.failed[0];
  EXPECT_TRUE(server.always().failed.empty());
}

TEST(PeerStream, StreamEndWithNoItemIsDoneOkWithoutItems) {
  UvLoop loop(UvLoopOptions{.seed = 22});
  StreamServer server(loop, {});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(
      peer.RequestStream("empty", WithCredit(100), Items(log), Done(log)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_TRUE(log.items.empty());
  EXPECT_EQ(peer.stats().stream_items, 0u);
}

TEST(PeerStream, LastItemSentAsAReplyIsAnItemThenDone) {
  UvLoop loop(UvLoopOptions{.seed = 23});
  StreamServer server(loop, {.items = NumberedItems(3),
                             .end = ServerOptions::End::kLastItemAsReply});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(
      peer.RequestStream("scan", WithCredit(1000), Items(log), Done(log)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_EQ(log.items, NumberedItems(3));
}

TEST(PeerStream, PlainReplyToAStreamRequestIsOneItemThenDone) {
  UvLoop loop(UvLoopOptions{.seed = 24});
  StreamServer server(loop, {.plain_reply = true});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(
      peer.RequestStream("one", WithCredit(1000), Items(log), Done(log)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_EQ(log.items, std::vector<std::string>{"reply:one"});
  EXPECT_EQ(peer.stats().stream_items, 1u);
}

TEST(PeerStream, ErrorEndsTheStreamWithItsStatusAfterTheItems) {
  UvLoop loop(UvLoopOptions{.seed = 25});
  StreamServer server(loop, {.items = NumberedItems(2),
                             .end = ServerOptions::End::kError,
                             .error = absl::NotFoundError("range moved")});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(
      peer.RequestStream("scan", WithCredit(1000), Items(log), Done(log)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_EQ(log.items, NumberedItems(2));
  EXPECT_EQ(log.status.code(), absl::StatusCode::kNotFound) << log.status;
  EXPECT_EQ(log.status.message(), "range moved");
}

// ---- Flow control ----

TEST(PeerStream, ServerStopsAtTheCreditUntilTheClientGrantsItBack) {
  UvLoop loop(UvLoopOptions{.seed = 26});
  // Ten items of 100 bytes against 250 bytes of credit: three are writable
  // (0, 100 and 200 bytes outstanding are below 250), then none.
  StreamServer server(loop, {.items = NumberedItems(10, 100)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  absl::StatusOr<PeerRequestId> id =
      peer.RequestStream("scan", WithCredit(250), Items(log), Done(log));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(RunUntil(loop, [&] { return log.items.size() == 3; }));
  // Nothing more comes while the client grants nothing.
  RunFor(loop, absl::Milliseconds(200));
  EXPECT_EQ(log.items.size(), 3u);
  EXPECT_LE(log.bytes, 250u + 100u);  // at most the credit plus one item
  EXPECT_EQ(server.items_sent(), 3);
  EXPECT_FALSE(log.done);
  // Granting what was consumed lets the rest through.
  uint64_t granted = 0;
  ASSERT_TRUE(RunUntil(loop, [&] {
    if (log.bytes > granted && !log.done) {
      peer.GrantCredit(*id, log.bytes - granted);
      granted = log.bytes;
    }
    return log.done;
  }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_EQ(log.items, NumberedItems(10, 100));
  EXPECT_EQ(log.bytes, 1000u);
  // The tenth item needed at least 700 bytes back (900 sent, below 250
  // outstanding), and everything granted before the end arrived.
  EXPECT_GE(server.credit_bytes_received(), 700u);
  EXPECT_LE(server.credit_bytes_received(), granted);
  EXPECT_EQ(server.over_credit(), 0);
  EXPECT_TRUE(always.failed.empty()) << always.failed[0];
  EXPECT_TRUE(server.always().failed.empty());
}

TEST(PeerStream, OneItemLargerThanTheCreditStillPassesAlone) {
  UvLoop loop(UvLoopOptions{.seed = 27});
  StreamServer server(loop, {.items = NumberedItems(3, 100)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  absl::StatusOr<PeerRequestId> id =
      peer.RequestStream("scan", WithCredit(50), Items(log), Done(log));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(RunUntil(loop, [&] { return log.items.size() == 1; }));
  RunFor(loop, absl::Milliseconds(100));
  EXPECT_EQ(log.items.size(), 1u);
  peer.GrantCredit(*id, 100);
  ASSERT_TRUE(RunUntil(loop, [&] { return log.items.size() == 2; }));
  RunFor(loop, absl::Milliseconds(100));
  EXPECT_EQ(log.items.size(), 2u);
  peer.GrantCredit(*id, 100);
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_EQ(log.items, NumberedItems(3, 100));
  EXPECT_TRUE(always.failed.empty()) << always.failed[0];
}

// ---- Connection loss ----

class PeerStreamReset : public ::testing::TestWithParam<bool> {};

TEST_P(PeerStreamReset, AfterTheFirstItemAbortsAndIsNeverSentAgain) {
  const bool idempotent = GetParam();
  UvLoop loop(UvLoopOptions{.seed = 28});
  StreamServer server(
      loop, {.items = NumberedItems(3), .reset_first_connection_after = 1});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(peer.RequestStream("scan", WithCredit(1000, idempotent),
                                 Items(log), Done(log))
                  .ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_EQ(log.items, NumberedItems(1));
  EXPECT_EQ(log.status.code(), absl::StatusCode::kAborted) << log.status;
  // Given time to reconnect, it is still not sent again.
  RunFor(loop, absl::Milliseconds(300));
  EXPECT_EQ(server.requests_seen(), 1);
  EXPECT_EQ(peer.stats().retries, 0u);
  EXPECT_EQ(peer.pending_requests(), 0u);
}

INSTANTIATE_TEST_SUITE_P(IdempotentOrNot, PeerStreamReset, ::testing::Bool());

TEST(PeerStream, ResetBeforeAnyItemSendsAnIdempotentStreamAgain) {
  UvLoop loop(UvLoopOptions{.seed = 29});
  StreamServer server(
      loop, {.items = NumberedItems(3), .reset_first_connection_after = 0});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(peer.RequestStream("scan", WithCredit(1000, /*idempotent=*/true),
                                 Items(log), Done(log))
                  .ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.status.ok()) << log.status;
  EXPECT_EQ(log.items, NumberedItems(3));
  EXPECT_EQ(server.requests_seen(), 2);
  EXPECT_EQ(server.connections_accepted(), 2);
  EXPECT_EQ(peer.stats().retries, 1u);
  // Sent again with its whole credit.
  EXPECT_EQ(server.credits_requested(), (std::vector<uint64_t>{1000, 1000}));
}

TEST(PeerStream, ResetBeforeAnyItemAbortsAStreamNotIdempotent) {
  UvLoop loop(UvLoopOptions{.seed = 30});
  StreamServer server(
      loop, {.items = NumberedItems(3), .reset_first_connection_after = 0});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(
      peer.RequestStream("scan", WithCredit(1000), Items(log), Done(log)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_TRUE(log.items.empty());
  EXPECT_EQ(log.status.code(), absl::StatusCode::kAborted) << log.status;
  RunFor(loop, absl::Milliseconds(300));
  EXPECT_EQ(server.requests_seen(), 1);
  EXPECT_EQ(peer.stats().retries, 0u);
}

// ---- Cancel ----

TEST(PeerStream, CancelMidStreamStopsTheCallbacksAndTheServerHearsIt) {
  UvLoop loop(UvLoopOptions{.seed = 31});
  StreamServer server(loop, {.items = NumberedItems(50),
                             .item_interval = absl::Milliseconds(10)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  absl::StatusOr<PeerRequestId> id =
      peer.RequestStream("scan", WithCredit(1 << 20), Items(log), Done(log));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(RunUntil(loop, [&] { return log.items.size() >= 2; }));
  peer.Cancel(*id);
  EXPECT_TRUE(log.done_destroyed);
  EXPECT_EQ(peer.pending_requests(), 0u);
  const size_t items_at_cancel = log.items.size();
  ASSERT_TRUE(RunUntil(loop, [&] { return server.cancels_received() == 1; }));
  RunFor(loop, absl::Milliseconds(100));
  EXPECT_EQ(log.items.size(), items_at_cancel);
  EXPECT_FALSE(log.done);
  EXPECT_LT(server.items_sent(), 50);  // it stopped
  EXPECT_EQ(peer.stats().cancelled_in_flight, 1u);
  // Granting to a cancelled stream does nothing.
  peer.GrantCredit(*id, 1);
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_EQ(server.credit_bytes_received(), 0u);
}

TEST(PeerStream, CancelFromInsideTheItemCallbackTakesNoMoreItems) {
  UvLoop loop(UvLoopOptions{.seed = 32});
  // Three items come in one turn (likely in one read), then the server
  // waits for credit with the stream still open, so the cancel reaches it.
  StreamServer server(loop, {.items = NumberedItems(10, 100)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  PeerRequestId id;
  absl::StatusOr<PeerRequestId> requested = peer.RequestStream(
      "scan", WithCredit(250),
      [&](absl::string_view item) {
        log.items.emplace_back(item);
        peer.Cancel(id);
      },
      Done(log));
  ASSERT_TRUE(requested.ok()) << requested.status();
  id = *requested;
  ASSERT_TRUE(RunUntil(loop, [&] { return server.cancels_received() == 1; }));
  RunFor(loop, absl::Milliseconds(100));
  EXPECT_EQ(log.items, NumberedItems(1, 100));
  EXPECT_EQ(server.items_sent(), 3);
  EXPECT_FALSE(log.done);
  EXPECT_TRUE(log.done_destroyed);
  EXPECT_EQ(peer.pending_requests(), 0u);
}

TEST(PeerStream, CancelFromInsideTheLastItemCallbackCallsNoDone) {
  UvLoop loop(UvLoopOptions{.seed = 35});
  // The last item comes as the reply: the item and the end are one frame.
  StreamServer server(loop, {.items = NumberedItems(1),
                             .end = ServerOptions::End::kLastItemAsReply});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  PeerRequestId id;
  absl::StatusOr<PeerRequestId> requested = peer.RequestStream(
      "scan", WithCredit(1000),
      [&](absl::string_view item) {
        log.items.emplace_back(item);
        peer.Cancel(id);
      },
      Done(log));
  ASSERT_TRUE(requested.ok()) << requested.status();
  id = *requested;
  ASSERT_TRUE(RunUntil(loop, [&] { return !log.items.empty(); }));
  RunFor(loop, absl::Milliseconds(50));
  EXPECT_EQ(log.items, NumberedItems(1));
  // Cancel's contract: neither callback is called afterwards.
  EXPECT_FALSE(log.done);
  EXPECT_TRUE(log.done_destroyed);
  EXPECT_EQ(peer.pending_requests(), 0u);
}

// ---- Deadline and close ----

TEST(PeerStream, TheDeadlineBoundsTheWholeStream) {
  UvLoop loop(UvLoopOptions{.seed = 36});
  // One item every 50 ms, far more than the deadline lets through.
  StreamServer server(loop, {.items = NumberedItems(100),
                             .item_interval = absl::Milliseconds(50)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  PeerRequestOptions options = WithCredit(1 << 20, /*idempotent=*/true);
  options.deadline = loop.Now() + absl::Milliseconds(300);
  ASSERT_TRUE(peer.RequestStream("scan", options, Items(log), Done(log)).ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_EQ(log.status.code(), absl::StatusCode::kDeadlineExceeded)
      << log.status;
  EXPECT_FALSE(log.items.empty());
  EXPECT_LT(log.items.size(), 100u);
  EXPECT_EQ(log.items, NumberedItems(static_cast<int>(log.items.size())));
  const size_t items_at_end = log.items.size();
  RunFor(loop, absl::Milliseconds(150));
  EXPECT_EQ(log.items.size(), items_at_end);  // later items are dropped
  EXPECT_EQ(server.requests_seen(), 1);
}

TEST(PeerStream, ClosingThePeerEndsAStreamCancelled) {
  UvLoop loop(UvLoopOptions{.seed = 37});
  StreamServer server(loop, {.items = NumberedItems(100),
                             .item_interval = absl::Milliseconds(10)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  ASSERT_TRUE(
      peer.RequestStream("scan", WithCredit(1 << 20), Items(log), Done(log))
          .ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return log.items.size() >= 2; }));
  peer.Close();
  ASSERT_TRUE(RunUntil(loop, [&] { return log.done; }));
  EXPECT_EQ(log.status.code(), absl::StatusCode::kCancelled) << log.status;
  const size_t items_at_end = log.items.size();
  RunFor(loop, absl::Milliseconds(100));
  EXPECT_EQ(log.items.size(), items_at_end);
}

// ---- Version 1 ----

TEST(PeerStream, Version1ServerAnswersAStreamOfOne) {
  UvLoop loop(UvLoopOptions{.seed = 33});
  StreamServer server(loop, {.max_version = 1, .items = NumberedItems(3)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  // The first is pipelined before the server's Hello (it carries its
  // credit, which a version 1 server ignores); the second goes on the
  // known version 1 connection.
  StreamLog first;
  ASSERT_TRUE(
      peer.RequestStream("first", WithCredit(1000), Items(first), Done(first))
          .ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return first.done; }));
  EXPECT_TRUE(first.status.ok()) << first.status;
  EXPECT_EQ(first.items, std::vector<std::string>{"reply:first"});
  EXPECT_EQ(server.last_version(), 1u);
  StreamLog second;
  ASSERT_TRUE(peer.RequestStream("second", WithCredit(1000), Items(second),
                                 Done(second))
                  .ok());
  ASSERT_TRUE(RunUntil(loop, [&] { return second.done; }));
  EXPECT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(second.items, std::vector<std::string>{"reply:second"});
  // A version 1 connection reports no credit to the server.
  EXPECT_EQ(server.credits_requested(), (std::vector<uint64_t>{0, 0}));
  EXPECT_EQ(server.connections_accepted(), 1);
}

// ---- Up front ----

TEST(PeerStream, ZeroCreditFailsInvalidArgumentUpFront) {
  UvLoop loop(UvLoopOptions{.seed = 34});
  StreamServer server(loop, {.items = NumberedItems(1)});
  AlwaysLog always;
  Peer peer(loop, server.address(), FastOptions(always));
  StreamLog log;
  absl::StatusOr<PeerRequestId> id =
      peer.RequestStream("scan", WithCredit(0), Items(log), Done(log));
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument)
      << id.status();
  EXPECT_TRUE(log.done_destroyed);  // dropped, never called
  RunFor(loop, absl::Milliseconds(100));
  EXPECT_FALSE(log.done);
  EXPECT_TRUE(log.items.empty());
  EXPECT_EQ(peer.stats().requests, 0u);
  EXPECT_EQ(peer.pending_requests(), 0u);
  EXPECT_EQ(server.requests_seen(), 0);
}

}  // namespace
}  // namespace moonpool::driver
