#include "moonpool/chaos/faulty_loop.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "faulty_stream.h"

namespace moonpool::chaos {

std::string FaultCounts::ToString() const {
  return absl::StrFormat(
      "connects=%d accepts=%d writes=%d delays=%d partial_writes=%d "
      "short_reads=%d resets=%d connects_refused=%d connects_hung=%d",
      connects, accepts, writes, delays, partial_writes, short_reads, resets,
      connects_refused, connects_hung);
}

FaultyLoop::FaultyLoop(driver::Loop& inner, FaultyLoopOptions options)
    : inner_(inner), chaos_(options.chaos), rng_(options.seed) {}

// Tasks spawned through this loop are registered with it, not the inner
// one: destroy them while the streams and timers they own can still close.
FaultyLoop::~FaultyLoop() { DestroyTasks(); }

absl::Time FaultyLoop::Now() const { return inner_.Now(); }
uint64_t FaultyLoop::Random() { return inner_.Random(); }
bool FaultyLoop::FillTlsRandom(absl::Span<unsigned char> out) {
  return inner_.FillTlsRandom(out);
}
absl::Time FaultyLoop::WallTime() const { return inner_.WallTime(); }

void FaultyLoop::Always(bool held, absl::string_view name,
                        absl::string_view detail) {
  inner_.Always(held, name, detail);
}

bool FaultyLoop::Buggify(absl::string_view site) {
  return inner_.Buggify(site);
}

std::unique_ptr<driver::Timer> FaultyLoop::CreateTimer(
    absl::AnyInvocable<void()> on_fire) {
  return inner_.CreateTimer(std::move(on_fire));
}

void FaultyLoop::Post(absl::AnyInvocable<void()> fn) {
  inner_.Post(std::move(fn));
}

void FaultyLoop::ScheduleTurnEnd(driver::TurnEndHandler* handler) {
  inner_.ScheduleTurnEnd(handler);
}

void FaultyLoop::CancelTurnEnd(driver::TurnEndHandler* handler) {
  inner_.CancelTurnEnd(handler);
}

absl::StatusOr<std::unique_ptr<driver::Listener>> FaultyLoop::Listen(
    const driver::Address& address, const driver::ListenOptions& options,
    driver::AcceptCallback on_accept) {
  // The inner listener is returned as is: only its streams change.
  return inner_.Listen(
      address, options,
      [this, on_accept = std::move(on_accept)](
          absl::StatusOr<std::unique_ptr<driver::Stream>> accepted) mutable {
        if (!accepted.ok()) {
          on_accept(std::move(accepted));
          return;
        }
        ++faults_.accepts;
        auto stream = std::make_unique<internal::FaultyStream>(
            *this, (*accepted)->peer_address());
        stream->Attach(std::move(*accepted), /*connected=*/true);
        on_accept(std::unique_ptr<driver::Stream>(std::move(stream)));
      });
}

absl::StatusOr<std::unique_ptr<driver::Stream>> FaultyLoop::Connect(
    const driver::Address& address, driver::ConnectCallback on_connected) {
  ++faults_.connects;
  auto stream = std::make_unique<internal::FaultyStream>(*this, address);
  if (rng_.Bernoulli(chaos_.connect_refused_probability)) {
    ++faults_.connects_refused;
    stream->Refuse(std::move(on_connected));
    return stream;
  }
  if (rng_.Bernoulli(chaos_.connect_hang_probability)) {
    ++faults_.connects_hung;
    return stream;  // on_connected is dropped: it never runs
  }
  // The inner stream, owned by `stream`, holds the callback; it never runs
  // after the inner stream is closed, so `raw` outlives every call.
  internal::FaultyStream* raw = stream.get();
  absl::StatusOr<std::unique_ptr<driver::Stream>> inner =
      inner_.Connect(address, [raw, on_connected = std::move(on_connected)](
                                  absl::Status status) mutable {
        raw->OnConnected(status);
        on_connected(std::move(status));
      });
  if (!inner.ok()) return inner.status();
  stream->Attach(std::move(*inner), /*connected=*/false);
  return stream;
}

absl::StatusOr<std::unique_ptr<driver::Resolution>> FaultyLoop::Resolve(
    absl::string_view host, uint16_t port, driver::ResolveCallback done) {
  return inner_.Resolve(host, port, std::move(done));
}

void FaultyLoop::Run() { inner_.Run(); }

bool FaultyLoop::RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return inner_.RunUntil(done, deadline);
}

void FaultyLoop::Stop() { inner_.Stop(); }

}  // namespace moonpool::chaos
