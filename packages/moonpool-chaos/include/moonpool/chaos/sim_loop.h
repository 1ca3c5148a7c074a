// SimLoop is the deterministic simulated driver::Loop: virtual time, one
// seeded random source for every choice, simulated hosts with TCP-like
// streams, the fault plan of ChaosConfig, an integrity checker on every
// stream, and an event trace whose hash proves a run reproducible.
//
// What it is not: a model of TCP's congestion control, of IP, or of real
// socket buffer sizes. It models what the transport can observe through the
// Loop interface: order, reliability while open, latency, a bounded kernel
// buffer per direction, backpressure, FIN, reset, and the faults.
//
// The model in short:
//   - Time is an integer count of nanoseconds since `options.start`. It moves
//     only between turns, and only by jumping to the next scheduled event when
//     nothing is ready to run; Now() never reads a clock. Within a callback it
//     is constant.
//   - One turn: (1) the events due now (timers, network deliveries), in
//     (time, sequence) order, except those scheduled during this phase; (2)
//     the work posted before step 2 began, in the order posted (work it posts
//     waits for the next turn, after that turn's step 1: a chain of posts
//     cannot starve the network); (3) the turn-end handlers. A timer started
//     for a time not in the future fires in step 1 of the next turn.
//   - Streams: Write hands bytes to a per-direction "kernel" of
//     ChaosConfig::kernel_buffer_bytes (send buffer plus the peer's receive
//     buffer); what does not fit is queued in the stream and reported by
//     OnWritten as the reader makes room. Bytes written in one turn leave as
//     one segment after a latency drawn per segment; segments of a direction
//     arrive in order. Reads deliver what has arrived, as the reader asks.
//   - Nothing here reads a real clock, a socket or an unseeded random
//     source, and no decision depends on the iteration order of a hashed
//     container: hashed maps are used for lookups only.
//
// Integrity checker: every byte a stream's reader receives is compared with
// the byte its writer's kernel took at that offset (bit flips the fault plan
// made are recorded and accounted for). A lost, duplicated, reordered or
// unaccounted-for changed byte on a stream that reports itself open is a
// violation: violations() lists them and CheckInvariants() returns Internal.
// So are Always assertions that failed during the run.
//
// Threads: a SimLoop, its hosts and everything made from them belong to one
// thread. While a SimLoop lives it is its thread's current AssertionRegistry
// (sometimes.h). Buggify (driver::Loop::Buggify) is the SimLoop's own, and
// its hosts': with `buggify` on, decided from the seed as buggify.h says.
//
// Example:
//
//   SimLoop sim({.seed = 42, .chaos = ChaosConfig::Random(rng)});
//   SimHost& server_host = **sim.AddHost("10.0.0.2");
//   auto server = ServerTransport::Bind(server_host, server_host.Addr(4500));
//   ClientTransport client(sim);          // on the default host, 10.0.0.1
//   ... spawn work ...
//   sim.RunUntil(done, sim.Now() + absl::Seconds(60));
//   if (absl::Status s = sim.CheckInvariants(); !s.ok()) { report(s); }
//   uint64_t h = sim.trace().hash();      // same seed, same hash
#ifndef MOONPOOL_CHAOS_SIM_LOOP_H_
#define MOONPOOL_CHAOS_SIM_LOOP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/sim_host.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/chaos/trace.h"
#include "moonpool/driver/loop.h"

namespace moonpool::chaos {

struct SimLoopOptions {
  uint64_t seed = 1;
  ChaosConfig chaos = {};
  // The host the SimLoop's own Listen / Connect act for.
  std::string default_host = "10.0.0.1";
  // What Now() reads at the start (a fixed date keeps traces readable).
  absl::Time start = absl::FromUnixSeconds(1'700'000'000);
  TraceOptions trace = {};
  // Makes Buggify() (of the SimLoop and its hosts) answer from the seed;
  // off, it is always false. On, every site of KnownBuggifySites() is
  // declared as a coverage point "buggify.<site>" at the start.
  bool buggify = false;
  // With `buggify`: the chance that a site is enabled for the whole run
  // (decided the first time it is evaluated), and the chance that an
  // enabled site fires on each evaluation.
  double buggify_site_probability = 0.25;
  double buggify_fire_probability = 0.25;
  // Size suggested to StreamHandler::ReadBuffer.
  size_t read_buffer_bytes = 64 * 1024;
};

// One broken promise of a simulated stream.
struct IntegrityViolation {
  absl::Time time;
  uint64_t connection = 0;
  int direction = 0;  // 0: connector to acceptor, 1: back
  std::string what;
  std::string ToString() const;
};

// Mutations a test may plant in the next segment put on the wire, without
// telling the checker, to prove that the checker catches them.
enum class PlantedFault { kNone, kDropByte, kDuplicateByte, kFlipUnrecorded };

class SimLoop final : public driver::Loop {
 public:
  explicit SimLoop(SimLoopOptions options = {});
  // Destroys the tasks of every host's scopes, then posted work unrun, then
  // the network. Timers, streams and listeners must be gone by then.
  ~SimLoop() override;

