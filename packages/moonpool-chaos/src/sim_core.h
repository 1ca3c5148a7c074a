// Private to SimLoop: the scheduler, the hosts and the simulated network
// that SimLoop and its SimHost facades share. See sim_loop.h for the model.
//
// Ownership: SimCore owns hosts, connections (both endpoints and both
// directions) and listener registrations. The objects handed to the user
// (SimTimer, SimStream, SimListener) are thin handles: a stream handle names
// its connection by id and side, and every scheduled network event names
// them the same way and looks the connection up when it fires. A connection
// is freed only between events (Reap), once both its ends are closed or
// dead, so a callback that closes its own stream never pulls memory out
// from under the code that called it.
#ifndef MOONPOOL_CHAOS_SRC_SIM_CORE_H_
#define MOONPOOL_CHAOS_SRC_SIM_CORE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/chaos/buggify.h"
#include "moonpool/chaos/chaos_config.h"
#include "moonpool/chaos/sim_host.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/chaos/trace.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/timer.h"

namespace moonpool::chaos::internal {

struct ListenerState;

struct HostState {
  uint32_t id = 0;
  driver::Address ip;  // port 0
  bool up = true;
  uint64_t incarnation = 0;  // bumped by each kill
  uint16_t next_port = 40000;
  absl::btree_map<uint16_t, ListenerState*> listeners;
  std::unique_ptr<SimHost> facade;
};

struct ListenerState {
  HostState* host = nullptr;
  driver::Address address;
  driver::AcceptCallback on_accept;
  bool closed = false;         // closed by the user, or its host was killed
  bool* alive_flag = nullptr;  // set while on_accept runs
};

// Event queue key: (virtual time, sequence). The sequence breaks ties in
// scheduling order, so the order is total and the same in every run.
struct EventKey {
  int64_t t_ns = 0;
  uint64_t seq = 0;
  friend bool operator<(const EventKey& a, const EventKey& b) {
    return a.t_ns != b.t_ns ? a.t_ns < b.t_ns : a.seq < b.seq;
  }
};

// One direction of a connection: the writer's kernel (bytes taken and not
// yet read), the wire, the reader's receive buffer, and the checker's
// record of what the writer's kernel took.
struct Pipe {
  size_t kernel_bytes = 0;  // taken by the kernel, not yet read (or dropped)
  std::string unsent;       // taken, not yet on the wire
  bool transmit_scheduled = false;
  int64_t clogged_until = 0;
  bool released = false;  // just out of a stall: no new fault draw
  int64_t last_arrival = 0;
  bool fin_pending = false;
  bool fin_sent = false;
  bool fin_arrived = false;
  bool dead = false;         // reset: nothing more moves
  bool reader_gone = false;  // the reader closed: nothing more is checked

  std::string recv;  // arrived, not yet read; from recv_head
  size_t recv_head = 0;

  // Checker: the bytes the kernel took from `delivered` on, and the bit
  // flips made in transit, by stream offset, in offset order.
  std::string expected;
  size_t expected_head = 0;
  uint64_t accepted = 0;
  uint64_t delivered = 0;
  uint64_t sent = 0;
  std::deque<std::pair<uint64_t, uint8_t>> flips;
  bool violated = false;
};

struct Endpoint {
  bool exists = false;  // the acceptor's end exists once the SYN arrived
  HostState* host = nullptr;
  driver::Address local;
  driver::Address peer;
  driver::StreamHandler* handler = nullptr;
  enum class Phase {
    kConnecting,
    kConnected,
    kFailed
  } phase = Phase::kConnecting;
  bool closed = false;  // by the user
  bool dead = false;    // its host was killed: silent from then on
  bool want_reading = false;
  bool read_ended = false;
  absl::Status broken;      // what Write returns from now on
  absl::Status read_error;  // delivered as OnReadEnd once reading
  std::string pending;      // the stream's own write queue
  bool shutdown_requested = false;
  bool read_scheduled = false;
  bool drain_scheduled = false;
  driver::ConnectCallback on_connected;
};

struct Connection {
  uint64_t id = 0;
  Endpoint ep[2];        // 0: the connector, 1: the acceptor
  Pipe pipe[2];          // pipe[w]: from ep[w] to ep[1 - w]
  bool reaping = false;  // on the reap list: freed after the current event
};

class SimCore final {
 public:
  SimCore(SimLoop* owner, SimLoopOptions options);
  ~SimCore();

