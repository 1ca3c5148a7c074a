// StreamWriter<Item> is how a stream method's handler
// (ServerTransport::HandleStream) sends its items; StreamHandler is the type
// of such a handler.
//
//   (void)server->HandleStream(kScan,
//       [&](RequestContext& ctx, CapnpReader<kv::ScanRequest> req,
//           StreamWriter<kv::ScanItem>& out) -> driver::Task<absl::Status> {
//         for (const auto& [key, value] : store.Range(...)) {
//           CapnpMessage<kv::ScanItem> item;
//           ...
//           if (absl::Status s = co_await out.Write(item); !s.ok()) {
//             co_return s;  // the client went away: stop
//           }
//         }
//         co_return absl::OkStatus();  // the stream's end
//       });
//
// Flow control (DESIGN.md section 5): Write sends at once while the stream
// has credit, and otherwise waits until the client grants more, so a
// handler can never run more than the client's window ahead of it, and a
// stalled client costs the server at most its window (plus one item) of
// this stream's bytes. The handler's return value ends the stream: OK sends
// the end, a Status sends it as the stream's error.
//
// What it is not: shareable or concurrent. One Write at a time (await each
// before the next: the writer encodes into one reused buffer), from the
// handler that was given it. Ownership: the server owns the writer for the
// call's lifetime, like the RequestContext; do not keep it past the handler.
#ifndef MOONPOOL_TRANSPORT_STREAM_WRITER_H_
#define MOONPOOL_TRANSPORT_STREAM_WRITER_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/stream_method.h"

namespace moonpool::transport {
namespace internal {

// The server's side of one stream call (the ServerTransport implements it).
class StreamSink {
 public:
  // Sends `payload` as the call's next item once the stream has credit (see
  // StreamWriter::Write); `encoded` is the encoding's outcome, returned as
  // it is when not OK.
  virtual driver::Task<absl::Status> WriteItem(RequestContext& ctx,
                                               absl::string_view payload,
                                               absl::Status encoded) = 0;

 protected:
  ~StreamSink() = default;
};

}  // namespace internal

template <MethodMessage Item>
class StreamWriter {
 public:
  using ItemOut = typename MethodTypes<Item>::Out;

  StreamWriter(internal::StreamSink& sink, RequestContext& ctx)
      : sink_(&sink), ctx_(&ctx) {}
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // Encodes `item` now and sends it once the stream has credit. Yields OK
  // once it is handed to the connection; Cancelled when the call ended
  // first (the client cancelled, the deadline passed, the connection or the
  // server closed: stop writing, nobody reads); ResourceExhausted when the
  // item can never be sent (larger than a frame); whatever the codec says
  // when `item` does not encode.
  driver::Task<absl::Status> Write(const ItemOut& item) {
    absl::Status encoded = EncodePayload(item, buffer_);
    ++items_;
    return sink_->WriteItem(*ctx_, buffer_, std::move(encoded));
  }

  // Items handed to Write so far.
  uint64_t items() const { return items_; }

 private:
  internal::StreamSink* sink_;
  RequestContext* ctx_;
  std::string buffer_;  // the item being written, encoded
  uint64_t items_ = 0;
};

// What a handler of a StreamMethod<Req, Item> is: it takes the call's context,
// the decoded request and the writer, and yields the stream's end.
template <MethodMessage Req, MethodMessage Item>
using StreamHandler = absl::AnyInvocable<driver::Task<absl::Status>(
    RequestContext&, typename StreamMethod<Req, Item>::RequestIn,
    StreamWriter<Item>&)>;

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_STREAM_WRITER_H_
