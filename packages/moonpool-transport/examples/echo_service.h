// The echo service shared by moonpool-echo-server and moonpool-pingpong's
// in-process server: a pool of handler tasks that answer every request with
// its own payload, and an EchoServerThread that runs one on its own thread
// with its own UvLoop (one loop per thread).
//
// Not API: example code, built only with the programs under examples/.
#ifndef MOONPOOL_TRANSPORT_EXAMPLES_ECHO_SERVICE_H_
#define MOONPOOL_TRANSPORT_EXAMPLES_ECHO_SERVICE_H_

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::examples {

// Answers `msg` once its connection's output has room again (or gives up
// when its deadline passes or its connection goes: nobody waits any more).
inline driver::Task<void> ReplyWhenWritable(transport::ServerTransport& server,
                                            transport::IncomingMessage msg) {
  std::string payload = std::move(msg.envelope.payload);
  (void)co_await server.ReplyWhenWritable(std::move(msg), std::move(payload));
}

// One handler: answers requests from any connection with their payload
// until the server closes. A reply to a connection that went away
// (NotFound) is nobody's business any more. A full output
// (ResourceExhausted: that client does not read its replies) is waited out
// by a task of its own (ServerTransport::ReplyWhenWritable), so that one client
// that does not read cannot hold every handler and starve the others; those
// tasks are bounded by the server's in-flight bounds (ServerOptions), which
// stop reading the client.
inline driver::Task<void> EchoHandler(driver::Loop& loop,
                                      transport::ServerTransport& server,
                                      driver::TaskScope& scope) {
  while (std::optional<transport::IncomingMessage> msg =
             co_await server.NextMessage()) {
    if (!msg->is_request()) continue;  // one-way: nothing to answer
    absl::Status s =
        server.Reply(*msg, absl::string_view(msg->envelope.payload));
    if (s.code() == absl::StatusCode::kResourceExhausted) {
      scope.Spawn(ReplyWhenWritable(server, *std::move(msg)));
    }
  }
}

// Spawns `handlers` EchoHandler tasks into `scope`.
inline void SpawnEchoHandlers(driver::Loop& loop,
                              transport::ServerTransport& server,
                              driver::TaskScope& scope, size_t handlers) {
  for (size_t i = 0; i < handlers; ++i) {
    scope.Spawn(EchoHandler(loop, server, scope));
  }
}

// An echo server on a thread of its own, on 127.0.0.1 (port 0 by default).
// Start binds (and reports the address or the error); Stop drains it
// (Close(drain=true)) and joins the thread. Start and Stop are called from
// one thread, the owner's; the loop is touched from it only through
// UvLoop::PostFromAnyThread.
class EchoServerThread {
 public:
  EchoServerThread() = default;
  EchoServerThread(const EchoServerThread&) = delete;
  EchoServerThread& operator=(const EchoServerThread&) = delete;
  ~EchoServerThread() { Stop(); }

  absl::StatusOr<driver::Address> Start(driver::Address address,
                                        transport::ServerOptions options,
                                        size_t handlers) {
    std::promise<absl::StatusOr<driver::Address>> bound;
    std::future<absl::StatusOr<driver::Address>> result = bound.get_future();
    thread_ = std::thread([this, address, options = std::move(options),
                           handlers, bound = std::move(bound)]() mutable {
      Run(address, std::move(options), handlers, bound);
    });
    absl::StatusOr<driver::Address> a = result.get();
    if (!a.ok()) {
      thread_.join();
    }
    return a;
  }

  // Drains the server and waits for its thread. Idempotent.
  void Stop() {
    if (!thread_.joinable()) return;
    if (loop_ != nullptr) {
      loop_->PostFromAnyThread([this] { scope_->Spawn(server_->Close(true)); });
    }
    thread_.join();
  }

 private:
  void Run(driver::Address address, transport::ServerOptions options,
           size_t handlers,
           std::promise<absl::StatusOr<driver::Address>>& bound) {
    driver::UvLoop loop;
    absl::StatusOr<std::unique_ptr<transport::ServerTransport>> server =
        transport::ServerTransport::Bind(loop, address, std::move(options));
    if (!server.ok()) {
      bound.set_value(server.status());
      return;
    }
    driver::TaskScope scope(loop, [](absl::Status s) {
      std::fprintf(stderr, "echo server: task failed: %s\n",
                   s.ToString().c_str());
    });
    SpawnEchoHandlers(loop, **server, scope, handlers);
    loop_ = &loop;
    server_ = server->get();
    scope_ = &scope;
    bound.set_value((*server)->address());  // publishes the three above
    loop.Run();  // until Stop's Close ends the listener and the handlers
    scope.Clear();
    server->reset();
  }

  std::thread thread_;
  // Set on the server thread before Start returns (the promise orders them);
  // read by Stop on the owner's thread.
  driver::UvLoop* loop_ = nullptr;
  transport::ServerTransport* server_ = nullptr;
  driver::TaskScope* scope_ = nullptr;
};

}  // namespace moonpool::examples

#endif  // MOONPOOL_TRANSPORT_EXAMPLES_ECHO_SERVICE_H_