  // ---- Hosts.
  // Adds a host with IPv4 or IPv6 literal `ip` ("10.0.0.2", "::2").
  // InvalidArgument for a bad literal, AlreadyExists for a known one.
  [[nodiscard]] absl::StatusOr<SimHost*> AddHost(absl::string_view ip);
  // The host with that IP, or null.
  SimHost* FindHost(absl::string_view ip);
  // The host the SimLoop's own Listen / Connect use (options.default_host).
  SimHost& default_host();
  // Crashes the host abruptly (see sim_host.h). NotFound for an unknown IP.
  [[nodiscard]] absl::Status KillHost(absl::string_view ip);
  // Brings a killed host back: Listen and Connect work again.
  [[nodiscard]] absl::Status RestartHost(absl::string_view ip);

  // ---- Names: the simulated resolver that Loop::Resolve asks (of the
  // SimLoop and of every host).
  // Makes `name` resolve to `ips` (IP literals, answered in this order; the
  // hosts need not exist, a connect to a missing one is refused), replacing
  // what it resolved to before; an empty list removes the name. A lookup
  // takes one round trip of the latency plan, and reads the table when it
  // answers, so a change between two connects is seen by the second.
  // Unknown names answer NotFound. "localhost" answers the asking host's
  // own IP unless it is set here. The faults resolve_failed_probability and
  // resolve_slow_probability of ChaosConfig apply per lookup of a name
  // (coverage points fault.resolve_failed, fault.resolve_slow). Names are
  // case-insensitive. InvalidArgument for a bad name or literal.
  [[nodiscard]] absl::Status SetHostName(absl::string_view name,
                                         std::vector<std::string> ips);

  // ---- Faults.
  const ChaosConfig& chaos() const;
  // Replaces the plan from now on (a quiet phase sets ChaosConfig{}).
  void set_chaos(const ChaosConfig& config);
  // Test hook: the next segment of at least two bytes put on the wire gets
  // `fault`, hidden from the checker.
  void TestOnlyPlantFault(PlantedFault fault);

  // ---- Observation.
  uint64_t seed() const;
  const Trace& trace() const;
  // A hash of every byte put on the simulated wire (after the faults), in
  // the order segments left, with their connection and direction. The
  // trace hash covers sizes and times; this covers contents, so two runs
  // of a seed that agree on both sent the same bytes (with TLS: the same
  // ciphertext, keys and randoms included).
  uint64_t wire_hash() const;
  // Appends a kUser record (workloads mark their own events).
  void TraceUser(uint64_t a, uint64_t b = 0, uint64_t c = 0);
  AssertionRegistry& assertions();
  const std::vector<IntegrityViolation>& violations() const;
  // OK, or Internal naming the first integrity violation or failed Always
  // and how many there were.
  [[nodiscard]] absl::Status CheckInvariants() const;
  // Events scheduled (timers armed, bytes in flight, connects under way).
  size_t pending_events() const;
  // Connections not yet fully closed.
  size_t live_connections() const;
  // The simulation's random source (the same one Random() draws from).
  SimRandom& random_source();

  // ---- driver::Loop, acting for the default host.
  absl::Time Now() const override;
  uint64_t Random() override;
  // OpenSSL's randomness while a TLS stream of this simulation (on any of
  // its hosts) works: bytes from a stream derived from the seed apart from
  // Random()'s, so a TLS run replays (its keys, hello randoms and nonces
  // are the same each time) and a run without TLS draws what it drew
  // before. Each fill is a trace record (kTlsRandom, its size). Never use
  // a SimLoop for real traffic: these keys are a function of the seed.
  bool FillTlsRandom(absl::Span<unsigned char> out) override;
  // Certificates are checked against the virtual time, which starts at
  // options.start (2023-11-14 by default).
  absl::Time WallTime() const override;
  bool Buggify(absl::string_view site) override;
  // Recorded in this simulation's assertion registry: a false one fails the
  // run (the runner's invariants list it as "always.<name>").
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
  // Runs until Stop() or until nothing is scheduled: no event, no posted
  // work, no turn-end handler.
  void Run() override;
  // Runs until done() (checked after every turn), or until the next event
  // lies beyond `deadline` (time then jumps to `deadline`), or until nothing
  // is scheduled; returns done().
  bool RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  void Stop() override;

 private:
  std::unique_ptr<internal::SimCore> core_;
};

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SIM_LOOP_H_
