// TlsStream is a Stream that carries TLS 1.3 over another Stream (DESIGN.md
// section 2): OpenSSL works on memory buffers, the wrapped Stream moves the
// ciphertext, and the handler above sees plaintext through the same Stream
// interface as any other. So a UvLoop socket, a FaultyLoop's faulty one and
// a SimLoop's simulated one all carry TLS, and Peer and ServerTransport use
// it without knowing which.
//
//   // After loop.Connect(...) reported OK for `raw`:
//   auto tls = TlsStream::Connect(loop, std::move(raw), context, "db-1",
//       [&](absl::Status handshake) { ... });
//
// The handshake starts at once and ends in exactly one call of
// `on_handshake`: OK, after which the stream is usable like any Stream
// (SetHandler, StartReading, Write), and peer_identity() is set when the
// peer presented a verified certificate; or the failure, after which the
// stream is closed. Failures: Unauthenticated when a certificate fails
// verification (unknown CA, expired, wrong name) or a required one is
// missing; DeadlineExceeded when the handshake outlives the context's
// handshake_timeout; Unavailable for the rest (the peer sent an alert, is not
// speaking TLS, closed or reset the connection, or offered no ALPN
// "moonpool"). Each message says which, with OpenSSL's reason.
//
// After the handshake: a record that fails authentication (a flipped bit)
// ends reading with DataLoss and is never delivered; the peer's close_notify
// is an OK end of stream; an end of stream without it (truncation) is
// Unavailable. Shutdown() sends close_notify after what is queued.
//
// Write accounting: Write encrypts at once and returns how many plaintext
// bytes the wrapped stream took whole (their records written); OnWritten
// reports the rest as their records are written. queued_write_bytes() is the
// wrapped stream's queued ciphertext plus plaintext held before the
// handshake. Writes made before on_handshake are held and sent after it.
//
// Ownership: the TlsStream owns the wrapped Stream and the Loop timer of
// its handshake; it borrows the Loop and shares the context. It may be
// destroyed from inside any of its callbacks, on_handshake included.
// Loop's thread only.
#ifndef MOONPOOL_DRIVER_TLS_STREAM_H_
#define MOONPOOL_DRIVER_TLS_STREAM_H_

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer_identity.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/tls_context.h"

namespace moonpool::driver {

using HandshakeCallback = absl::AnyInvocable<void(absl::Status)>;

class TlsStream final : public Stream {
 public:
  // Client side over `transport`, which must be connected. `server_name`
  // overrides the context's (empty: the context's TlsConfig::server_name;
  // both empty: hostname verification is off, which only a test should
  // do). InvalidArgument when the context is a server's.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TlsStream>> Connect(
      Loop& loop, std::unique_ptr<Stream> transport,
      std::shared_ptr<const TlsContext> context, absl::string_view server_name,
      HandshakeCallback on_handshake);
  // Server side over an accepted `transport`. InvalidArgument when the
  // context is a client's.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TlsStream>> Accept(
      Loop& loop, std::unique_ptr<Stream> transport,
      std::shared_ptr<const TlsContext> context,
      HandshakeCallback on_handshake);

  ~TlsStream() override;

  void SetHandler(StreamHandler* handler) override;
  [[nodiscard]] absl::Status StartReading() override;
  void StopReading() override;
  [[nodiscard]] absl::StatusOr<size_t> Write(
      absl::Span<const char> bytes) override;
  size_t queued_write_bytes() const override;
  void Shutdown() override;
  void Close() override;
  const Address& local_address() const override;
  const Address& peer_address() const override;
  std::shared_ptr<const PeerIdentity> peer_identity() const override;

  bool handshake_done() const;
  // The negotiated cipher suite ("TLS_AES_128_GCM_SHA256"); empty before
  // the handshake.
  std::string cipher() const;

  class Impl;

 private:
  explicit TlsStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_TLS_STREAM_H_
