#include <cstdio>

#include "kv_methods.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/server_transport.h"

using namespace moonpool::transport;  // NOLINT: an example
using moonpool::driver::Address;

int main() {
  moonpool::driver::UvLoop loop;
  auto server = ServerTransport::Bind(loop, Address::Loopback(0)).value();
  absl::flat_hash_map<std::string, CapnpReader<kv::PutRequest>> store;
  absl::Status s = server->Handle(
      kv::kPut, [&](RequestContext&, auto put) -> HandlerTask<kv::PutReply> {
        store.insert_or_assign(put.get().getKey().cStr(), std::move(put));
        co_return CapnpMessage<kv::PutReply>();
      });
  s.Update(server->Handle(
      kv::kGet, [&](RequestContext&, auto get) -> HandlerTask<kv::GetReply> {
        CapnpMessage<kv::GetReply> reply;
        auto hit = store.find(get.get().getKey().cStr());
        reply.builder().setFound(hit != store.end());
        if (hit != store.end())
          reply.builder().setValue(hit->second.get().getValue());
        co_return reply;
      }));
  if (!s.ok()) return 1;
  std::printf("listening on %s\n", server->address().ToString().c_str());
  std::fflush(stdout);
  loop.Run();  // serves until the process is killed
}