  // Destroys tasks of every host, posted work and the network.
  void Shutdown();

  // ---- Hosts.
  absl::StatusOr<SimHost*> AddHost(absl::string_view ip);
  SimHost* FindHost(absl::string_view ip);
  HostState* default_host() { return hosts_.front().get(); }
  absl::Status KillHost(absl::string_view ip);
  absl::Status RestartHost(absl::string_view ip);

  // ---- Scheduler.
  absl::Time Now() const { return options_.start + absl::Nanoseconds(now_ns_); }
  int64_t now_ns() const { return now_ns_; }
  int64_t ToNs(absl::Time t) const;
  uint64_t LoopRandom();
  // driver::Loop::FillTlsRandom for every host: bytes from the TLS stream
  // of the seed (tls_rng_), never from rng_, so a run without TLS draws
  // what it drew before TLS existed.
  void FillTlsRandom(absl::Span<unsigned char> out);
  // driver::Loop::Buggify for every host (buggify.h has the model).
  bool Buggify(absl::string_view site);
  // Records an Always point of the layers below (driver::Loop::Always).
  void Always(bool held, absl::string_view name, absl::string_view detail) {
    assertions_.RecordAlways(name, held, detail);
  }
  EventKey Schedule(int64_t t_ns, absl::AnyInvocable<void()> fn);
  void Cancel(const EventKey& key);
  void Post(absl::AnyInvocable<void()> fn);
  void ScheduleTurnEnd(driver::TurnEndHandler* handler);
  void CancelTurnEnd(driver::TurnEndHandler* handler);
  void Run();
  bool RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline);
  void Stop() { stop_requested_ = true; }

  // ---- Factories (sim_timer.cc, sim_network.cc).
  std::unique_ptr<driver::Timer> CreateTimer(
      HostState* host, absl::AnyInvocable<void()> on_fire);
  absl::StatusOr<std::unique_ptr<driver::Listener>> Listen(
      HostState* host, const driver::Address& address,
      const driver::ListenOptions& options, driver::AcceptCallback on_accept);
  absl::StatusOr<std::unique_ptr<driver::Stream>> Connect(
      HostState* host, const driver::Address& address,
      driver::ConnectCallback on_connected);
  // The simulated resolver (sim_resolver.cc).
  absl::StatusOr<std::unique_ptr<driver::Resolution>> Resolve(
      HostState* host, absl::string_view name, uint16_t port,
      driver::ResolveCallback done);
  absl::Status SetHostName(absl::string_view name,
                           std::vector<std::string> ips);
  // A lookup's answer, read from the table when it is given.
  absl::StatusOr<std::vector<driver::Address>> LookUp(const HostState& host,
                                                      const std::string& name,
                                                      uint16_t port) const;
  int64_t DrawResolveLatency();
  uint64_t next_resolution_id = 1;

  // ---- Stream operations, for SimStream (sim_network.cc).
  Connection* Find(uint64_t id);
  void SetHandler(uint64_t id, int side, driver::StreamHandler* handler);
  absl::Status StartReading(uint64_t id, int side);
  void StopReading(uint64_t id, int side);
  absl::StatusOr<size_t> Write(uint64_t id, int side,
                               absl::Span<const char> bytes);
  size_t QueuedBytes(uint64_t id, int side);
  void Shutdown(uint64_t id, int side);
  void Close(uint64_t id, int side);
  void CloseListener(ListenerState* state);

  // ---- Observation.
  const SimLoopOptions& options() const { return options_; }
  ChaosConfig& chaos() { return options_.chaos; }
  SimRandom& rng() { return rng_; }
  Trace& trace() { return trace_; }
  void TraceEvent(TraceKind kind, uint64_t a = 0, uint64_t b = 0,
                  uint64_t c = 0) {
    trace_.Record(now_ns_, kind, a, b, c);
  }
  AssertionRegistry& assertions() { return assertions_; }
  const std::vector<IntegrityViolation>& violations() const {
    return violations_;
  }
  absl::Status CheckInvariants() const;
  uint64_t wire_hash() const { return wire_hash_; }
  size_t pending_events() const { return events_.size(); }
  size_t live_connections() const { return connections_.size() - reap_.size(); }
  void PlantFault(PlantedFault f) { planted_ = f; }
  int live_objects = 0;
  // Timer ids, in creation order: per loop, so that they name the same
  // timers in every run of a seed.
  uint64_t next_timer_id = 0;

