// MethodHandler<Req, Rep> is the function a server runs for each call of a
// Method<Req, Rep> (ServerTransport::Handle); HandlerOptions bound how many
// of its calls run and wait at once.
//
//   inline const Method<kv::GetRequest, kv::GetReply> kGet{"kv.KeyValue/Get"};
//
//   (void)server->Handle(kGet,
//       [&](RequestContext& ctx, CapnpReader<kv::GetRequest> req)
//           -> driver::Task<absl::StatusOr<CapnpMessage<kv::GetReply>>> {
//         CapnpMessage<kv::GetReply> reply;
//         reply.builder().setValue(store.Get(req.get().getKey()));
//         co_return reply;
//       });
//
// A handler is a coroutine: it takes the call's context (request_context.h)
// and the decoded request, and returns the reply (encoded through Codec) or
// a non-OK Status, which its client receives with code and message. It may
// suspend for as long as it likes (the context's token says when the client
// has stopped waiting).
//
// What it is not: a place to answer by hand (the return value is the one
// answer) or to keep the request past the call (it owns its request; copy
// what must outlive it). Ownership: the server owns the handler from
// Handle until it is destroyed; every call's task borrows it, so a lambda's
// captures must outlive the server's tasks (destroy or Close the server
// first).
#ifndef MOONPOOL_TRANSPORT_METHOD_HANDLER_H_
#define MOONPOOL_TRANSPORT_METHOD_HANDLER_H_

#include <cstddef>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_options.h"

namespace moonpool::transport {

// What a handler of a method whose reply type is Rep returns: a task that
// yields the reply or the Status to answer with. Spell a handler lambda's
// return type with it: `[&](RequestContext&, auto req) -> HandlerTask<Rep>`.
template <MethodMessage Rep>
using HandlerTask =
    driver::Task<absl::StatusOr<typename MethodTypes<Rep>::Out>>;

template <MethodMessage Req, MethodMessage Rep>
using MethodHandler = absl::AnyInvocable<HandlerTask<Rep>(
    RequestContext&, typename Method<Req, Rep>::RequestIn)>;

struct HandlerOptions {
  // Handlers of this method running at once; more calls wait, first come
  // first served. Must be positive.
  size_t max_concurrent = 256;
  // Calls that may wait for a slot; one more is answered ResourceExhausted
  // at once (a one-way message is dropped), so a slow method cannot take
  // the server's whole in-flight budget unnoticed. 0: none waits.
  size_t max_queued = 1024;
  // Runs before each call of this method, after the server's and the
  // service's authorizers (server_options.h); a non-OK Status is the call's
  // answer and the handler does not run. Empty: allowed.
  Authorizer authorize = nullptr;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_METHOD_HANDLER_H_
