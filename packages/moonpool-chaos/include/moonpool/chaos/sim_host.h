// SimHost is one simulated machine of a SimLoop, seen as a driver::Loop: its
// Listen binds on this host's address and its Connect leaves from it; time,
// timers, posted work, turn ends and running are the SimLoop's, shared by
// every host, and so are Buggify decisions. So a ClientTransport on one host
// and a ServerTransport on another run on one SimLoop in one thread:
//
//   SimLoop sim({.seed = 7});
//   SimHost& a = **sim.AddHost("10.0.0.2");
//   SimHost& b = **sim.AddHost("10.0.0.3");
//   auto server = ServerTransport::Bind(b, b.Addr(4500));
//   ClientTransport client(a);
//
// The SimLoop owns its hosts; a host lives until the SimLoop is destroyed.
// Tasks spawned in a TaskScope of a host belong to that host's Loop and are
// destroyed with the SimLoop. Everything made through a host (timers,
// streams, listeners) must be destroyed before the SimLoop.
//
// Killing a host (SimLoop::KillHost) models a crashed process: its streams
// are reset (their peers see Unavailable), its listeners vanish, its timers
// never fire again and it calls back nothing more; Listen and Connect fail
// with Unavailable until SimLoop::RestartHost. The objects themselves stay
// owned by whoever made them, who destroys them (the dead process's state)
// and makes new ones after the restart.
#ifndef MOONPOOL_CHAOS_SIM_HOST_H_
#define MOONPOOL_CHAOS_SIM_HOST_H_

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/loop.h"

namespace moonpool::chaos {

class SimLoop;
namespace internal {
class SimCore;
struct HostState;
}  // namespace internal

class SimHost final : public driver::Loop {
 public:
  ~SimHost() override;

  // The host's IP with port 0.
  const driver::Address& address() const;
  // The host's IP with `port`.
  driver::Address Addr(uint16_t port) const { return address().WithPort(port); }
  // False between KillHost and RestartHost.
  bool up() const;
  // Index of the host in its SimLoop (0 is the default host); in traces.
  uint32_t id() const;

  absl::Time Now() const override;
  uint64_t Random() override;
  // The SimLoop's (sim_loop.h): TLS randomness from the seed, and the
  // virtual time as the calendar.
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
  friend class internal::SimCore;
  SimHost(internal::SimCore* core, internal::HostState* state);
  // Destroys the tasks of this host's scopes (the SimLoop's destructor).
  void DestroyHostTasks() { DestroyTasks(); }

  internal::SimCore* const core_;
  internal::HostState* const state_;
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SIM_HOST_H_
