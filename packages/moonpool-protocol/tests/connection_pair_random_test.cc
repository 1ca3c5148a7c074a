// A client and a server Connection back to back in memory, driven by a seed:
// random byte splits and partial writes, random delays, random interleavings
// of requests, replies, error replies, cancels, goodbyes and resets, between
// sides speaking any mix of protocol version ranges. Properties, for every
// seed: every request sent has exactly one outcome unless the client
// cancelled it, and a cancelled one has none after its cancel; no reply
// reaches the wrong request, every request the server sees is the one that
// was sent under its id, a request failed as safe to retry (not sent, not
// processed) never reached the server, and each side ends with exactly one
// Closed, last. Both sides agree on the version the ranges give, or both
// fail the handshake when the ranges do not meet; the server hears a cancel
// (CancelReceived) only on a version 2 connection, only for a request the
// client cancelled and the server has not answered, and at most once.
// Reply streams (version 2): the client asks for some replies as streams
// with random credit and grants bytes back as it takes items; the server
// writes items only while StreamWritable and ends streams with streamEnd, an
// error or a plain reply. The client's items for a stream are the server's,
// in order, none lost or duplicated (all of them once it ended OK), each
// arriving within the credit (the Always point "protocol.stream_within_
// credit" holds on both sides), none after a cancel; and when a hand-made
// frame sends past the credit, the client closes with ResourceExhausted.
// The same properties hold with every Buggify site of the protocol firing on
// every evaluation, and with them firing at random (buggify.h): a site only
// picks among legal paths.
//
// Reproduce one seed: MOONPOOL_SEED=<seed> moonpool_protocol_test
//   --gtest_filter='ConnectionPairRandom.<test>'
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/always.h"
#include "moonpool/protocol/buggify.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::protocol::testing {
namespace {

// Bytes written by one side and not yet read by the other.
struct Link {
  std::string bytes;

  void TakeFrom(Connection& c, size_t max) {
    absl::Span<const char> out = c.PendingOutput();
    const size_t n = std::min(out.size(), max);
    bytes.append(out.data(), n);
    c.ConsumeOutput(n);
  }
  // Straight into the connection's buffer, as a driver does: as many reads
  // as the spans it offers take.
  void DeliverTo(Connection& c, size_t max, absl::Time now) {
    const size_t n = std::min(bytes.size(), max);
    size_t done = 0;
    while (done < n) {
      absl::Span<char> room = c.PrepareReceive(n - done);
      ASSERT_FALSE(room.empty());
      const size_t k = std::min(room.size(), n - done);
      std::memcpy(room.data(), bytes.data() + done, k);
      c.CommitReceive(k, now);
      done += k;
    }
    bytes.erase(0, n);
  }
};

// How often each kind of outcome happened across all seeds: the sweep must
// reach every one, or it tests less than it claims.
struct Coverage {
  int replies = 0, error_replies = 0, deadline_exceeded = 0, not_sent = 0,
      maybe_delivered = 0, not_processed = 0, graceful_closes = 0, resets = 0,
      pings = 0;
  // Cancellation: CancelRequest calls, cancels the server acted on, and
  // cancels that arrived too late (crossed the reply, or the request was
  // abandoned); runs by negotiated version (0: the ranges did not meet).
  int cancels = 0, cancels_received = 0, cancels_ignored = 0;
  // Runs whose client closed refusing the server's versions.
  int refused = 0;
  // Reply streams: items the client received, streams ended by streamEnd,
  // by an error reply and by a plain reply, credit frames the server
  // applied, cancelled streams whose items crossed the cancel (sent by the
  // server and never delivered), and clients closed for a hand-made item
  // past the credit.
  int stream_items = 0, stream_ends = 0, stream_errors = 0,
      stream_plain_replies = 0, credits = 0, cancels_crossing_items = 0,
      credit_overruns = 0;
  int runs_by_version[3] = {0, 0, 0};
  // Buggify evaluations and firings, by index in kBuggifySites; and any
  // site asked that the list lacks.
  std::vector<uint64_t> evaluated =
      std::vector<uint64_t>(std::size(kBuggifySites));
  std::vector<uint64_t> fired = std::vector<uint64_t>(std::size(kBuggifySites));
  std::set<std::string> unlisted;
};

enum class BuggifyMode { kOff, kAlways, kRandom };

// The decision function of one side: counts into `coverage`.
BuggifyFn MakeBuggify(BuggifyMode mode, uint64_t seed, Coverage& coverage) {
  if (mode == BuggifyMode::kOff) return nullptr;
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [mode, rng, &coverage](absl::string_view site) {
    const bool fire = mode == BuggifyMode::kAlways || (*rng)() % 2 == 0;
    const auto* it =
        std::find(std::begin(kBuggifySites), std::end(kBuggifySites), site);
    if (it == std::end(kBuggifySites)) {
      coverage.unlisted.insert(std::string(site));
      return fire;
    }
    const size_t i = static_cast<size_t>(it - std::begin(kBuggifySites));
    ++coverage.evaluated[i];
    coverage.fired[i] += fire;
    return fire;
  };
}

ConnectionOptions WithBuggify(ConnectionOptions o, BuggifyFn fn) {
  o.buggify = std::move(fn);
  return o;
}

// Counts into `broken` every time an Always point did not hold.
ConnectionOptions WithAlways(ConnectionOptions o, uint64_t& broken) {
  o.always = [&broken](bool held, absl::string_view name, absl::string_view) {
    EXPECT_EQ(name, always_points::kStreamWithinCredit);
    broken += held ? 0 : 1;
  };
  return o;
}

// Stream credits the client asks for: below, at and above item sizes.
constexpr uint64_t kStreamCredits[] = {1, 16, 64, 300, 4096};

// The protocol versions of each side: [min, max].
struct VersionMix {
  uint32_t client_min, client_max, server_min, server_max;

