// Every command in every state, as one table.
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "connection_test_util.h"
#include "gtest/gtest.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::protocol::testing {
namespace {

using Code = absl::StatusCode;

// Brings the client of a fresh pair to `state`.
std::unique_ptr<ConnectionPair> ClientIn(ConnectionState state) {
  auto p = std::make_unique<ConnectionPair>();
  switch (state) {
    case ConnectionState::kHandshaking:
      break;
    case ConnectionState::kOpen:
      p->Open();
      break;
    case ConnectionState::kClosing:
      p->Open();
      EXPECT_TRUE(p->client.SendGoodbye("x").ok());
      break;
    case ConnectionState::kClosed:
      p->Open();
      p->client.OnTransportClosed(absl::UnavailableError("reset"), p->now);
      Drain(p->client);
      break;
  }
  EXPECT_EQ(p->client.state(), state);
  return p;
}

struct Row {
  ConnectionState state;
  Code request, one_way, goodbye, reply_unknown;
  bool wants_close;
};

TEST(ConnectionStateTable, CommandsByState) {
  // clang-format off
  const Row rows[] = {
      // state                       request           one-way          goodbye          reply to #99      wants close
      {ConnectionState::kHandshaking, Code::kOk, Code::kOk, Code::kOk, Code::kNotFound, false},
      {ConnectionState::kOpen, Code::kOk, Code::kOk, Code::kOk, Code::kNotFound, false},
      {ConnectionState::kClosing, Code::kFailedPrecondition, Code::kOk, Code::kOk, Code::kNotFound, true},
      {ConnectionState::kClosed, Code::kFailedPrecondition, Code::kFailedPrecondition,
       Code::kFailedPrecondition, Code::kFailedPrecondition, true},
  };
  // clang-format on
  for (const Row& row : rows) {
    SCOPED_TRACE(ConnectionStateName(row.state));
    auto make = [&] { return ClientIn(row.state); };
    EXPECT_EQ(make()->client.SendRequest("x", {}, kStart).status().code(),
              row.request);
    EXPECT_EQ(make()->client.SendOneWay(kDefaultEndpoint, "x").code(),
              row.one_way);
    EXPECT_EQ(make()->client.SendGoodbye("x").code(), row.goodbye);
    EXPECT_EQ(make()->client.SendReply(CorrelationId(99), "x").code(),
              row.reply_unknown);
    EXPECT_EQ(make()->client.WantsClose(), row.wants_close);
  }
}

struct Transition {
  const char* name;
  std::function<void(ConnectionPair&)> input;
  ConnectionState client_after;
};

TEST(ConnectionStateTable, Transitions) {
  const Transition transitions[] = {
      {"server Hello opens", [](ConnectionPair& p) { p.Pump(); },
       ConnectionState::kOpen},
      {"transport error in handshake closes",
       [](ConnectionPair& p) {
         p.client.OnTransportClosed(absl::UnavailableError("refused"), p.now);
         Drain(p.client);
       },
       ConnectionState::kClosed},
      {"keepalive timeout in handshake closes",
       [](ConnectionPair& p) {
         p.client.AdvanceTime(p.now + absl::Seconds(4));
       },
       ConnectionState::kClosed},
      {"goodbye received closes gracefully",
       [](ConnectionPair& p) {
         p.Open();
         ASSERT_TRUE(p.server.SendGoodbye("x").ok());
         p.Pump();
       },
       ConnectionState::kClosing},
      {"goodbye sent",
       [](ConnectionPair& p) {
         p.Open();
         ASSERT_TRUE(p.client.SendGoodbye("x").ok());
       },
       ConnectionState::kClosing},
      {"closing then end of stream is closed",
       [](ConnectionPair& p) {
         p.Open();
         ASSERT_TRUE(p.client.SendGoodbye("x").ok());
         p.Pump();
         p.client.OnTransportClosed(absl::OkStatus(), p.now);
         Drain(p.client);
       },
       ConnectionState::kClosed},
      {"corrupt bytes when open close",
       [](ConnectionPair& p) {
         p.Open();
         p.client.Receive(std::string(16, '\x7f'), p.now);
         Drain(p.client);
       },
       ConnectionState::kClosed},
  };
  for (const Transition& t : transitions) {
    SCOPED_TRACE(t.name);
    ConnectionPair p;
    t.input(p);
    EXPECT_EQ(p.client.state(), t.client_after)
        << ConnectionStateName(p.client.state());
  }
}

}  // namespace
}  // namespace moonpool::protocol::testing
