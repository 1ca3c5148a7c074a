#include <cstdio>

#include "kv_methods.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"

using namespace moonpool::transport;  // NOLINT: an example
using moonpool::driver::HostPort;

moonpool::driver::Task<void> PutThenGet(ClientTransport& client, HostPort to) {
  CapnpMessage<kv::PutRequest> put;
  put.builder().setKey("greeting");
  put.builder().setValue(kj::StringPtr("hello").asBytes());
  auto done = co_await client.Call(to, kv::kPut, put);  // a kv::PutReply
  CapnpMessage<kv::GetRequest> get;
  get.builder().setKey("greeting");
  auto got = co_await client.Call(to, kv::kGet, get);  // a kv::GetReply
  auto value = got.ok() ? got->get().getValue().asChars() : nullptr;
  std::printf("put %s, get %s: %.*s\n", done.status().ToString().c_str(),
              got.status().ToString().c_str(), int(value.size()),
              value.begin());
  client.Close();  // nothing left to wait for: loop.Run() returns
}

int main(int argc, char** argv) {
  absl::StatusOr<HostPort> to = HostPort::Parse(argc > 1 ? argv[1] : "");
  if (!to.ok()) return 2;
  moonpool::driver::UvLoop loop;
  ClientTransport client(loop);
  moonpool::driver::TaskScope tasks(loop, [](absl::Status) {});
  tasks.Spawn(PutThenGet(client, *to));
  loop.Run();
}
