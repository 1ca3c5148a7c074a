#include <cstdio>

#include "kv_methods.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/server_transport.h"

using namespace kv;                   // NOLINT: an example
using namespace moonpool::transport;  // NOLINT: an example
using moonpool::driver::Address;
template <typename T>
using Reply = moonpool::driver::Task<absl::StatusOr<CapnpMessage<T>>>;

int main() {
  moonpool::driver::UvLoop loop;
  absl::flat_hash_map<std::string, CapnpReader<PutRequest>> store;  // last Puts
  auto server = ServerTransport::Bind(loop, Address::Loopback(0));
  if (!server.ok()) return 1;
  ServerTransport& srv = **server;
  absl::Status s;
  s.Update(srv.Handle(kGet, [&](RequestContext&, auto r) -> Reply<GetReply> {
    CapnpMessage<GetReply> reply;
    auto it = store.find(r.get().getKey().cStr());
    reply.builder().setFound(it != store.end());
    if (it != store.end())
      reply.builder().setValue(it->second.get().getValue());
    co_return reply;
  }));
  s.Update(srv.Handle(kPut, [&](RequestContext&, auto r) -> Reply<PutReply> {
    store.insert_or_assign(r.get().getKey().cStr(), std::move(r));
    co_return CapnpMessage<PutReply>();
  }));
  s.Update(
      srv.Handle(kDelete, [&](RequestContext&, auto r) -> Reply<DeleteReply> {
        CapnpMessage<DeleteReply> reply;
        reply.builder().setExisted(store.erase(r.get().getKey().cStr()) > 0);
        co_return reply;
      }));
  if (!s.ok()) return 1;
  std::printf("listening on %s\n", srv.address().ToString().c_str());
  std::fflush(stdout);
  loop.Run();  // serves until the process is killed
}
