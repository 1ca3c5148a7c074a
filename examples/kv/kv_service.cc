#include "kv_service.h"

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "capnp/blob.h"
#include "kj/common.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"

namespace kv {
namespace {

using moonpool::transport::CapnpMessage;
using moonpool::transport::CapnpReader;
using moonpool::transport::RequestContext;
using moonpool::transport::StreamWriter;

std::string ToString(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}
std::string ToString(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

}  // namespace

KeyValueService::KeyValueService(moonpool::driver::Loop& loop,
                                 KeyValueServiceOptions options)
    : loop_(loop), options_(std::move(options)) {}

absl::Status KeyValueService::Register(
    moonpool::transport::ServerTransport& server,
    moonpool::transport::HandlerOptions handler_options) {
  // Each handler is a plain lambda that starts a member coroutine: the
  // coroutine frame then holds `this` and its arguments, not a reference to
  // a lambda object.
  if (absl::Status s = server.Handle(
          kGet,
          [this](RequestContext& context, CapnpReader<GetRequest> request) {
            return Get(context, std::move(request));
          },
          handler_options);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = server.Handle(
          kPut,
          [this](RequestContext& context, CapnpReader<PutRequest> request) {
            return Put(context, std::move(request));
          },
          handler_options);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = server.Handle(
          kDelete,
          [this](RequestContext& context, CapnpReader<DeleteRequest> request) {
            return Delete(context, std::move(request));
          },
          handler_options);
      !s.ok()) {
    return s;
  }
  return server.HandleStream(
      kScan,
      [this](RequestContext& context, CapnpReader<ScanRequest> request,
             StreamWriter<ScanItem>& out) {
        return Scan(context, std::move(request), out);
      },
      handler_options);
}

KeyValueService::Reply<GetReply> KeyValueService::Get(
    RequestContext& context, Request<GetRequest> request) {
  if (options_.get_delay > absl::ZeroDuration()) {
    std::variant<std::monostate, std::monostate> woke =
        co_await moonpool::driver::Select(
            moonpool::driver::Sleep(loop_, options_.get_delay),
            context.cancellation().WhenCancelled());
    if (woke.index() == 1) {
      // Nobody reads the answer any more (the client gave up, or its
      // deadline passed): say why, and read nothing.
      co_return context.cancellation().status();
    }
  }
  CapnpMessage<GetReply> reply;
  auto it = store_.find(ToString(request.get().getKey()));
  if (it != store_.end()) {
    reply.builder().setFound(true);
    reply.builder().setValue(
        kj::arrayPtr(it->second.data(), it->second.size()).asBytes());
  }
  co_return reply;
}

KeyValueService::Reply<PutReply> KeyValueService::Put(
    RequestContext& context, Request<PutRequest> request) {
  auto [it, inserted] = store_.insert_or_assign(
      ToString(request.get().getKey()), ToString(request.get().getValue()));
  if (options_.on_put) options_.on_put(it->first, it->second);
  co_return CapnpMessage<PutReply>();
}

KeyValueService::Reply<DeleteReply> KeyValueService::Delete(
    RequestContext& context, Request<DeleteRequest> request) {
  CapnpMessage<DeleteReply> reply;
  reply.builder().setExisted(store_.erase(ToString(request.get().getKey())) >
                             0);
  co_return reply;
}

moonpool::driver::Task<absl::Status> KeyValueService::Scan(
    RequestContext& context, Request<ScanRequest> request,
    StreamWriter<ScanItem>& out) {
  const std::string end = ToString(request.get().getEnd());
  const uint64_t limit = request.get().getLimit();
  // The resume point: the next item is the first key >= `from` (the first
  // step) or > `from` (every later one, `from` being the last key sent). An
  // iterator would not survive the Puts and Deletes that run while Write
  // waits for credit; a key does.
  std::string from = ToString(request.get().getStart());
  bool after = false;
  for (uint64_t sent = 0; limit == 0 || sent < limit; ++sent) {
    if (options_.scan_item_delay > absl::ZeroDuration()) {
      std::variant<std::monostate, std::monostate> woke =
          co_await moonpool::driver::Select(
              moonpool::driver::Sleep(loop_, options_.scan_item_delay),
              context.cancellation().WhenCancelled());
      if (woke.index() == 1) co_return context.cancellation().status();
    }
    auto it = after ? store_.upper_bound(from) : store_.lower_bound(from);
    if (it == store_.end() || (!end.empty() && it->first >= end)) break;
    CapnpMessage<ScanItem> item;
    item.builder().setKey(it->first);
    item.builder().setValue(
        kj::arrayPtr(it->second.data(), it->second.size()).asBytes());
    from = it->first;
    after = true;
    // Write encodes the item before it waits, so the value sent is the one
    // read here. Not OK: the call ended (cancel, deadline, connection or
    // server gone); nobody reads on.
    absl::Status written = co_await out.Write(item);
    if (!written.ok()) co_return written;
  }
  co_return absl::OkStatus();
}

}  // namespace kv
