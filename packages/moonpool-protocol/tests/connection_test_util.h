// A client and a server Connection joined back to back in memory, with a
// manual clock (the h11 ConnectionPair idea), and owned copies of events so
// that tests can keep them past the connection's next call.
#ifndef MOONPOOL_PROTOCOL_TESTS_CONNECTION_TEST_UTIL_H_
#define MOONPOOL_PROTOCOL_TESTS_CONNECTION_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/protocol/connection.h"
#include "moonpool/protocol/connection_event.h"

namespace moonpool::protocol::testing {

// An event with its views copied.
struct Recorded {
  enum Kind {
    kHandshakeDone,
    kRequestReceived,
    kOneWayReceived,
    kReplyReceived,
    kRequestFailed,
    kGoodbyeReceived,
    kClosed,
    kCancelReceived,
    kStreamItemReceived,
    kCreditReceived,
  };
  Kind kind;
  CorrelationId id;     // request, reply, failure; goodbye's last id
  absl::Status status;  // reply (handler's), failure, closed
  std::string payload;  // request, one-way, reply; goodbye's reason; peer name
  absl::Time deadline;  // request
  Endpoint endpoint;    // request, one-way
  Delivery delivery = Delivery::kNotSent;
  bool idempotent = false;
  uint32_t version = 0;  // handshake
  // Request: its stream credit; reply: whether it was a streamEnd; credit:
  // the bytes granted.
  uint64_t stream_credit = 0;
  bool stream_end = false;
  uint64_t credit_bytes = 0;
  // Request: the peer asked for exactly-once and said what is settled;
  // failure: the request went out with the exactly-once flag.
  bool exactly_once = false;
  CorrelationId answered_below;
};

Recorded Record(const Event& e);
const char* KindName(Recorded::Kind kind);

// Drains every event of `c`.
std::vector<Recorded> Drain(Connection& c);

// The events of `kind` in `events`.
std::vector<Recorded> OfKind(const std::vector<Recorded>& events,
                             Recorded::Kind kind);

// Moves all of `from`'s pending output into `to`.
void Transfer(Connection& from, Connection& to, absl::Time now);

inline const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

ConnectionOptions ClientOptions();
ConnectionOptions ServerOptions();
// `o` speaking protocol versions [min, max].
ConnectionOptions WithVersions(ConnectionOptions o, uint32_t min, uint32_t max);

struct ConnectionPair {
  absl::Time now = kStart;
  Connection client;
  Connection server;
  std::vector<Recorded> client_events;
  std::vector<Recorded> server_events;

  ConnectionPair(ConnectionOptions client_options = ClientOptions(),
                 ConnectionOptions server_options = ServerOptions())
      : client(std::move(client_options), kStart),
        server(std::move(server_options), kStart) {}

  // Moves bytes both ways until neither side has output, recording events.
  void Pump();
  // Handshake, and clears the recorded events.
  void Open();
  void Advance(absl::Duration d);
};

}  // namespace moonpool::protocol::testing

#endif  // MOONPOOL_PROTOCOL_TESTS_CONNECTION_TEST_UTIL_H_
