// The transport consumer: a user's own Cap'n Proto schema (greeting.capnp,
// compiled by this project's CMakeLists.txt as the transport README shows)
// used with the installed moonpool-transport. Codec<T> round trips a
// Greeting in memory, then a ClientTransport asks a ServerTransport over
// loopback with a typed request and checks the typed reply. Prints each
// step; returns non-zero on the first failure.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "greeting.capnp.h"  // generated from greeting.capnp
#include "moonpool/driver/address.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_transport.h"

namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::transport::CapnpMessage;
using moonpool::transport::CapnpReader;
using moonpool::transport::ClientTransport;
using moonpool::transport::Codec;
using moonpool::transport::IncomingMessage;
using moonpool::transport::RequestOptions;
using moonpool::transport::ServerTransport;

int failures = 0;

bool Check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
  return ok;
}

std::string Text(capnp::Text::Reader text) {
  return std::string(text.cStr(), text.size());
}

// Answers each Greeting with a Reply, typed both ways.
Task<void> Serve(ServerTransport& server) {
  while (std::optional<IncomingMessage> msg = co_await server.NextMessage()) {
    absl::StatusOr<CapnpReader<consumer::Greeting>> greeting =
        Codec<CapnpReader<consumer::Greeting>>::Decode(msg->envelope.payload);
    if (!greeting.ok()) {
      (void)server.ReplyError(*msg, greeting.status());
      continue;
    }
    CapnpMessage<consumer::Reply> reply;
    reply.builder().setText(absl::StrCat("hello ",
                                         Text(greeting->get().getName()), " x",
                                         greeting->get().getTimes()));
    (void)server.Reply(*msg, reply);
  }
}

Task<void> Greet(ClientTransport& client, ServerTransport& server,
                 absl::StatusOr<std::string>* out) {
  CapnpMessage<consumer::Greeting> greeting;
  greeting.builder().setName("consumer");
  greeting.builder().setTimes(3);
  absl::StatusOr<CapnpReader<consumer::Reply>> reply =
      co_await client.Request<CapnpReader<consumer::Reply>>(
          server.address(), greeting,
          RequestOptions::Timeout(absl::Seconds(5)));
  if (reply.ok()) {
    *out = Text(reply->get().getText());
  } else {
    *out = reply.status();
  }
  client.Close();
  co_await server.Close(/*drain=*/true);
}

}  // namespace

int main() {
  std::printf("moonpool-transport find_package consumer (own schema)\n");

  // Codec<T> with the user's schema, no network.
  CapnpMessage<consumer::Greeting> greeting;
  greeting.builder().setName("codec");
  greeting.builder().setTimes(7);
  std::string bytes;
  absl::Status encoded =
      Codec<CapnpMessage<consumer::Greeting>>::Encode(greeting, bytes);
  Check(encoded.ok(), "encode a Greeting: " + encoded.ToString());
  absl::StatusOr<CapnpReader<consumer::Greeting>> decoded =
      Codec<CapnpReader<consumer::Greeting>>::Decode(bytes);
  Check(decoded.ok() && Text(decoded->get().getName()) == "codec" &&
            decoded->get().getTimes() == 7,
        "decode it back (name, times)");

  // A typed request over loopback.
  moonpool::driver::UvLoop loop;
  absl::StatusOr<std::unique_ptr<ServerTransport>> server =
      ServerTransport::Bind(loop, Address::Loopback(0));
  if (!Check(server.ok(),
             "bind a server on loopback: " + server.status().ToString())) {
    return 1;
  }
  ClientTransport client(loop);
  absl::StatusOr<std::string> reply = absl::UnknownError("no reply");
  {
    moonpool::driver::TaskScope tasks(loop, [](absl::Status) {});
    tasks.Spawn(Serve(**server));
    tasks.Spawn(Greet(client, **server, &reply));
    loop.RunUntil([&] { return (*server)->closed(); },
                  loop.Now() + absl::Seconds(20));
  }
  Check(reply.ok() && *reply == "hello consumer x3",
        "typed request and reply over loopback: " +
            (reply.ok() ? *reply : reply.status().ToString()));

  if (failures != 0) {
    std::printf("FAILED: %d check(s)\n", failures);
    return 1;
  }
  std::printf(
      "PASSED: a user schema through the installed moonpool-transport\n");
  return 0;
}