  // The version negotiation gives (DESIGN.md section 5), 0 if none.
  uint32_t Expected() const {
    // A version 1 server reads only protocolVersion (the client's min).
    const uint32_t client_top = server_max == 1 ? client_min : client_max;
    const uint32_t v = std::min(server_max, client_top);
    if (v < server_min || v < client_min) return 0;
    return v >= client_min && v <= client_max ? v : 0;
  }
};

// Every pair of the ranges a side may speak: 1..1, 1..2, 2..2.
std::vector<VersionMix> AllMixes() {
  const std::pair<uint32_t, uint32_t> ranges[] = {{1, 1}, {1, 2}, {2, 2}};
  std::vector<VersionMix> mixes;
  for (auto [cmin, cmax] : ranges) {
    for (auto [smin, smax] : ranges) mixes.push_back({cmin, cmax, smin, smax});
  }
  return mixes;
}

class RandomRun {
 public:
  RandomRun(uint64_t seed, Coverage& coverage, BuggifyMode buggify,
            VersionMix mix)
      : coverage_(coverage),
        seed_(seed),
        mix_(mix),
        rng_(seed),
        client_(
            WithAlways(WithBuggify(WithVersions(ClientOptions(), mix.client_min,
                                                mix.client_max),
                                   MakeBuggify(buggify, ~seed, coverage)),
                       client_always_broken_),
            now_),
        server_(
            WithAlways(WithBuggify(WithVersions(ServerOptions(), mix.server_min,
                                                mix.server_max),
                                   MakeBuggify(buggify, seed * 3, coverage)),
                       server_always_broken_),
            now_) {}

  void Go() {
    const int steps = 100 + static_cast<int>(rng_() % 400);
    for (int i = 0; i < steps && !closed_; ++i) Step();
    Quiet();
    Check();
  }

 private:
  // Reply streams. The client's (credit sent with the request): items
  // received, bytes not granted back, and whether forged items were sent
  // for it. The server's (credit received), while it writes them: bytes
  // sent minus those granted back; and every item it sent, by id.
  struct ClientStream {
    uint64_t credit = 0;
    uint64_t outstanding = 0;
    std::vector<std::string> items;
    bool forged = false;
  };
  struct ServerStream {
    uint64_t credit = 0;
    uint64_t outstanding = 0;
  };

  size_t Random(size_t n) { return rng_() % n; }
  bool Chance(double p) {
    return std::uniform_real_distribution<double>(0, 1)(rng_) < p;
  }
  size_t Piece() {
    // Mostly small, sometimes everything.
    return Chance(0.2) ? SIZE_MAX : 1 + Random(Chance(0.5) ? 16 : 400);
  }

