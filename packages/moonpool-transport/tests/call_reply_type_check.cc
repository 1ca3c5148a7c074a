// Compiled by the ctests moonpool_call_reply_type_compiles (as it is) and
// moonpool_call_wrong_reply_type_does_not_compile (with
// MOONPOOL_WRONG_REPLY_TYPE): a Call's reply type is its method's, so
// awaiting it as another type must be refused by the compiler. Not linked
// into anything.
#include <string>

#include "absl/status/statusor.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/ping.capnp.h"

namespace moonpool::transport {

const Method<schema::Ping, schema::Pong> kCheckedPing{"check.Ping/Ping"};

driver::Task<void> AwaitsTheReply(ClientTransport& client,
                                  const driver::Address& to,
                                  const CapnpMessage<schema::Ping>& ping) {
#ifdef MOONPOOL_WRONG_REPLY_TYPE
  absl::StatusOr<std::string> reply =
      co_await client.Call(to, kCheckedPing, ping);
#else
  absl::StatusOr<CapnpReader<schema::Pong>> reply =
      co_await client.Call(to, kCheckedPing, ping);
#endif
  (void)reply;
}

}  // namespace moonpool::transport
