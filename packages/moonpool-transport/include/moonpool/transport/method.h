// Method<Req, Rep> is a typed, named endpoint (DESIGN.md section 5, "Named
// endpoints"), declared once and shared by the server that serves it and the
// clients that call it:
//
//   inline const moonpool::transport::Method<kv::GetRequest, kv::GetReply>
//       kGet{"kv.KeyValue/Get"};
//
// Req and Rep are each a Cap'n Proto struct (sent as CapnpMessage<T>,
// received as CapnpReader<T>), std::string or Bytes (sent and received as
// themselves). MethodTypes<T> says which; a method of any other type does not
// compile. The reply type a client gets is fixed by the method, so a caller
// that expects another does not compile either.
//
// The token on the wire is XXH3_64bits(name) with seed 0 (wire::EndpointToken),
// computed once here. A name must be "Service/Method": printable ASCII, one
// '/' with text on both sides, at most kMaxMethodNameBytes; CheckMethodName
// says what is wrong with one, and registration refuses a bad name or one
// whose token is 0 (the default queue).
//
// What it is not: a handler or a connection. A Method is a small immutable
// value (a name and a token); copy it freely. Declaring one does no I/O.
#ifndef MOONPOOL_TRANSPORT_METHOD_H_
#define MOONPOOL_TRANSPORT_METHOD_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/codec.h"
#include "moonpool/wire/endpoint_token.h"

namespace moonpool::transport {

inline constexpr size_t kMaxMethodNameBytes = 256;

// OK, or InvalidArgument saying what is wrong with `name` as a method name
// (see the file comment). Does not look at the token.
[[nodiscard]] absl::Status CheckMethodName(absl::string_view name);
// CheckMethodName, and InvalidArgument for a name whose token is 0 (the
// default queue's).
[[nodiscard]] absl::Status CheckMethod(absl::string_view name, Endpoint token);

// How a method's request or reply type travels: `Out` is what the sending
// side passes, `In` what the receiving side gets.
template <typename T>
struct MethodTypes;

template <CapnpStruct T>
struct MethodTypes<T> {
  using Out = CapnpMessage<T>;
  using In = CapnpReader<T>;
};
template <>
struct MethodTypes<std::string> {
  using Out = std::string;
  using In = std::string;
};
template <>
struct MethodTypes<Bytes> {
  using Out = Bytes;
  using In = Bytes;
};

// A type a method may carry.
template <typename T>
concept MethodMessage = requires {
  typename MethodTypes<T>::Out;
  typename MethodTypes<T>::In;
};

// Properties of a method that both sides know from its declaration.
struct MethodOptions {
  // Safe to process twice: a call that was maybe delivered is sent again on
  // the next connection instead of failing with Aborted (DESIGN.md section
  // 6). A call may also ask for it (RequestOptions::idempotent).
  bool idempotent = false;
  // Run at most once even across connection losses (DESIGN.md section 5,
  // "Exactly-once"): the server keeps each call's outcome until the client
  // settles it, and a call maybe delivered is sent again with the same id
  // and answered from that record. A call may also ask for it
  // (RequestOptions::exactly_once). Unary methods only: a StreamMethod
  // declared exactly-once cannot be called or served.
  bool exactly_once = false;
};

namespace internal {

// What every kind of method has, whatever it answers with: its name, the
// name's token, the options both sides know, and the name's check, made
// once. Method and StreamMethod (stream_method.h) are this plus their types.
class MethodName {
 public:
  // `name` is checked once, here (CheckMethod), but a bad one fails only
  // where the method is registered or called, with that InvalidArgument, so
  // that a method can be a namespace-scope constant.
  MethodName(absl::string_view name, MethodOptions options)
      : name_(name),
        token_(wire::EndpointToken(name)),
        options_(options),
        status_(CheckMethod(name_, token_)) {}

  absl::string_view name() const { return name_; }
  Endpoint token() const { return token_; }
  const MethodOptions& options() const { return options_; }
  // OK, or why this method can be neither served nor called.
  const absl::Status& status() const { return status_; }

 private:
  std::string name_;
  Endpoint token_;
  MethodOptions options_;
  absl::Status status_;
};

}  // namespace internal

template <MethodMessage Req, MethodMessage Rep>
class Method : public internal::MethodName {
 public:
  // What a client sends and a handler receives; what a handler returns and
  // a client receives.
  using RequestOut = typename MethodTypes<Req>::Out;
  using RequestIn = typename MethodTypes<Req>::In;
  using ReplyOut = typename MethodTypes<Rep>::Out;
  using ReplyIn = typename MethodTypes<Rep>::In;

  explicit Method(absl::string_view name, MethodOptions options = {})
      : MethodName(name, options) {}
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_METHOD_H_