  void Step() {
    switch (Random(13)) {
      case 0:
      case 1:
      case 2:
        SendRequest();
        break;
      case 3:
      case 4:
        Answer();
        break;
      case 5:
        c2s_.TakeFrom(client_, Piece());
        break;
      case 6:
        s2c_.TakeFrom(server_, Piece());
        break;
      case 7:
      case 8:
        c2s_.DeliverTo(server_, Piece(), now_);
        DrainServer();
        break;
      case 9:
      case 10:
        s2c_.DeliverTo(client_, Piece(), now_);
        DrainClient();
        GrantCredit();
        break;
      case 11:
        if (Chance(0.5)) {
          Cancel();
        } else if (Chance(0.03)) {
          ForgeItemsPastCredit();
        }
        break;
      default:
        if (Chance(0.3)) {
          // To the earliest wakeup either side asks for, as a driver would.
          const absl::Time wake =
              std::min(client_.NextWakeup(), server_.NextWakeup());
          if (wake != absl::InfiniteFuture()) now_ = std::max(now_, wake);
        } else {
          now_ += absl::Milliseconds(Random(Chance(0.1) ? 3000 : 300));
        }
        client_.AdvanceTime(now_);
        server_.AdvanceTime(now_);
        DrainClient();
        DrainServer();
        if (Chance(0.02)) {
          (void)(Chance(0.5) ? server_.SendGoodbye("random goodbye")
                             : client_.SendGoodbye("random goodbye"));
        }
        if (Chance(0.01)) Reset();
    }
  }

  void SendRequest() {
    RequestOptions options;
    options.deadline = now_ + absl::Milliseconds(1 + Random(3000));
    options.idempotent = Chance(0.5);
    // A reply stream, from a client that speaks version 2 (one that speaks
    // only version 1 does not know them).
    if (mix_.client_max == 2 && Chance(0.35)) {
      options.stream_credit = kStreamCredits[Random(std::size(kStreamCredits))];
    }
    const std::string payload =
        absl::StrCat("req:", seed_, ":", ++request_counter_, ":",
                     std::string(Random(64), 'p'));
    // The credit travels on a version 2 connection and before the
    // handshake (a version 1 server ignores it).
    const bool credit_sent = client_.state() == ConnectionState::kHandshaking ||
                             client_.version() == 2;
    absl::StatusOr<CorrelationId> id =
        client_.SendRequest(payload, options, now_);
    if (id.ok()) {
      ASSERT_EQ(sent_.count(id->value()), 0u) << "id reused: " << *id;
      sent_[id->value()] = payload;
      if (credit_sent && options.stream_credit > 0) {
        client_streams_[id->value()].credit = options.stream_credit;
      }
    }
  }

  // The client's application takes items: some streams grant back some of
  // what they received (never a forged one, so that it overruns).
  void GrantCredit() {
    for (auto& [id, stream] : client_streams_) {
      if (stream.outstanding == 0 || stream.forged || outcomes_[id] != 0 ||
          cancelled_.count(id) != 0 || !Chance(0.5)) {
        continue;
      }
      if (Chance(0.05)) {
        EXPECT_EQ(client_.GrantCredit(CorrelationId(id), stream.outstanding + 1)
                      .code(),
                  absl::StatusCode::kInvalidArgument);
      }
      const uint64_t bytes =
          Chance(0.5) ? stream.outstanding : 1 + Random(stream.outstanding);
      const absl::Status s = client_.GrantCredit(CorrelationId(id), bytes);
      ASSERT_TRUE(s.ok()) << "grant to pending stream #" << id << ": " << s;
      stream.outstanding -= bytes;
    }
  }

  // A broken server: two hand-made items of a pending stream, each as large
  // as its credit, written behind everything the server wrote (at a frame
  // boundary). The second one arrives past the credit (the client grants
  // nothing back to a forged stream, nor cancels it) unless the stream ends
  // first (deadline, connection loss).
  void ForgeItemsPastCredit() {
    if (server_closed_ || server_.state() == ConnectionState::kClosed ||
        client_.version() != 2) {
      return;
    }
    for (auto& [id, stream] : client_streams_) {
      if (stream.forged || outcomes_[id] != 0 || cancelled_.count(id) != 0) {
        continue;
      }
      stream.forged = true;
      s2c_.TakeFrom(server_, SIZE_MAX);
      const std::string forged(stream.credit, 'f');
      wire::FrameEncoder encoder;
      wire::ByteBuffer out;
      for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(encoder
                        .Encode(EnvelopeView{CorrelationId(id),
                                             EnvelopeKind::kStreamItem,
                                             kDefaultEndpoint,
                                             forged,
                                             absl::ZeroDuration(),
                                             absl::StatusCode::kOk,
                                             {}},
                                out)
                        .ok());
      }
      s2c_.bytes.append(out.Readable().data(), out.size());
      return;
    }
  }

