// The README's example, compiled and run: if it stops building or stops
// finishing, this test says so.
#include "gtest/gtest.h"

// ---- README example begins ----
#include <iostream>

#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/transport/server_transport.h"

using namespace moonpool::transport;  // NOLINT: an example
using moonpool::driver::Address;
using moonpool::driver::Task;

Task<void> Serve(ServerTransport& server) {  // one handler for every connection
  while (std::optional<IncomingMessage> msg = co_await server.NextMessage()) {
    auto ping = Codec<CapnpReader<schema::Ping>>::Decode(msg->envelope.payload);
    if (!ping.ok()) {
      (void)server.ReplyError(*msg, ping.status());
      continue;
    }
    CapnpMessage<schema::Pong> pong;
    pong.builder().setSequence(ping->get().getSequence());
    (void)server.Reply(*msg, pong);  // back on the connection it came from
  }
}

Task<void> PingThrice(ClientTransport& client, ServerTransport& server,
                      absl::Status* result) {
  for (uint64_t i = 1; i <= 3 && result->ok(); ++i) {
    CapnpMessage<schema::Ping> ping;
    ping.builder().setSequence(i);
    absl::StatusOr<CapnpReader<schema::Pong>> pong =
        co_await client.Request<CapnpReader<schema::Pong>>(
            server.address(), ping, RequestOptions::Timeout(absl::Seconds(1)));
    if (!pong.ok()) *result = pong.status();
  }
  client.Close();
  co_await server.Close(/*drain=*/true);  // Serve's loop ends: nullopt
}

int RunExample() {
  moonpool::driver::UvLoop loop;
  auto server = ServerTransport::Bind(loop, Address::Loopback(0));
  if (!server.ok()) return 1;
  ClientTransport client(loop);
  absl::Status result;
  moonpool::driver::TaskScope tasks(loop, [](absl::Status) {});
  tasks.Spawn(Serve(**server));
  tasks.Spawn(PingThrice(client, **server, &result));
  loop.Run();  // until nothing is left to do
  std::cout << "ping-pong: " << result << "\n";
  return result.ok() ? 0 : 1;
}
// ---- README example ends ----

namespace {

TEST(ReadmeExample, RunsToTheEnd) { EXPECT_EQ(RunExample(), 0); }

}  // namespace
