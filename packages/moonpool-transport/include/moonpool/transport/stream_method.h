// StreamMethod<Req, Item> is a typed, named endpoint whose answer is a reply
// stream (DESIGN.md section 5, "Reply streams"): any number of Item values,
// then one end (OK or a Status). Declared once and shared by the server that
// serves it (ServerTransport::HandleStream) and the clients that call it
// (ClientTransport::CallStream):
//
//   inline const moonpool::transport::StreamMethod<kv::ScanRequest,
//                                                  kv::ScanItem>
//       kScan{"kv.KeyValue/Scan"};
//
// Names, tokens and the types a method may carry are as for Method
// (method.h): the token is XXH3_64bits(name), Req and Item are each a Cap'n
// Proto struct, std::string or Bytes. A stream method and a unary one are
// told apart by the client's request (it carries stream credit), not by the
// name: serving one name both ways is refused (the token is taken).
//
// What it is not: a handler or a stream. A small immutable value; copy it
// freely. Declaring one does no I/O.
#ifndef MOONPOOL_TRANSPORT_STREAM_METHOD_H_
#define MOONPOOL_TRANSPORT_STREAM_METHOD_H_

#include "absl/strings/string_view.h"
#include "moonpool/transport/method.h"

namespace moonpool::transport {

// `options().idempotent`: a stream that failed with its connection before
// its first item may be sent again (never after an item: DESIGN.md section
// 6).
template <MethodMessage Req, MethodMessage Item>
class StreamMethod : public internal::MethodName {
 public:
  // What a client sends and a handler receives; what a handler writes and
  // a client receives, item by item.
  using RequestOut = typename MethodTypes<Req>::Out;
  using RequestIn = typename MethodTypes<Req>::In;
  using ItemOut = typename MethodTypes<Item>::Out;
  using ItemIn = typename MethodTypes<Item>::In;

  explicit StreamMethod(absl::string_view name, MethodOptions options = {})
      : MethodName(name, options) {}
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_STREAM_METHOD_H_