  // The client gives up on a request that has had no outcome yet: one that
  // is pending, so the connection must know it.
  void Cancel() {
    std::vector<uint64_t> pending;
    for (const auto& [id, payload] : sent_) {
      auto stream = client_streams_.find(id);
      if (stream != client_streams_.end() && stream->second.forged) continue;
      if (outcomes_[id] == 0 && cancelled_.count(id) == 0)
        pending.push_back(id);
    }
    if (pending.empty()) return;
    const uint64_t id = pending[Random(pending.size())];
    absl::Status s = client_.CancelRequest(CorrelationId(id));
    ASSERT_TRUE(s.ok()) << "cancel of pending request #" << id << ": " << s;
    cancelled_.insert(id);
    ++coverage_.cancels;
  }

  void Answer() {
    if (awaiting_.empty()) return;
    const size_t i = Random(awaiting_.size());
    const auto [id, payload] = awaiting_[i];
    if (auto stream = server_streams_.find(id.value());
        stream != server_streams_.end()) {
      AnswerStream(i, stream->second);
      return;
    }
    absl::Status s =
        Chance(0.2)
            ? server_.SendErrorReply(id, absl::NotFoundError("err:" + payload))
            : server_.SendReply(id, "rep:" + payload);
    if (s.code() == absl::StatusCode::kResourceExhausted) return;  // later
    awaiting_.erase(awaiting_.begin() + i);
  }

  // One step of the server's answer to stream request awaiting_[i]: an
  // item (only while StreamWritable, which the server's own count of credit
  // predicts exactly), or the end: streamEnd, an error, or a plain reply (a
  // last item and the end).
  void AnswerStream(size_t i, ServerStream& stream) {
    const auto [id, payload] = awaiting_[i];
    const size_t what = Random(10);
    absl::Status s;
    if (what < 6) {
      const bool writable = stream.outstanding < stream.credit;
      ASSERT_EQ(server_.StreamWritable(id), writable && !server_closed_)
          << "stream #" << id << ": " << stream.outstanding
          << " bytes outstanding, credit " << stream.credit;
      std::vector<std::string>& items = server_items_[id.value()];
      const std::string item =
          absl::StrCat("item:", id.value(), ":", items.size(), ":",
                       std::string(Random(100), 'i'));
      s = server_.SendStreamItem(id, item);
      if (!writable && !server_closed_) {
        ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
      }
      if (s.ok()) {
        items.push_back(item);
        stream.outstanding += item.size();
      }
      return;  // the stream goes on
    }
    if (what < 8) {
      s = server_.SendStreamEnd(id);
    } else if (what < 9) {
      s = server_.SendErrorReply(id, absl::NotFoundError("err:" + payload));
    } else {
      s = server_.SendReply(id, "rep:" + payload);
    }
    if (s.code() == absl::StatusCode::kResourceExhausted) return;  // later
    awaiting_.erase(awaiting_.begin() + i);
    server_streams_.erase(id.value());
  }

  void Reset() {
    ++coverage_.resets;
    client_.OnTransportClosed(absl::UnavailableError("reset"), now_);
    server_.OnTransportClosed(absl::UnavailableError("reset"), now_);
    DrainClient();
    DrainServer();
  }