 private:
  bool NothingReady() const { return posted_.empty() && turn_end_.empty(); }
  // One turn (see sim_loop.h). REQUIRES: something is scheduled.
  void Turn();
  void RunTurnEnd();
  void Reap();

  // ---- Network internals (sim_network.cc).
  void ScheduleTransmit(Connection& c, int w, int64_t at);
  void Transmit(uint64_t id, int w);
  void Arrive(uint64_t id, int w, std::string segment);
  void FinArrive(uint64_t id, int w);
  void ScheduleRead(Connection& c, int r);
  void ServiceRead(uint64_t id, int r);
  void ScheduleDrain(Connection& c, int w);
  void Drain(uint64_t id, int w);
  void ScheduleWriteError(Connection& c, int side);
  void Accept(Connection& c, int w, absl::Span<const char> bytes);
  void MaybeFin(Connection& c, int w);
  void SynArrive(uint64_t id, driver::Address target);
  void ConnectDone(uint64_t id, absl::Status status);
  void ResetEndpoint(Connection& c, int side, const absl::Status& status);
  void ResetConnection(Connection& c, const absl::Status& status);
  void HalfClose(Connection& c, int w);
  int64_t DrawLatency();
  // Folds a segment's bytes, as put on the wire, into wire_hash_.
  void HashWire(uint64_t dir, absl::string_view bytes);
  void CheckDelivered(Connection& c, int w, absl::Span<const char> bytes);
  void CheckEnd(Connection& c, int w);
  void Violation(Connection& c, int w, std::string what);
  void MaybeReap(Connection& c);

  SimLoop* const owner_;
  SimLoopOptions options_;
  SimRandom rng_;
  // OpenSSL's randomness while this simulation's TLS streams work: derived
  // from the seed apart from rng_ (see FillTlsRandom).
  SimRandom tls_rng_;
  Trace trace_;
  AssertionRegistry assertions_;
  ScopedAssertionRegistry registry_scope_;
  // A site's decision for the run, and what its evaluations record.
  struct BuggifySite {
    bool enabled = false;
    uint64_t hash = 0;  // of the name, for the trace
    std::string point;  // "buggify.<site>"
  };
  absl::flat_hash_map<std::string, BuggifySite> buggify_sites_;  // lookup only

  int64_t now_ns_ = 0;
  uint64_t next_seq_ = 0;
  absl::btree_map<EventKey, absl::AnyInvocable<void()>> events_;
  std::vector<absl::AnyInvocable<void()>> posted_;
  std::vector<absl::AnyInvocable<void()>> draining_;
  std::vector<driver::TurnEndHandler*> turn_end_;
  std::vector<driver::TurnEndHandler*> turn_end_running_;
  bool stop_requested_ = false;
  bool running_ = false;
  bool shutting_down_ = false;

  std::vector<std::unique_ptr<HostState>> hosts_;                // by id
  absl::flat_hash_map<driver::Address, HostState*> host_by_ip_;  // lookup
  // The resolver's table: a lower-case name to its IPs (port 0), in order.
  absl::flat_hash_map<std::string, std::vector<driver::Address>> names_;

  uint64_t next_connection_id_ = 1;
  // Ordered by id: KillHost walks it, and must walk it the same way each run.
  absl::btree_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<uint64_t> reap_;

  std::vector<IntegrityViolation> violations_;
  // Every segment's bytes in the order they left (SimLoop::wire_hash).
  uint64_t wire_hash_ = 0xCBF29CE484222325ull;
  PlantedFault planted_ = PlantedFault::kNone;
};

}  // namespace moonpool::chaos::internal

#endif  // MOONPOOL_CHAOS_SRC_SIM_CORE_H_
