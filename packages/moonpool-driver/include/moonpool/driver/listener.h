// Listener is a bound, listening TCP socket of a Loop. Each accepted
// connection reaches its accept callback as a Stream the callback now owns.
// Destroying the Listener (or Close) stops accepting; no callback runs after.
#ifndef MOONPOOL_DRIVER_LISTENER_H_
#define MOONPOOL_DRIVER_LISTENER_H_

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/stream.h"

namespace moonpool::driver {

struct ListenOptions {
  int backlog = 1024;
  // SO_REUSEPORT: several loops (one per thread) may listen on one port.
  bool reuse_port = false;
};

// Called for each accepted connection, or with the error accept(2) gave
// (out of file descriptors, say); the listener keeps listening after one.
using AcceptCallback =
    absl::AnyInvocable<void(absl::StatusOr<std::unique_ptr<Stream>>)>;

class Listener {
 public:
  virtual ~Listener() = default;
  // The bound address, with the real port when port 0 was asked for.
  virtual const Address& address() const = 0;
  virtual void Close() = 0;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_LISTENER_H_