  void DrainServer() {
    for (Recorded& r : Drain(server_)) {
      ASSERT_FALSE(server_closed_)
          << "event after Closed: " << KindName(r.kind);
      if (r.kind == Recorded::kRequestReceived) {
        ASSERT_EQ(sent_.count(r.id.value()), 1u)
            << "server received a request never sent: " << r.id;
        ASSERT_EQ(r.payload, sent_[r.id.value()])
            << "server received the wrong payload for " << r.id;
        awaiting_.push_back({r.id, r.payload});
        processed_.insert(r.id.value());
        // The credit the client asked for, read on version 2 only.
        auto asked = client_streams_.find(r.id.value());
        const uint64_t credit =
            asked == client_streams_.end() ? 0 : asked->second.credit;
        ASSERT_EQ(r.stream_credit, server_.version() == 2 ? credit : 0)
            << "stream credit of " << r.id;
        if (r.stream_credit > 0) {
          server_streams_[r.id.value()].credit = r.stream_credit;
        }
      } else if (r.kind == Recorded::kCancelReceived) {
        ASSERT_EQ(server_.version(), 2u) << "cancel received on a version "
                                         << server_.version() << " connection";
        ASSERT_EQ(cancelled_.count(r.id.value()), 1u)
            << "server heard a cancel the client never made: " << r.id;
        ASSERT_TRUE(cancels_heard_.insert(r.id.value()).second)
            << "second CancelReceived for " << r.id;
        auto it = std::find_if(awaiting_.begin(), awaiting_.end(),
                               [&](const auto& a) { return a.first == r.id; });
        ASSERT_NE(it, awaiting_.end())
            << "CancelReceived for a request not awaiting an answer: " << r.id;
        // The application stops the work: abandons it, or answers anyway
        // (the client drops the answer).
        if (Chance(0.5)) {
          ASSERT_TRUE(server_.AbandonRequest(r.id).ok());
          awaiting_.erase(it);
          server_streams_.erase(r.id.value());
        }
      } else if (r.kind == Recorded::kCreditReceived) {
        // Only for a stream the server still writes, and never more than
        // it sent and was not granted back.
        auto stream = server_streams_.find(r.id.value());
        ASSERT_NE(stream, server_streams_.end())
            << "credit for a stream not being written: " << r.id;
        ASSERT_LE(r.credit_bytes, stream->second.outstanding) << r.id;
        stream->second.outstanding -= r.credit_bytes;
        ++coverage_.credits;
      } else if (r.kind == Recorded::kHandshakeDone) {
        ASSERT_EQ(r.version, mix_.Expected()) << "server's version";
      } else if (r.kind == Recorded::kClosed) {
        server_closed_ = true;
      }
    }
  }

  // An item of the client's stream `r.id`: only while it is pending and
  // not cancelled, within the credit, and the next of the server's items.
  void OnStreamItem(const Recorded& r) {
    ASSERT_EQ(client_.version(), 2u) << "stream item on version 1";
    ASSERT_EQ(sent_.count(r.id.value()), 1u) << "item of a request never sent";
    ASSERT_EQ(cancelled_.count(r.id.value()), 0u)
        << "item of a stream the client cancelled: " << r.id;
    ASSERT_EQ(outcomes_[r.id.value()], 0) << "item after the end: " << r.id;
    auto it = client_streams_.find(r.id.value());
    ASSERT_NE(it, client_streams_.end()) << "item of a unary request";
    ClientStream& stream = it->second;
    ASSERT_LT(stream.outstanding, stream.credit)
        << "item of stream #" << r.id << " past its credit";
    stream.outstanding += r.payload.size();
    stream.items.push_back(r.payload);
    ++coverage_.stream_items;
    if (stream.forged) return;
    const std::vector<std::string>& sent = server_items_[r.id.value()];
    const size_t n = stream.items.size();
    ASSERT_LE(n, sent.size()) << "more items than the server sent: " << r.id;
    ASSERT_EQ(stream.items.back(), sent[n - 1])
        << "item " << n - 1 << " of stream #" << r.id << " out of order";
  }

