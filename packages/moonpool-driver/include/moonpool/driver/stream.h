// Stream is one TCP connection as the Loop interface gives it: reads into
// buffers the handler provides, writes that take what the kernel accepts at
// once and queue the rest, shutdown and close.
//
// Ownership and lifetimes (libuv's rules, kept by every Loop):
//   - The Stream is owned by whoever called Connect or received it from a
//     Listener, through std::unique_ptr. Destroying it closes it.
//   - After Close() returns (or the Stream is destroyed), no handler method
//     is called again; writes still queued are dropped. Memory the
//     implementation needs until the OS is done is its own business.
//   - A call that fails up front returns a Status and calls nothing back;
//     nothing is called back from inside the call that started it.
//   - The handler is borrowed: it must outlive the Stream or be replaced.
#ifndef MOONPOOL_DRIVER_STREAM_H_
#define MOONPOOL_DRIVER_STREAM_H_

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/peer_identity.h"

namespace moonpool::driver {

// Receives a Stream's news. All calls come from the loop's thread.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;

  // Where the next read goes: a non-empty span, valid until OnRead or
  // OnReadEnd. `suggested` is the size the loop would like.
  virtual absl::Span<char> ReadBuffer(size_t suggested) = 0;
  // `n` > 0 bytes were read into the start of the last ReadBuffer span.
  virtual void OnRead(size_t n) = 0;
  // No more bytes will be read: OK at end of stream (the peer shut down its
  // side), otherwise the error (reset, timeout, ...). Writing may still work
  // after an OK end.
  virtual void OnReadEnd(absl::Status status) = 0;
  // The kernel took `n` more bytes of those Write queued, in order.
  virtual void OnWritten(size_t n) = 0;
  // A queued write failed: the connection is broken; nothing more will be
  // written and no more OnWritten follows.
  virtual void OnWriteError(absl::Status status) = 0;
};

class Stream {
 public:
  virtual ~Stream() = default;

  // Sets or replaces the handler. REQUIRES: before StartReading or Write.
  virtual void SetHandler(StreamHandler* handler) = 0;

  // Starts delivering reads; FailedPrecondition when closed.
  [[nodiscard]] virtual absl::Status StartReading() = 0;
  // Stops asking the kernel for bytes (backpressure); StartReading resumes.
  virtual void StopReading() = 0;

  // Writes `bytes`, in order after anything queued. Returns how many the
  // kernel took at once; the rest are copied and queued as one gathered
  // write, and reported later by OnWritten. FailedPrecondition after
  // Shutdown or Close; the OS error if the connection is already broken
  // (then nothing is queued).
  [[nodiscard]] virtual absl::StatusOr<size_t> Write(
      absl::Span<const char> bytes) = 0;
  // Writes `pieces` in order, as Write would their concatenation: a
  // gathered write, so that bytes kept in several places (a frame's header
  // in one buffer, its large payload where its owner keeps it) reach the
  // kernel without first being copied together. Returns how many bytes the
  // kernel took at once; only the rest is copied and queued. The default
  // writes the pieces one by one through Write, which is correct for any
  // Stream (a piece after one the kernel did not take whole queues behind
  // it); a Stream that can hand the kernel several buffers in one call
  // (UvLoop's: writev) overrides it.
  [[nodiscard]] virtual absl::StatusOr<size_t> WriteGathered(
      absl::Span<const absl::Span<const char>> pieces) {
    size_t taken = 0;
    for (absl::Span<const char> piece : pieces) {
      absl::StatusOr<size_t> n = Write(piece);
      if (!n.ok()) return n.status();
      taken += *n;
    }
    return taken;
  }
  // Bytes queued and not yet taken by the kernel.
  virtual size_t queued_write_bytes() const = 0;

  // Sends FIN once the queued bytes are written. Reading goes on.
  virtual void Shutdown() = 0;
  // Closes now. Idempotent. See the lifetime rules above.
  virtual void Close() = 0;

  virtual const Address& local_address() const = 0;
  virtual const Address& peer_address() const = 0;
  // Who the peer proved to be: set by a TLS stream (tls_stream.h) whose
  // peer presented a verified certificate; nullptr for any other stream.
  virtual std::shared_ptr<const PeerIdentity> peer_identity() const {
    return nullptr;
  }
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_STREAM_H_
