#include "connection_test_util.h"

#include <type_traits>
#include <utility>
#include <variant>

#include "gtest/gtest.h"

namespace moonpool::protocol::testing {

Recorded Record(const Event& e) {
  Recorded r{};
  std::visit(
      [&](const auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, HandshakeDone>) {
          r.kind = Recorded::kHandshakeDone;
          r.payload = std::string(ev.peer.peer_name);
          r.version = ev.version;
        } else if constexpr (std::is_same_v<T, RequestReceived>) {
          r.kind = Recorded::kRequestReceived;
          r.id = ev.request.correlation_id;
          r.payload = std::string(ev.request.payload);
          r.deadline = ev.deadline;
          r.endpoint = ev.request.endpoint;
          r.stream_credit = ev.stream_credit;
          r.exactly_once = ev.exactly_once;
          r.answered_below = ev.answered_below;
        } else if constexpr (std::is_same_v<T, OneWayReceived>) {
          r.kind = Recorded::kOneWayReceived;
          r.payload = std::string(ev.message.payload);
          r.endpoint = ev.message.endpoint;
        } else if constexpr (std::is_same_v<T, ReplyReceived>) {
          r.kind = Recorded::kReplyReceived;
          r.id = ev.id;
          r.status = ev.status;
          r.payload = std::string(ev.payload);
          r.stream_end = ev.stream_end;
        } else if constexpr (std::is_same_v<T, RequestFailed>) {
          r.kind = Recorded::kRequestFailed;
          r.id = ev.id;
          r.status = ev.status;
          r.delivery = ev.delivery;
          r.idempotent = ev.idempotent;
          r.exactly_once = ev.exactly_once;
        } else if constexpr (std::is_same_v<T, GoodbyeReceived>) {
          r.kind = Recorded::kGoodbyeReceived;
          r.id = ev.last_correlation_id;
          r.payload = std::string(ev.reason);
        } else if constexpr (std::is_same_v<T, CancelReceived>) {
          r.kind = Recorded::kCancelReceived;
          r.id = ev.id;
        } else if constexpr (std::is_same_v<T, StreamItemReceived>) {
          r.kind = Recorded::kStreamItemReceived;
          r.id = ev.id;
          r.payload = std::string(ev.payload);
        } else if constexpr (std::is_same_v<T, CreditReceived>) {
          r.kind = Recorded::kCreditReceived;
          r.id = ev.id;
          r.credit_bytes = ev.bytes;
        } else {
          static_assert(std::is_same_v<T, Closed>);
          r.kind = Recorded::kClosed;
          r.status = ev.status;
        }
      },
      e);
  return r;
}

const char* KindName(Recorded::Kind kind) {
  static const char* const kNames[] = {
      "HandshakeDone", "RequestReceived", "OneWayReceived",
      "ReplyReceived", "RequestFailed",   "GoodbyeReceived",
      "Closed",        "CancelReceived",  "StreamItemReceived",
      "CreditReceived"};
  return kNames[kind];
}

std::vector<Recorded> Drain(Connection& c) {
  std::vector<Recorded> out;
  while (std::optional<Event> e = c.NextEvent()) out.push_back(Record(*e));
  return out;
}

std::vector<Recorded> OfKind(const std::vector<Recorded>& events,
                             Recorded::Kind kind) {
  std::vector<Recorded> out;
  for (const Recorded& r : events) {
    if (r.kind == kind) out.push_back(r);
  }
  return out;
}

void Transfer(Connection& from, Connection& to, absl::Time now) {
  absl::Span<const char> bytes = from.PendingOutput();
  if (bytes.empty()) return;
  to.Receive(bytes, now);
  from.ConsumeOutput(bytes.size());
}

ConnectionOptions ClientOptions() {
  ConnectionOptions o;
  o.role = Role::kClient;
  o.peer_name = "test-client";
  o.incarnation = 11;
  return o;
}

ConnectionOptions ServerOptions() {
  ConnectionOptions o;
  o.role = Role::kServer;
  o.peer_name = "test-server";
  o.incarnation = 22;
  return o;
}

ConnectionOptions WithVersions(ConnectionOptions o, uint32_t min,
                               uint32_t max) {
  o.min_protocol_version = min;
  o.max_protocol_version = max;
  return o;
}

void ConnectionPair::Pump() {
  for (int rounds = 0; rounds < 100; ++rounds) {
    const bool moved =
        !client.PendingOutput().empty() || !server.PendingOutput().empty();
    Transfer(client, server, now);
    for (Recorded& r : Drain(server)) server_events.push_back(std::move(r));
    Transfer(server, client, now);
    for (Recorded& r : Drain(client)) client_events.push_back(std::move(r));
    if (!moved) return;
  }
  ADD_FAILURE() << "Pump did not settle";
}

void ConnectionPair::Open() {
  Pump();
  ASSERT_EQ(client.state(), ConnectionState::kOpen);
  ASSERT_EQ(server.state(), ConnectionState::kOpen);
  client_events.clear();
  server_events.clear();
}

void ConnectionPair::Advance(absl::Duration d) {
  now += d;
  client.AdvanceTime(now);
  server.AdvanceTime(now);
  for (Recorded& r : Drain(client)) client_events.push_back(std::move(r));
  for (Recorded& r : Drain(server)) server_events.push_back(std::move(r));
}

}  // namespace moonpool::protocol::testing
