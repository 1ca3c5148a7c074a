// FaultyStream is the Stream FaultyLoop hands out: it owns the inner loop's
// stream, is that stream's handler, and applies the fault plan between it
// and the user's handler (see faulty_loop.h for which fault does what).
//
// Not API. Owned by the user like any Stream; it borrows its FaultyLoop.
#ifndef MOONPOOL_CHAOS_SRC_FAULTY_STREAM_H_
#define MOONPOOL_CHAOS_SRC_FAULTY_STREAM_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"

namespace moonpool::chaos {
class FaultyLoop;
}  // namespace moonpool::chaos

namespace moonpool::chaos::internal {

class FaultyStream final : public driver::Stream,
                           private driver::StreamHandler {
 public:
  // A stream with no connection yet: Attach gives it one. `peer` is what
  // peer_address() reports until then.
  FaultyStream(FaultyLoop& loop, const driver::Address& peer);
  ~FaultyStream() override;

  // Takes `inner` and becomes its handler. `connected`: accepted streams
  // are; connecting ones become so in OnConnected.
  void Attach(std::unique_ptr<driver::Stream> inner, bool connected);
  // The inner connect finished; called before the user's callback.
  void OnConnected(const absl::Status& status);
  // A refused connect: the callback gets Unavailable on a later turn.
  void Refuse(driver::ConnectCallback on_connected);

  // driver::Stream
  void SetHandler(driver::StreamHandler* handler) override;
  absl::Status StartReading() override;
  void StopReading() override;
  absl::StatusOr<size_t> Write(absl::Span<const char> bytes) override;
  size_t queued_write_bytes() const override;
  void Shutdown() override;
  void Close() override;
  const driver::Address& local_address() const override;
  const driver::Address& peer_address() const override;

 private:
  // driver::StreamHandler, for the inner stream.
  absl::Span<char> ReadBuffer(size_t suggested) override;
  void OnRead(size_t n) override;
  void OnReadEnd(absl::Status status) override;
  void OnWritten(size_t n) override;
  void OnWriteError(absl::Status status) override;

  // Calls the user's handler; false if that destroyed or closed this stream
  // (the caller must then not touch it).
  template <typename F>
  bool CallHandler(F&& f);

  absl::Duration DrawDelay();
  void Hold(absl::Span<const char> bytes);
  void ArmFlush();
  // flush_timer_: hands held bytes to the inner stream.
  void Flush();
  // The connection dies now; the handler hears of it on a later turn.
  void BeginReset();
  // fault_timer_: a reset's errors, or a refused connect's callback.
  void DeliverFault();

  FaultyLoop& loop_;
  std::unique_ptr<driver::Stream> inner_;
  driver::StreamHandler* handler_ = nullptr;
  driver::Address peer_;
  driver::Address local_;
  std::unique_ptr<driver::Timer> flush_timer_;
  std::unique_ptr<driver::Timer> fault_timer_;

  // Bytes the user wrote that the inner stream has not been given, in
  // order; none are sent before hold_until_.
  std::string held_;
  absl::Time hold_until_ = absl::InfinitePast();

  absl::Status broken_;  // why Write fails, once it does
  driver::ConnectCallback refused_callback_;
  bool connected_ = false;
  bool connect_failed_ = false;
  bool reset_ = false;
  bool reset_had_queued_ = false;
  bool reading_ = false;
  bool read_ended_ = false;
  bool write_failed_ = false;
  bool shutdown_ = false;
  bool shutdown_pending_ = false;  // Shutdown waits for held_ to go
  bool closed_ = false;
  bool short_read_ = false;  // the last ReadBuffer span was cut
  bool* dead_ = nullptr;     // set while a handler call is on the stack
};

}  // namespace moonpool::chaos::internal

#endif  // MOONPOOL_CHAOS_SRC_FAULTY_STREAM_H_
