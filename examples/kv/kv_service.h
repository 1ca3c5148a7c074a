// KeyValueService serves the key-value methods of kv_methods.h (Get, Put,
// Delete) from an in-memory map, on any ServerTransport: a real one on a
// UvLoop (moonpool-kv-server) or a simulated one (moonpool-kv-sim).
//
//   kv::KeyValueService service(loop);
//   absl::Status s = service.Register(server);  // the three handlers
//
// What it is not: durable or replicated. The map lives and dies with the
// service object: a server process that restarts starts empty, and the
// simulation's model counts on exactly that.
//
// Ownership: the service borrows the loop (for Get's optional delay) and
// is borrowed by the server it registers on, whose handlers call into it:
// the service must outlive the server (destroy or close the server first).
// Loop's thread only.
#ifndef MOONPOOL_EXAMPLES_KV_KV_SERVICE_H_
#define MOONPOOL_EXAMPLES_KV_KV_SERVICE_H_

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kv.capnp.h"
#include "kv_methods.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_transport.h"

namespace kv {

struct KeyValueServiceOptions {
  // Every Get waits this long before it reads the map (zero: not at all), so
  // that a test can have a call in flight and cancel it. The wait ends early
  // when the call's cancellation fires (the client's cancel, or the
  // deadline): the Get then ends Cancelled and reads nothing.
  absl::Duration get_delay = absl::ZeroDuration();
};

class KeyValueService {
 public:
  explicit KeyValueService(moonpool::driver::Loop& loop,
                           KeyValueServiceOptions options = {});
  KeyValueService(const KeyValueService&) = delete;
  KeyValueService& operator=(const KeyValueService&) = delete;

  // Registers kGet, kPut and kDelete on `server`, with `handler_options`
  // for each. Errors: those of ServerTransport::Handle (AlreadyExists when
  // one of them is served there already; the ones before it stay
  // registered).
  [[nodiscard]] absl::Status Register(
      moonpool::transport::ServerTransport& server,
      moonpool::transport::HandlerOptions handler_options = {});

  // Keys held now.
  size_t size() const { return store_.size(); }

 private:
  template <typename T>
  using Reply = moonpool::driver::Task<
      absl::StatusOr<moonpool::transport::CapnpMessage<T>>>;
  template <typename T>
  using Request = moonpool::transport::CapnpReader<T>;

  Reply<GetReply> Get(moonpool::transport::RequestContext& context,
                      Request<GetRequest> request);
  Reply<PutReply> Put(moonpool::transport::RequestContext& context,
                      Request<PutRequest> request);
  Reply<DeleteReply> Delete(moonpool::transport::RequestContext& context,
                            Request<DeleteRequest> request);

  moonpool::driver::Loop& loop_;
  KeyValueServiceOptions options_;
  absl::flat_hash_map<std::string, std::string> store_;
};

}  // namespace kv

#endif  // MOONPOOL_EXAMPLES_KV_KV_SERVICE_H_
