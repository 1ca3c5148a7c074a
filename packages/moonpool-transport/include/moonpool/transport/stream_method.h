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

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/transport/method.h"
#include "moonpool/wire/endpoint_token.h"

namespace moonpool::transport {

template <MethodMessage Req, MethodMessage Item>
class StreamMethod {
 public:
  // What a client sends and a handler receives; what a handler writes and
  // a client receives, item by item.
  using RequestOut = typename MethodTypes<Req>::Out;
  using RequestIn = typename MethodTypes<Req>::In;
  using ItemOut = typename MethodTypes<Item>::Out;
  using ItemIn = typename MethodTypes<Item>::In;

  // `name` is checked once, here (CheckMethod); a bad one fails where the
  // method is served or called, with that InvalidArgument.
  explicit StreamMethod(absl::string_view name, MethodOptions options = {})
      : name_(name),
        token_(wire::EndpointToken(name)),
        options_(options),
        status_(CheckMethod(name_, token_)) {}

  absl::string_view name() const { return name_; }
  Endpoint token() const { return token_; }
  // `idempotent`: a stream that failed with its connection before its first
  // item may be sent again (never after an item: DESIGN.md section 6).
  const MethodOptions& options() const { return options_; }
  const absl::Status& status() const { return status_; }

 private:
  std::string name_;
  Endpoint token_;
  MethodOptions options_;
  absl::Status status_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_STREAM_METHOD_H_