  void DrainClient() {
    for (Recorded& r : Drain(client_)) {
      ASSERT_FALSE(client_closed_)
          << "event after Closed: " << KindName(r.kind);
      if (r.kind == Recorded::kStreamItemReceived) {
        OnStreamItem(r);
        continue;
      }
      if (r.kind == Recorded::kReplyReceived ||
          r.kind == Recorded::kRequestFailed) {
        ASSERT_EQ(sent_.count(r.id.value()), 1u)
            << "outcome for a request never sent: " << r.id;
        ASSERT_EQ(cancelled_.count(r.id.value()), 0u)
            << "outcome for a request the client cancelled: " << r.id;
        ++outcomes_[r.id.value()];
        ASSERT_EQ(outcomes_[r.id.value()], 1) << "second outcome for " << r.id;
      }
      if (r.kind == Recorded::kReplyReceived) {
        ++(r.status.ok() ? coverage_.replies : coverage_.error_replies);
      } else if (r.kind == Recorded::kRequestFailed) {
        if (r.status.code() == absl::StatusCode::kDeadlineExceeded) {
          ++coverage_.deadline_exceeded;
        }
        if (r.delivery != Delivery::kMaybeDelivered &&
            r.status.code() != absl::StatusCode::kDeadlineExceeded) {
          // Safe to send again: so it must never reach the handler.
          said_not_processed_.insert(r.id.value());
        }
        switch (r.delivery) {
          case Delivery::kNotSent:
            ++coverage_.not_sent;
            break;
          case Delivery::kMaybeDelivered:
            ++coverage_.maybe_delivered;
            break;
          case Delivery::kNotProcessed:
            ++coverage_.not_processed;
            break;
        }
      } else if (r.kind == Recorded::kClosed && r.status.ok()) {
        ++coverage_.graceful_closes;
      }
      if (r.kind == Recorded::kReplyReceived) {
        const std::string& request = sent_[r.id.value()];
        auto stream = client_streams_.find(r.id.value());
        if (stream == client_streams_.end()) {
          ASSERT_FALSE(r.stream_end) << "streamEnd for a unary request";
        } else if (!stream->second.forged) {
          // The end of a stream comes after all of its items.
          EXPECT_EQ(stream->second.items, server_items_[r.id.value()])
              << "items of stream #" << r.id;
          ++(r.stream_end    ? coverage_.stream_ends
             : r.status.ok() ? coverage_.stream_plain_replies
                             : coverage_.stream_errors);
        }
        if (r.stream_end) {
          ASSERT_TRUE(r.status.ok());
          ASSERT_EQ(r.payload, "") << "streamEnd of " << r.id;
        } else if (r.status.ok()) {
          ASSERT_EQ(r.payload, "rep:" + request) << "wrong reply for " << r.id;
        } else {
          ASSERT_EQ(r.status, absl::NotFoundError("err:" + request))
              << "wrong error for " << r.id;
        }
      }
      if (r.kind == Recorded::kHandshakeDone) {
        ASSERT_EQ(r.version, mix_.Expected()) << "client's version";
      }
      if (r.kind == Recorded::kClosed) {
        client_closed_ = true;
        // A client closes for an item past the credit only when one was
        // forged, and then with ResourceExhausted.
        if (client_.stats().protocol_errors.credit_overruns > 0) {
          EXPECT_EQ(r.status.code(), absl::StatusCode::kResourceExhausted)
              << r.status;
          ++coverage_.credit_overruns;
        }
      }
    }
    closed_ = client_closed_ && server_closed_;
  }

  // All faults stop; every byte moves and every request is answered; then
  // the connection closes.
  void Quiet() {
    for (int round = 0; round < 50; ++round) {
      while (!awaiting_.empty()) {
        const auto [id, payload] = awaiting_.back();
        awaiting_.pop_back();
        (void)server_.SendReply(id, "rep:" + payload);
      }
      c2s_.TakeFrom(client_, SIZE_MAX);
      s2c_.TakeFrom(server_, SIZE_MAX);
      c2s_.DeliverTo(server_, SIZE_MAX, now_);
      DrainServer();
      s2c_.DeliverTo(client_, SIZE_MAX, now_);
      DrainClient();
      GrantCredit();
    }
    client_.OnTransportClosed(absl::OkStatus(), now_);
    server_.OnTransportClosed(absl::OkStatus(), now_);
    DrainClient();
    DrainServer();
  }

  void Check() {
    ASSERT_TRUE(client_closed_);
    ASSERT_TRUE(server_closed_);
    for (const auto& [id, payload] : sent_) {
      if (cancelled_.count(id) != 0) continue;  // none, checked as they came
      ASSERT_EQ(outcomes_[id], 1) << "request #" << id << " had no outcome";
    }
    // Both sides agree, or both refused the other's range.
    const uint32_t expected = mix_.Expected();
    // (A reset or a keepalive timeout may end a run before the Hellos
    // cross: version 0 then too.)
    if (expected == 0) {
      EXPECT_EQ(client_.version(), 0u);
      EXPECT_EQ(server_.version(), 0u);
      coverage_.refused += client_.close_status().code() ==
                           absl::StatusCode::kFailedPrecondition;
    } else {
      EXPECT_TRUE(client_.version() == 0 || client_.version() == expected)
          << client_.version();
      EXPECT_TRUE(server_.version() == 0 || server_.version() == expected)
          << server_.version();
    }
    if (client_.version() != 2) {
      EXPECT_EQ(client_.stats().cancels_sent, 0u);
    }
    if (server_.version() != 2) {
      EXPECT_EQ(server_.stats().cancels_received, 0u);
    }
    EXPECT_LE(
        server_.stats().cancels_received + server_.stats().cancels_ignored,
        client_.stats().cancels_sent);
    EXPECT_EQ(client_.stats().requests_cancelled, cancelled_.size());
    coverage_.cancels_received += server_.stats().cancels_received;
    coverage_.cancels_ignored += server_.stats().cancels_ignored;
    ++coverage_.runs_by_version[expected];
    for (uint64_t id : said_not_processed_) {
      ASSERT_EQ(processed_.count(id), 0u)
          << "request #" << id
          << " failed as safe to retry, yet the server received it";
    }
    EXPECT_EQ(client_.stats().requests_in_flight, 0u);
    coverage_.pings += client_.stats().pings_sent + server_.stats().pings_sent;
    // Flow control: the server never got ahead of the credit; only a forged
    // item did, once, and the Always point saw exactly that.
    bool forged = false;
    for (const auto& [id, stream] : client_streams_) {
      forged |= stream.forged;
      if (cancelled_.count(id) != 0 &&
          server_items_[id].size() > stream.items.size()) {
        ++coverage_.cancels_crossing_items;
      }
    }
    const uint64_t overruns = client_.stats().protocol_errors.credit_overruns;
    EXPECT_LE(overruns, forged ? 1u : 0u);
    EXPECT_EQ(client_always_broken_, overruns);
    EXPECT_EQ(server_always_broken_, 0u);
    EXPECT_EQ(server_.stats().protocol_errors.credit_overruns, 0u);
    if (client_.version() != 2) {
      EXPECT_EQ(client_.stats().stream_items_received, 0u);
      EXPECT_EQ(client_.stats().credits_sent, 0u);
    }
  }

