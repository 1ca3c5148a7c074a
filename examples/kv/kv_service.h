// KeyValueService serves the key-value methods of kv_methods.h (Get, Put,
// Delete, and the stream method Scan) from an in-memory ordered map, on any
// ServerTransport: a real one on a UvLoop (moonpool-kv-server) or a
// simulated one (moonpool-kv-sim).
//
//   kv::KeyValueService service(loop);
//   absl::Status s = service.Register(server);  // the four handlers
//
// A Scan is not a snapshot: it walks the live map, and while its writer
// waits for credit, Puts and Deletes go on. Each step looks up the first key
// after the last one it read, never an iterator kept across a co_await, so
// it sees keys in strictly increasing order and none twice. It reads a key
// (and its value) when the previous item has been handed to the connection,
// then waits for credit to send it: an item is the store as of that read. A
// key written ahead of the scan's position before the scan reads there is
// seen, one written behind it is not, one deleted before that read is not.
//
// What it is not: durable or replicated. The map lives and dies with the
// service object: a server process that restarts starts empty, and the
// simulation's model counts on exactly that.
//
// Ownership: the service borrows the loop (for the optional delays) and
// is borrowed by the server it registers on, whose handlers call into it:
// the service must outlive the server (destroy or close the server first).
// Loop's thread only.
#ifndef MOONPOOL_EXAMPLES_KV_KV_SERVICE_H_
#define MOONPOOL_EXAMPLES_KV_KV_SERVICE_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kv.capnp.h"
#include "kv_methods.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/transport/stream_writer.h"

namespace kv {

struct KeyValueServiceOptions {
  // Every Get waits this long before it reads the map (zero: not at all), so
  // that a test can have a call in flight and cancel it. The wait ends early
  // when the call's cancellation fires (the client's cancel, or the
  // deadline): the Get then ends Cancelled and reads nothing.
  absl::Duration get_delay = absl::ZeroDuration();
  // A Scan waits this long before each item (zero: not at all), so that a
  // stream lasts long enough to be cut midway (the simulation's restarts).
  // The wait ends early, Cancelled, when the call's cancellation fires.
  absl::Duration scan_item_delay = absl::ZeroDuration();
  // Called with the key and value of every Put the service applies, right
  // after it changed the map (empty: nothing called). The simulation counts
  // applications with it: a Put, exactly-once or not, is applied at most
  // once.
  std::function<void(absl::string_view key, absl::string_view value)> on_put =
      nullptr;
};

class KeyValueService {
 public:
  explicit KeyValueService(moonpool::driver::Loop& loop,
                           KeyValueServiceOptions options = {});
  KeyValueService(const KeyValueService&) = delete;
  KeyValueService& operator=(const KeyValueService&) = delete;

  // Registers kGet, kPut, kDelete and kScan on `server`, with
  // `handler_options` for each. Errors: those of ServerTransport::Handle
  // (AlreadyExists when one of them is served there already; the ones before it
  // stay registered).
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
  moonpool::driver::Task<absl::Status> Scan(
      moonpool::transport::RequestContext& context,
      Request<ScanRequest> request,
      moonpool::transport::StreamWriter<ScanItem>& out);

  moonpool::driver::Loop& loop_;
  KeyValueServiceOptions options_;
  // Ordered, for Scan.
  absl::btree_map<std::string, std::string> store_;
};

}  // namespace kv

#endif  // MOONPOOL_EXAMPLES_KV_KV_SERVICE_H_
