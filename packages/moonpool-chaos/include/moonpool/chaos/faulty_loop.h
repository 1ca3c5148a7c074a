// FaultyLoop is the real-socket variant of the simulation's fault plan: a
// driver::Loop that wraps another Loop (a UvLoop in practice) and applies a
// ChaosConfig to the streams it hands out, those from Connect and those its
// listeners accept. Time, timers, posted work, turn ends, Random() and
// running are the inner loop's, unchanged, and so is Buggify (false, for a
// UvLoop).
//
// It is not a simulation: time is real, the kernel decides how bytes are
// split, and a seed fixes the fault decisions (one SimRandom, drawn in the
// order the program asks) but not the run. Use it to show that code written
// against driver::Loop survives the faults on real sockets and between real
// processes; use SimLoop to reproduce a failure.
//
// How each fault of ChaosConfig is applied (the opportunity is named):
//   - clog_probability + stall_probability, per Write: the write's bytes
//     (and every later write's, in order) are held for a duration in
//     [stall_min, stall_max], then written; a delay, not a failure.
//   - latency.tail_probability, per Write: the same, for Exponential(
//     tail_mean, max). The base latency (min, typical) is the network's own.
//   - partial_write_probability, per Write: the inner stream is given a
//     random prefix; the rest is written on a later turn.
//   - short_read_probability, per read: the handler's ReadBuffer span is
//     cut to a random prefix, so the kernel delivers fewer bytes.
//   - reset_probability, per Write and per read: the connection is closed
//     under the stream; on a later turn its handler gets OnWriteError
//     (if bytes were queued) and OnReadEnd (if reading), both Unavailable,
//     and later Writes fail with Unavailable. The peer sees its connection
//     end (EOF, or ECONNRESET when bytes were unread): the kernel, not this
//     shim, decides what a remote process observes.
//   - connect_refused_probability, per Connect: no connect is made; the
//     callback gets Unavailable on a later turn.
//   - connect_hang_probability, per Connect: no connect is made and the
//     callback never runs (the caller's connect timeout ends it).
//   - half_close_probability, bit_flip_probability, kernel_buffer_bytes,
//     the resolver's faults and the base latency are not applied; Resolve
//     is the inner loop's, unchanged.
// Every Stream and Loop rule of stream.h and loop.h holds: no callback
// inside the call that started it, none after Close or destruction, and
// OnWritten counts exactly the bytes that Write queued, in order.
//
// Ownership: FaultyLoop borrows the inner loop, which must outlive it.
// Streams, listeners and timers made through it must be destroyed before
// it (the Loop rule). Loop's thread only.
//
// Example:
//
//   driver::UvLoop uv;
//   FaultyLoop loop(uv, {.seed = 7, .chaos = ChaosConfig::Random(rng)});
//   transport::ClientTransport client(loop);       // the transport cannot tell
//   ...
//   loop.set_chaos(ChaosConfig::None());           // a quiet phase
//   loop.faults().resets;                          // what was injected
#ifndef MOONPOOL_CHAOS_FAULTY_LOOP_H_
#define MOONPOOL_CHAOS_FAULTY_LOOP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/driver/loop.h"

namespace moonpool::chaos {

struct FaultyLoopOptions {
  // Seed of the fault decisions.
  uint64_t seed = 1;
  ChaosConfig chaos = {};
};

// How many faults of each kind were injected, and the opportunities.
struct FaultCounts {
  uint64_t connects = 0;          // Connect calls
  uint64_t accepts = 0;           // streams accepted through a listener
  uint64_t writes = 0;            // Write calls that wrote bytes
  uint64_t delays = 0;            // writes held (stall, clog, latency tail)
  uint64_t partial_writes = 0;    // writes cut to a prefix
  uint64_t short_reads = 0;       // reads into a cut ReadBuffer span
  uint64_t resets = 0;            // connections reset
  uint64_t connects_refused = 0;  // connects failed with Unavailable
  uint64_t connects_hung = 0;     // connects never answered

  // "delays=3 partial_writes=10 ..." (not load bearing).
  std::string ToString() const;
};

namespace internal {
class FaultyStream;
}  // namespace internal

class FaultyLoop final : public driver::Loop {
 public:
  FaultyLoop(driver::Loop& inner, FaultyLoopOptions options);
  ~FaultyLoop() override;

  // Replaces the fault plan from now on; faults already decided (bytes
  // held, a reset on its way) still happen.
  void set_chaos(const ChaosConfig& chaos) { chaos_ = chaos; }
  const ChaosConfig& chaos() const { return chaos_; }
  const FaultCounts& faults() const { return faults_; }
  driver::Loop& inner() { return inner_; }

  absl::Time Now() const override;
  uint64_t Random() override;
  // The inner loop's: a UvLoop leaves TLS to OpenSSL's own randomness and
  // the system clock.
  bool FillTlsRandom(absl::Span<unsigned char> out) override;
  absl::Time WallTime() const override;
  bool Buggify(absl::string_view site) override;
  void Always(bool held, absl::string_view name,
              absl::string_view detail) override;
  std::unique_ptr<driver::Timer> CreateTimer(
      absl::AnyInvocable<void()> on_fire) override;
  void Post(absl::AnyInvocable<void()> fn) override;
  void ScheduleTurnEnd(driver::TurnEndHandler* handler) override;
  void CancelTurnEnd(driver::TurnEndHandler* handler) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<driver::Listener>> Listen(
      const driver::Address& address, const driver::ListenOptions& options,
      driver::AcceptCallback on_accept) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<driver::Stream>> Connect(
      const driver::Address& address,
      driver::ConnectCallback on_connected) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<driver::Resolution>> Resolve(
      absl::string_view host, uint16_t port,
      driver::ResolveCallback done) override;
  void Run() override;
  bool RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  void Stop() override;

 private:
  friend class internal::FaultyStream;

  driver::Loop& inner_;
  ChaosConfig chaos_;
  SimRandom rng_;
  FaultCounts faults_;
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_FAULTY_LOOP_H_
