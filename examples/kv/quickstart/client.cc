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
  std::printf("put %s, get %s: %s\n", done.status().ToString().c_str(),
              got.status().ToString().c_str(),
              got.ok() ? kj::str(got->get().getValue().asChars()).cStr() : "");
  client.Close();  // nothing left to wait for: loop.Run() returns
}

int main(int argc, char** argv) {
  moonpool::driver::UvLoop loop;
  ClientTransport client(loop);
  moonpool::driver::TaskScope tasks(loop, [](absl::Status) {});
  tasks.Spawn(PutThenGet(client, HostPort::Parse(argv[argc - 1]).value()));
  loop.Run();
}