  Coverage& coverage_;
  const uint64_t seed_;
  const VersionMix mix_;
  std::mt19937_64 rng_;
  absl::Time now_ = kStart;
  Connection client_;
  Connection server_;
  Link c2s_, s2c_;
  std::map<uint64_t, std::string> sent_;
  std::map<uint64_t, int> outcomes_;
  std::set<uint64_t> processed_;           // received by the server
  std::set<uint64_t> said_not_processed_;  // failed as safe to retry
  std::set<uint64_t> cancelled_;           // CancelRequest by the client
  std::set<uint64_t> cancels_heard_;       // CancelReceived by the server
  std::vector<std::pair<CorrelationId, std::string>> awaiting_;
  // Reply streams (the structs are above).
  std::map<uint64_t, ClientStream> client_streams_;
  std::map<uint64_t, ServerStream> server_streams_;
  std::map<uint64_t, std::vector<std::string>> server_items_;
  uint64_t client_always_broken_ = 0;
  uint64_t server_always_broken_ = 0;
  uint64_t request_counter_ = 0;
  bool client_closed_ = false;
  bool server_closed_ = false;
  bool closed_ = false;
};

// Runs `runs` seeds (or the one MOONPOOL_SEED names) and checks that the
// sweep reached every kind of outcome. Each seed's sides speak `mix`, or
// when it is not given, a mix of version ranges the seed picks. Returns the
// coverage.
Coverage Sweep(int runs, BuggifyMode buggify,
               std::optional<VersionMix> mix = std::nullopt) {
  const std::vector<VersionMix> mixes = AllMixes();
  uint64_t first = std::random_device{}();
  if (const char* env = std::getenv("MOONPOOL_SEED")) {
    first = std::strtoull(env, nullptr, 10);
    runs = 1;
  }
  Coverage coverage;
  for (int i = 0; i < runs; ++i) {
    const uint64_t seed = first + i;
    SCOPED_TRACE(
        absl::StrCat("seed ", seed, " (reproduce: MOONPOOL_SEED=", seed, ")"));
    RandomRun run(seed, coverage, buggify,
                  mix.value_or(mixes[seed % mixes.size()]));
    run.Go();
    if (::testing::Test::HasFailure()) return coverage;
  }
  if (runs == 1) return coverage;
  // An incompatible mix fails every request at the handshake: only the
  // version checks apply to it.
  if (mix.has_value() && mix->Expected() == 0) {
    EXPECT_GT(coverage.refused, 0);
    return coverage;
  }
  EXPECT_GT(coverage.cancels, 0);
  if (!mix.has_value() || mix->Expected() == 2) {
    EXPECT_GT(coverage.cancels_received, 0);
    EXPECT_GT(coverage.cancels_ignored, 0);
    EXPECT_GT(coverage.stream_items, 0);
    EXPECT_GT(coverage.stream_ends, 0);
    EXPECT_GT(coverage.stream_errors, 0);
    EXPECT_GT(coverage.stream_plain_replies, 0);
    EXPECT_GT(coverage.credits, 0);
    EXPECT_GT(coverage.cancels_crossing_items, 0);
    EXPECT_GT(coverage.credit_overruns, 0);
  }
  if (!mix.has_value()) {
    for (int v = 0; v <= 2; ++v) {
      EXPECT_GT(coverage.runs_by_version[v], 0) << "version " << v;
    }
  }
  EXPECT_GT(coverage.replies, 0);
  EXPECT_GT(coverage.error_replies, 0);
  EXPECT_GT(coverage.deadline_exceeded, 0);
  EXPECT_GT(coverage.not_sent, 0);
  EXPECT_GT(coverage.maybe_delivered, 0);
  EXPECT_GT(coverage.not_processed, 0);
  EXPECT_GT(coverage.graceful_closes, 0);
  EXPECT_GT(coverage.resets, 0);
  EXPECT_GT(coverage.pings, 0);
  std::cout << "coverage over " << runs << " seeds from " << first
            << ": replies " << coverage.replies << ", error replies "
            << coverage.error_replies << ", deadline exceeded "
            << coverage.deadline_exceeded << ", not sent " << coverage.not_sent
            << ", maybe delivered " << coverage.maybe_delivered
            << ", not processed " << coverage.not_processed
            << ", graceful closes " << coverage.graceful_closes << ", resets "
            << coverage.resets << ", pings " << coverage.pings << ", cancels "
            << coverage.cancels << " (received " << coverage.cancels_received
            << ", ignored " << coverage.cancels_ignored
            << "), runs by version 0/1/2 " << coverage.runs_by_version[0] << "/"
            << coverage.runs_by_version[1] << "/" << coverage.runs_by_version[2]
            << "; streams: items " << coverage.stream_items << ", ends "
            << coverage.stream_ends << ", errors " << coverage.stream_errors
            << ", plain replies " << coverage.stream_plain_replies
            << ", credits " << coverage.credits << ", cancels crossing items "
            << coverage.cancels_crossing_items << ", credit overruns "
            << coverage.credit_overruns << "\n";
  if (buggify != BuggifyMode::kOff) {
    for (size_t i = 0; i < std::size(kBuggifySites); ++i) {
      std::cout << "  buggify " << kBuggifySites[i] << ": fired "
                << coverage.fired[i] << " of " << coverage.evaluated[i] << "\n";
    }
  }
  return coverage;
}

