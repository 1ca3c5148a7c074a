// A small protocol server for the Peer tests, on a real Loop: accepts
// connections and runs a server-role protocol::Connection on each, with a
// behaviour chosen per test (echo, stall, close mid-request, wrong version).
#ifndef MOONPOOL_DRIVER_TESTS_TEST_SERVER_H_
#define MOONPOOL_DRIVER_TESTS_TEST_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moonpool/driver/address.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/stream.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::driver::testing {

class TestServer {
 public:
  enum class Mode {
    kEcho,            // replies with the request's payload
    kCloseOnRequest,  // closes the connection when a request arrives
    kStall,           // after the handshake, stops reading and writing
    kWrongVersion,    // answers every Hello with a version 2 Hello, closes
    kHold,            // reads requests and never answers them
  };

  TestServer(Loop& loop, Mode mode, Address address = Address::Loopback(0));
  ~TestServer();

  const Address& address() const { return address_; }
  void set_mode(Mode mode) { mode_ = mode; }
  // Closes the listener and every connection (abruptly).
  void Stop();

  int connections_accepted() const { return accepted_; }
  int requests_seen() const { return requests_seen_; }
  // CancelReceived events (version 2 `cancel` frames for a request held).
  int cancels_received() const { return cancels_received_; }
  // The protocol version of the last connection's handshake (0: none).
  uint32_t last_version() const { return last_version_; }
  const std::vector<std::string>& payloads_seen() const { return payloads_; }

 private:
  class ServerConnection;
  void OnAccept(std::unique_ptr<Stream> stream);

  Loop& loop_;
  Mode mode_;
  Address address_;
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<ServerConnection>> connections_;
  int accepted_ = 0;
  int requests_seen_ = 0;
  int cancels_received_ = 0;
  uint32_t last_version_ = 0;
  std::vector<std::string> payloads_;
};

}  // namespace moonpool::driver::testing

#endif  // MOONPOOL_DRIVER_TESTS_TEST_SERVER_H_
