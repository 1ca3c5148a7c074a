// OutputHandoff moves a protocol Connection's output into a Stream: the
// write half of every driver of a Connection (the client's Peer, the
// server's connections), kept in one place.
//
// The protocol keeps its output until the kernel has taken it, because a
// request counts as written only then (connection.h). The Stream copies
// whatever the kernel does not take at once into its own queue, so the
// handoff gives it slices of at most `max_slice` bytes, and only when the
// stream has nothing queued: handing over all of a large output (sixteen
// 1 MiB replies, say) would copy most of it once more, and hold it twice.
//
// Example, in a StreamHandler that drives `connection` over `stream`:
//
//   OutputHandoff handoff;
//   absl::Status s = handoff.Flush(connection, stream, 256 << 10);
//   if (!s.ok()) connection.OnTransportClosed(s, now);
//   ...
//   void OnWritten(size_t n) override { handoff.OnWritten(connection, n); }
#ifndef MOONPOOL_DRIVER_OUTPUT_HANDOFF_H_
#define MOONPOOL_DRIVER_OUTPUT_HANDOFF_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "moonpool/driver/stream.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::driver {

class OutputHandoff {
 public:
  // Hands the connection's output to `stream` in slices of at most
  // `max_slice` bytes, while the kernel takes each slice whole; stops at
  // the first slice it does not (the stream queues the rest and reports it
  // through OnWritten) and does nothing while earlier bytes are queued.
  // What the kernel takes is consumed from the connection at once. Returns
  // the stream's error when it is broken (the caller closes the
  // connection).
  // `first_slice` bounds the first slice alone (a Buggify site splits a
  // frame's header across writes with 1).
  [[nodiscard]] absl::Status Flush(protocol::Connection& connection,
                                   Stream& stream, size_t max_slice,
                                   size_t first_slice = SIZE_MAX);
  // The stream reported `n` more of the handed bytes taken by the kernel.
  void OnWritten(protocol::Connection& connection, size_t n) {
    connection.ConsumeOutput(n);
    handed_off_ -= n;
  }
  // A new stream: nothing is handed to it.
  void Reset() { handed_off_ = 0; }

  // Bytes handed to the stream and not yet taken by the kernel.
  size_t handed_off() const { return handed_off_; }

 private:
  size_t handed_off_ = 0;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_OUTPUT_HANDOFF_H_