TEST(ConnectionPairRandom, EveryRequestHasExactlyOneOutcome) {
  Sweep(3000, BuggifyMode::kOff);
}

// Every site fires every time it is asked: each rare path at once, and the
// sweep must have reached every site of the list (a site missing from
// kBuggifySites would be a hole no simulation reports).
TEST(ConnectionPairRandom, EveryRequestHasExactlyOneOutcomeWithBuggifyAlways) {
  // Fewer seeds: every read is a byte long.
  const Coverage coverage = Sweep(400, BuggifyMode::kAlways);
  if (std::getenv("MOONPOOL_SEED") != nullptr) return;
  for (size_t i = 0; i < std::size(kBuggifySites); ++i) {
    EXPECT_GT(coverage.fired[i], 0u) << kBuggifySites[i] << " never fired";
  }
  for (const std::string& site : coverage.unlisted) {
    ADD_FAILURE() << site << " is evaluated but not listed in kBuggifySites";
  }
}

// Sites fire on a coin toss: rare paths mixed with ordinary ones.
TEST(ConnectionPairRandom, EveryRequestHasExactlyOneOutcomeWithBuggifyRandom) {
  const Coverage coverage = Sweep(600, BuggifyMode::kRandom);
  if (std::getenv("MOONPOOL_SEED") != nullptr) return;
  for (size_t i = 0; i < std::size(kBuggifySites); ++i) {
    EXPECT_GT(coverage.fired[i], 0u) << kBuggifySites[i] << " never fired";
    EXPECT_LT(coverage.fired[i], coverage.evaluated[i]) << kBuggifySites[i];
  }
  EXPECT_TRUE(coverage.unlisted.empty());
}

// Each mix of version ranges on its own, so that a failure names it.
class ConnectionPairRandomVersions
    : public ::testing::TestWithParam<VersionMix> {};

TEST_P(ConnectionPairRandomVersions, EveryRequestHasExactlyOneOutcome) {
  Sweep(120, BuggifyMode::kOff, GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    AllMixes, ConnectionPairRandomVersions, ::testing::ValuesIn(AllMixes()),
    [](const ::testing::TestParamInfo<VersionMix>& param_info) {
      const VersionMix& m = param_info.param;
      return absl::StrCat("client", m.client_min, "to", m.client_max, "_server",
                          m.server_min, "to", m.server_max);
    });

}  // namespace
}  // namespace moonpool::protocol::testing
