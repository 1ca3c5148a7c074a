// The echo service shared by moonpool-echo-server and moonpool-pingpong's
// in-process server: a pool of handler tasks that answer every request with
// its own payload. The programs run it on loops of their own, one thread
// each, through transport::ServerThreads.
//
// Not API: example code, built only with the programs under examples/.
#ifndef MOONPOOL_TRANSPORT_EXAMPLES_ECHO_SERVICE_H_
#define MOONPOOL_TRANSPORT_EXAMPLES_ECHO_SERVICE_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
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

}  // namespace moonpool::examples

#endif  // MOONPOOL_TRANSPORT_EXAMPLES_ECHO_SERVICE_H_
