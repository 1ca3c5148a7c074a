// Helpers for the transport tests: run tasks on a real UvLoop, store their
// results, and a small echo handler. Every test declares, in this order, the
// loop, then the transports, then the TaskScope: so tasks go first, the
// transports next, and the loop closes clean last.
#ifndef MOONPOOL_TRANSPORT_TESTS_TRANSPORT_TEST_UTIL_H_
#define MOONPOOL_TRANSPORT_TESTS_TRANSPORT_TEST_UTIL_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::transport::testing {

// The driver's names every transport test uses. The tests are written in
// this namespace, so these and the helpers below need no using-declarations
// of their own.
using driver::Task;
using driver::TaskScope;
using driver::UvLoop;
using driver::UvLoopOptions;

inline absl::AnyInvocable<void(absl::Status)> FailOnError() {
  return [](absl::Status s) { ADD_FAILURE() << "task failed: " << s; };
}

template <typename T>
driver::Task<void> Store(driver::Task<T> task, std::optional<T>* out) {
  out->emplace(co_await std::move(task));
}

// Answers every request with its own payload; counts what it handled.
inline driver::Task<void> Echo(ServerTransport& server, int* handled) {
  while (std::optional<IncomingMessage> m = co_await server.NextMessage()) {
    if (m->is_request()) {
      EXPECT_TRUE(server.Reply(*m, m->envelope.payload).ok());
    }
    ++*handled;
  }
}

// Fast keepalive and backoff, so failure paths take milliseconds.
inline ClientOptions FastClient() {
  ClientOptions o;
  o.peer.connection.keepalive_interval = absl::Milliseconds(200);
  o.peer.connection.keepalive_timeout = absl::Seconds(2);
  o.peer.connection.default_request_timeout = absl::Seconds(5);
  o.peer.backoff.initial = absl::Milliseconds(10);
  o.peer.backoff.max = absl::Milliseconds(100);
  return o;
}

inline std::unique_ptr<ServerTransport> BindOrDie(
    driver::Loop& loop, ServerOptions options = {},
    driver::Address address = driver::Address::Loopback(0)) {
  absl::StatusOr<std::unique_ptr<ServerTransport>> s =
      ServerTransport::Bind(loop, address, std::move(options));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

// Runs the loop until `done()` or 10 s of loop time; returns done().
template <typename F>
bool RunUntil(driver::UvLoop& loop, F done,
              absl::Duration timeout = absl::Seconds(10)) {
  return loop.RunUntil(done, loop.Now() + timeout);
}

// Runs the loop for `d` of its time.
// A request's outcome, once it has one.
using Reply = std::optional<absl::StatusOr<std::string>>;

inline bool AllDone(const std::vector<Reply>& replies) {
  for (const Reply& r : replies) {
    if (!r.has_value()) return false;
  }
  return true;
}

// Takes one message off the server's queue (nullopt once it is closed).
inline driver::Task<void> TakeOne(
    ServerTransport& server,
    std::optional<std::optional<IncomingMessage>>* out) {
  out->emplace(co_await server.NextMessage());
}

// A raw client: its own bytes in, every byte the server sends out, until
// the end of the stream.
class RawClient final : public driver::StreamHandler {
 public:
  std::string received;
  std::optional<absl::Status> ended;

  absl::Span<char> ReadBuffer(size_t) override {
    return absl::MakeSpan(buffer_, sizeof(buffer_));
  }
  void OnRead(size_t n) override { received.append(buffer_, n); }
  void OnReadEnd(absl::Status status) override { ended = std::move(status); }
  void OnWritten(size_t) override {}
  void OnWriteError(absl::Status status) override { ended = std::move(status); }

 private:
  char buffer_[4096];
};

// Connects a RawClient to `address` (reading at once when `read`).
inline std::unique_ptr<driver::Stream> ConnectRaw(
    driver::UvLoop& loop, const driver::Address& address, RawClient& raw,
    bool read) {
  bool connected = false;
  absl::StatusOr<std::unique_ptr<driver::Stream>> stream =
      loop.Connect(address, [&](absl::Status s) {
        EXPECT_TRUE(s.ok()) << s;
        connected = true;
      });
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (!stream.ok()) return nullptr;
  (*stream)->SetHandler(&raw);
  if (read) {
    EXPECT_TRUE((*stream)->StartReading().ok());
  }
  EXPECT_TRUE(
      loop.RunUntil([&] { return connected; }, loop.Now() + absl::Seconds(10)));
  return std::move(*stream);
}

inline void RunFor(driver::UvLoop& loop, absl::Duration d) {
  loop.RunUntil([] { return false; }, loop.Now() + d);
}

}  // namespace moonpool::transport::testing

#endif  // MOONPOOL_TRANSPORT_TESTS_TRANSPORT_TEST_UTIL_H_
