#include "workloads/ping_pong_workload.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/protocol/outcome_table.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/server_transport.h"
#include "workloads/workload_tls.h"

namespace moonpool::chaos {
namespace {

using driver::Task;
using driver::TaskScope;
using transport::ClientTransport;
using transport::IncomingMessage;
using transport::RequestOptions;
using transport::ServerOptions;
using transport::ServerTransport;

constexpr uint16_t kPort = 4500;
// In the quiet phase each client sends each server, at once: a plain
// idempotent request, a plain non-idempotent one, and one asking for an
// error reply (after a one-way message).
constexpr size_t kQuietRequestsPerServer = 3;
// The servers' bound on requests received and not yet answered, below what
// the clients can have in flight together, so that backpressure (pausing
// reads) happens in every run, and the bound is checked.
constexpr size_t kServerMaxInFlight = 4;

// Declared up front so that a kind never seen shows as a coverage hole.
constexpr absl::string_view kOutcomePoints[] = {
    "outcome.reply",
    "outcome.error_reply",
    "outcome.deadline_exceeded",
    "outcome.unavailable",
    "outcome.aborted_maybe_delivered",
    "outcome.idempotent_retried_success",
    "one_way.delivered",
    "restart.graceful",
    "restart.abrupt",
    // Exactly-once requests (runs that send them): the server answered a
    // duplicate of a running and of a completed request from its records,
    // answered a resend whose record a bound had forgotten, and a client
    // sent one again with the same id.
    "exactly_once.duplicate_running",
    "exactly_once.duplicate_completed",
    "exactly_once.forgotten_answered",
    "exactly_once.resent",
    "exactly_once.reply",
};

// The codes a handler answers with when asked for an error reply: none of
// them is one the transport makes up itself, so the client can tell the
// handler's answer from a transport outcome.
constexpr absl::StatusCode kHandlerErrorCodes[] = {
    absl::StatusCode::kNotFound,
    absl::StatusCode::kAlreadyExists,
    absl::StatusCode::kPermissionDenied,
    absl::StatusCode::kOutOfRange,
};

bool IsHandlerErrorCode(absl::StatusCode code) {
  for (absl::StatusCode c : kHandlerErrorCodes) {
    if (c == code) return true;
  }
  return false;
}

// The message of the error reply the handler gives request c<client>/<seq>.
std::string HandlerErrorMessage(int client, uint64_t seq) {
  return absl::StrCat("handler error for c", client, "/", seq);
}

enum class Kind : uint8_t {
  kPending,
  kReply,
  kDeadline,
  kUnavailable,
  kAborted,
  kCancelled
};

// How a request is sent: the third field of its payload.
enum class Mode : uint8_t { kPlain = 0, kIdempotent = 1, kExactlyOnce = 2 };

struct Record {
  int client = 0;
  uint64_t seq = 0;
  bool idempotent = false;
  bool exactly_once = false;
  bool quiet = false;
  // The code the handler must answer with; kOk: a plain reply.
  absl::StatusCode error = absl::StatusCode::kOk;
  // When the client called Request, and the deadline that gave it.
  absl::Time issued;
  absl::Time deadline;
  int outcomes = 0;
  Kind kind = Kind::kPending;
  absl::Status status;
  // Exactly-once: the server slot's incarnation when it was issued, and the
  // one its client's Peer had last shaken hands with (0: none yet); what
  // may change while it is outstanding, and allow an Aborted.
  uint64_t server_incarnation = 0;
  uint64_t peer_incarnation = 0;
};

// One one-way message a client sent ("o|<client>|<seq>").
struct OneWayRecord {
  int server = 0;
  bool quiet = false;
  int received = 0;
};

uint64_t Key(int client, uint64_t seq) {
  return (static_cast<uint64_t>(client) << 40) | seq;
}

// "q|<client>|<seq>|<mode>|<error code>",
// "r|<client>|<seq>|<server>|<inc>" and "o|<client>|<seq>".
struct Parsed {
  int client = -1;
  uint64_t seq = 0;
  bool idempotent = false;
  bool exactly_once = false;
  absl::StatusCode error = absl::StatusCode::kOk;
};

std::optional<Parsed> ParseRequest(absl::string_view p) {
  std::vector<absl::string_view> f = absl::StrSplit(p, '|');
  Parsed r;
  int mode = 0, code = 0;
  if (f.size() != 5 || f[0] != "q" || !absl::SimpleAtoi(f[1], &r.client) ||
      !absl::SimpleAtoi(f[2], &r.seq) || !absl::SimpleAtoi(f[3], &mode) ||
      !absl::SimpleAtoi(f[4], &code) || mode < 0 ||
      mode > static_cast<int>(Mode::kExactlyOnce)) {
    return std::nullopt;
  }
  r.idempotent = mode == static_cast<int>(Mode::kIdempotent);
  r.exactly_once = mode == static_cast<int>(Mode::kExactlyOnce);
  r.error = static_cast<absl::StatusCode>(code);
  if (r.error != absl::StatusCode::kOk && !IsHandlerErrorCode(r.error)) {
    return std::nullopt;
  }
  return r;
}

std::optional<Parsed> ParseOneWay(absl::string_view p) {
  std::vector<absl::string_view> f = absl::StrSplit(p, '|');
  Parsed r;
  if (f.size() != 3 || f[0] != "o" || !absl::SimpleAtoi(f[1], &r.client) ||
      !absl::SimpleAtoi(f[2], &r.seq)) {
    return std::nullopt;
  }
  return r;
}

struct ServerProcess {
  std::unique_ptr<ServerTransport> transport;
  std::unique_ptr<TaskScope> tasks;
};

struct ServerSlot {
  SimHost* host = nullptr;
  std::string ip;
  // What clients call it: a name ("server0.sim:4500") the simulated
  // resolver maps to `ip`, so every connect looks it up (and the resolver's
  // faults apply).
  driver::HostPort target;
  uint64_t incarnation = 0;
  std::unique_ptr<ServerProcess> process;
  // The exactly-once counters of its dead incarnations, summed.
  protocol::OutcomeTableStats exactly_once;
};

struct ClientSlot {
  SimHost* host = nullptr;
  std::unique_ptr<ClientTransport> transport;
  std::unique_ptr<TaskScope> tasks;
  uint64_t next_seq = 1;
  uint64_t next_one_way = 1;
  // Per server: one-way messages sent and not yet received (they may wait
  // in the peer's queue, beside the requests).
  std::vector<uint64_t> one_ways_unreceived;
};

// Everything one run holds; tasks point into it.
class PingPongRun {
 public:
  PingPongRun(SimLoop& sim, const PingPongOptions& o) : sim_(sim), o_(o) {}

  absl::Status Execute(WorkloadStats& stats);

 private:
  void Fail(absl::Status s) {
    if (failure_.ok()) failure_ = std::move(s);
  }
  absl::Status StartServer(int s);
  void StopServerNow(int s);
  Task<void> Serve(int s, ServerTransport& t);
  void ReceiveOneWay(int s, const IncomingMessage& m);
  void CheckDeadline(int s, const Parsed& q, const IncomingMessage& m);
  Task<void> Lane(int c, int lane);
  Task<void> OneRequest(int c, int server, Mode mode, absl::StatusCode error,
                        absl::Duration timeout, bool quiet);
  // Exactly-once: draws this run's switch and bounds (from a fork, so the
  // run's other draws are what they were before exactly-once existed).
  void DrawExactlyOnce();
  // The handler side's check of an exactly-once request: it runs at most
  // once per (client incarnation, correlation id).
  void CountExactlyOnceRun(int s, const Parsed& q, const IncomingMessage& m);
  // Whether an exactly-once request may end Aborted (see the header).
  void CheckExactlyOnceAborted(const Record& rec, int server,
                               const absl::Status& status);
  // Slot s's exactly-once counters over all its incarnations so far.
  protocol::OutcomeTableStats ExactlyOnceStats(int s) const;
  void ExactlyOnceCoverage();
  // With ChaosConfig::tls: the contexts of every server and client.
  absl::Status SetUpTls();
  void TlsCoverage();
  void SendOneWay(int c, int server, bool quiet);
  bool Lossy(const AssertionRegistry& reg) const;
  Task<void> Controller();
  Task<void> Monitor();
  void CheckBounds();
  void AccountServer(int s, const ServerProcess& p);
  uint64_t Pending() const { return issued_ - resolved_; }
  void Teardown();

  SimLoop& sim_;
  const PingPongOptions& o_;
  absl::Time start_;
  absl::Status failure_;
  std::vector<ServerSlot> servers_;
  std::vector<ClientSlot> clients_;
  std::unique_ptr<TaskScope> control_;
  absl::flat_hash_map<uint64_t, Record> records_;
  // Times each request id was handed to a server handler, across all
  // servers and incarnations: the at-most-once record lives here.
  absl::flat_hash_map<uint64_t, int> processed_;
  // Every one-way message sent (Send returned OK), and how often a server
  // handler got it.
  absl::flat_hash_map<uint64_t, OneWayRecord> one_ways_;
  uint64_t issued_ = 0, resolved_ = 0, replies_ = 0, aborted_ = 0;
  int lanes_done_ = 0;
  bool chaos_over_ = false;
  bool controller_done_ = true;
  bool graceful_ = false, abrupt_ = false;
  uint64_t restarts_ = 0;
  uint64_t server_keepalive_timeouts_ = 0, server_protocol_errors_ = 0;
  // Exactly-once (DrawExactlyOnce): whether this run sends any, the share
  // of its non-idempotent requests that are, and the servers' record bounds
  // (small in some runs, so that records are forgotten and resends of them
  // answered Aborted).
  SimRandom eo_rng_{0};
  bool eo_on_ = false;
  double eo_share_ = 0;
  bool eo_small_bounds_ = false;
  bool eo_slow_handlers_ = false;
  // Restarts (which end resends Aborted) three times rarer.
  bool eo_fewer_restarts_ = false;
  size_t eo_max_records_per_client_ = 0, eo_max_records_ = 0;
  // Handler runs of each exactly-once request, per (client incarnation,
  // correlation id) as the server names it, across every server and
  // incarnation; and the server incarnation whose handler first ran it
  // (its reply names it), per request key.
  absl::btree_map<std::pair<uint64_t, uint64_t>, int> eo_runs_;
  absl::btree_map<uint64_t, uint64_t> eo_ran_on_;
  // TLS (ChaosConfig::tls, read once at the start: the quiet phase's plan
  // has it off): the contexts, and what the servers and outcomes counted.
  bool tls_ = false;
  internal::WorkloadTls tls_contexts_;
  uint64_t tls_handshakes_ = 0, tls_handshake_failures_ = 0;
  uint64_t tls_record_failures_ = 0;
};

absl::Status PingPongRun::StartServer(int s) {
  ServerSlot& slot = servers_[s];
  ServerOptions so;
  so.drain_timeout = absl::Seconds(1);
  so.max_requests_in_flight = kServerMaxInFlight;
  so.connection.incarnation = ++slot.incarnation;
  if (tls_) so.tls = tls_contexts_.servers[s];
  if (eo_small_bounds_) {
    so.exactly_once.max_records_per_client = eo_max_records_per_client_;
    so.exactly_once.max_records = eo_max_records_;
  }
  absl::StatusOr<std::unique_ptr<ServerTransport>> t =
      ServerTransport::Bind(*slot.host, slot.host->Addr(kPort), so);
  if (!t.ok()) {
    return absl::InternalError(absl::StrCat("invariant server.bind: server ", s,
                                            " incarnation ", slot.incarnation,
                                            ": ", t.status().ToString()));
  }
  auto p = std::make_unique<ServerProcess>();
  p->transport = std::move(*t);
  p->tasks = std::make_unique<TaskScope>(*slot.host, [this](absl::Status e) {
    Fail(absl::InternalError(
        absl::StrCat("server task failed: ", e.ToString())));
  });
  // Two handlers: replies may be answered out of order.
  p->tasks->Spawn(Serve(s, *p->transport));
  p->tasks->Spawn(Serve(s, *p->transport));
  slot.process = std::move(p);
  return absl::OkStatus();
}

void AddExactlyOnce(protocol::OutcomeTableStats& sum,
                    const protocol::OutcomeTableStats& st) {
  sum.duplicates_running += st.duplicates_running;
  sum.duplicates_completed += st.duplicates_completed;
  sum.forgotten_answers += st.forgotten_answers;
  sum.forgotten_by_bound += st.forgotten_by_bound;
  sum.forgotten_by_time += st.forgotten_by_time;
}

void PingPongRun::AccountServer(int s, const ServerProcess& p) {
  const transport::ServerStats st = p.transport->stats();
  server_keepalive_timeouts_ += st.keepalive_timeouts;
  server_protocol_errors_ += st.protocol_errors;
  tls_handshakes_ += st.tls_handshakes;
  tls_handshake_failures_ += st.tls_handshake_failures;
  AddExactlyOnce(servers_[s].exactly_once, st.exactly_once);
}

protocol::OutcomeTableStats PingPongRun::ExactlyOnceStats(int s) const {
  protocol::OutcomeTableStats sum = servers_[s].exactly_once;
  if (servers_[s].process != nullptr) {
    AddExactlyOnce(sum, servers_[s].process->transport->stats().exactly_once);
  }
  return sum;
}

void PingPongRun::DrawExactlyOnce() {
  // A fork of a copy: the run's own source draws what it drew before.
  SimRandom copy = sim_.random_source();
  eo_rng_ = copy.Fork();
  eo_on_ = eo_rng_.Bernoulli(0.75);
  eo_share_ = 0.3 + 0.7 * eo_rng_.UnitDouble();
  eo_small_bounds_ = eo_on_ && eo_rng_.Bernoulli(0.4);
  // At most a few completed records per client, and in all: with two lanes
  // per client, a record whose reply a lost connection swallowed is often
  // forgotten before its resend arrives.
  eo_max_records_per_client_ = 1 + eo_rng_.Uniform(2);
  eo_max_records_ = 1 + eo_rng_.Uniform(4);
  // Resends need connections lost while the server lives on; the plan's
  // restarts take most connections, so where the plan resets connections
  // at all, an exactly-once run may reset them more often.
  const bool more_resets = eo_on_ && eo_rng_.Bernoulli(0.6);
  const double reset_p = eo_rng_.LogUniform(1e-2, 5e-2);
  eo_fewer_restarts_ = more_resets;
  if (more_resets && sim_.chaos().reset_probability > 0) {
    ChaosConfig plan = sim_.chaos();
    plan.reset_probability = std::max(plan.reset_probability, reset_p);
    sim_.set_chaos(plan);
  }
  // And a resend finds its original still running only when handlers are
  // slower than a reconnect.
  eo_slow_handlers_ = eo_on_ && eo_rng_.Bernoulli(0.5);
  sim_.TraceUser(5, eo_on_ ? 1 + eo_small_bounds_ : 0,
                 eo_max_records_per_client_ * 100 + eo_max_records_);
}

void PingPongRun::CountExactlyOnceRun(int s, const Parsed& q,
                                      const IncomingMessage& m) {
  const uint64_t key = Key(q.client, q.seq);
  const int runs =
      ++eo_runs_[{m.client_incarnation, m.envelope.correlation_id.value()}];
  const auto it = processed_.find(key);
  const int times = it == processed_.end() ? 0 : it->second;
  eo_ran_on_.try_emplace(key, servers_[s].incarnation);
  if (runs > 1 || times > 1) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant exactly_once.ran_at_most_once: exactly-once request c",
        q.client, "/", q.seq, " (client incarnation ", m.client_incarnation,
        ", id ", m.envelope.correlation_id.value(), ") ran ",
        std::max(runs, times), " times (latest by server ", s, " incarnation ",
        servers_[s].incarnation, ", first by incarnation ", eo_ran_on_[key],
        ")")));
  }
}

void PingPongRun::CheckExactlyOnceAborted(const Record& rec, int server,
                                          const absl::Status& status) {
  const std::string id = absl::StrCat("c", rec.client, "/", rec.seq);
  if (absl::StrContains(status.message(), "outcome forgotten")) {
    // Forgotten: only past a bound or a lifetime of that server's records.
    const protocol::OutcomeTableStats st = ExactlyOnceStats(server);
    if (st.forgotten_by_bound + st.forgotten_by_time == 0) {
      Fail(absl::InternalError(
          absl::StrCat("invariant exactly_once.aborted_only_if_lost: ", id,
                       " to server ", server, " answered '", status.message(),
                       "' though that server forgot no record (bounds ",
                       eo_small_bounds_ ? "small" : "default", ")")));
    }
    return;
  }
  // Else only when the server restarted while it was outstanding: the slot
  // has a new incarnation, or the client's Peer shook hands with another
  // one than it had (a request issued just after a restart may still go
  // out on a connection to the dead incarnation).
  const driver::Peer* p =
      clients_[rec.client].transport->peer(servers_[server].target);
  const uint64_t peer_now = p != nullptr ? p->server_incarnation() : 0;
  const bool restarted =
      servers_[server].incarnation != rec.server_incarnation ||
      (rec.peer_incarnation != 0 && peer_now != rec.peer_incarnation);
  if (!restarted) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant exactly_once.aborted_only_if_lost: ", id, " to server ",
        server, " ended ", status.ToString(), " though server incarnation ",
        rec.server_incarnation, " lived throughout (the client's Peer saw ",
        rec.peer_incarnation, " then ", peer_now, ")")));
  }
}

void PingPongRun::ExactlyOnceCoverage() {
  protocol::OutcomeTableStats sum;
  for (size_t s = 0; s < servers_.size(); ++s) {
    AddExactlyOnce(sum, ExactlyOnceStats(static_cast<int>(s)));
  }
  uint64_t resent = 0;
  for (const ClientSlot& c : clients_) {
    for (const ServerSlot& s : servers_) {
      const driver::Peer* p = c.transport->peer(s.target);
      if (p != nullptr) resent += p->stats().resent_exactly_once;
    }
  }
  Sometimes(sum.duplicates_running > 0, "exactly_once.duplicate_running");
  Sometimes(sum.duplicates_completed > 0, "exactly_once.duplicate_completed");
  Sometimes(sum.forgotten_answers > 0, "exactly_once.forgotten_answered");
  Sometimes(resent > 0, "exactly_once.resent");
}

absl::Status PingPongRun::SetUpTls() {
  tls_ = sim_.chaos().tls;
  if (!tls_) return absl::OkStatus();
  std::vector<internal::SimServerName> names;
  for (const ServerSlot& s : servers_) {
    names.push_back({std::string(s.target.host()), s.ip});
  }
  absl::StatusOr<internal::WorkloadTls> tls =
      internal::MakeWorkloadTls(sim_.seed(), names, o_.clients);
  if (!tls.ok()) return tls.status();
  tls_contexts_ = *std::move(tls);
  return absl::OkStatus();
}

void PingPongRun::TlsCoverage() {
  uint64_t handshakes = tls_handshakes_, failures = tls_handshake_failures_;
  for (const ServerSlot& s : servers_) {
    if (s.process == nullptr) continue;
    const transport::ServerStats st = s.process->transport->stats();
    handshakes += st.tls_handshakes;
    failures += st.tls_handshake_failures;
  }
  // The clients' side of a failed handshake (a server may never see one
  // that a reset cut short before its first flight).
  for (const ClientSlot& c : clients_) {
    for (const ServerSlot& s : servers_) {
      if (const driver::Peer* p = c.transport->peer(s.target); p != nullptr) {
        failures += p->stats().tls_handshake_failures;
      }
    }
  }
  Sometimes(handshakes > 0, "tls.handshake_done");
  Sometimes(failures > 0, "tls.handshake_failed");
  Sometimes(tls_record_failures_ > 0, "tls.bit_flip_caught");
}

void PingPongRun::StopServerNow(int s) {
  ServerSlot& slot = servers_[s];
  if (slot.process == nullptr) return;
  AccountServer(s, *slot.process);
  slot.process->tasks.reset();  // handlers first: they borrow the transport
  slot.process.reset();
}

Task<void> PingPongRun::Serve(int s, ServerTransport& t) {
  SimRandom& rng = sim_.random_source();
  while (std::optional<IncomingMessage> m = co_await t.NextMessage()) {
    if (!m->is_request()) {
      ReceiveOneWay(s, *m);
      continue;
    }
    std::optional<Parsed> q = ParseRequest(m->envelope.payload);
    if (!q.has_value()) {
      Fail(absl::InternalError(absl::StrCat("invariant payload.intact: server ",
                                            s, " got '", m->envelope.payload,
                                            "'")));
      continue;
    }
    if (q->exactly_once != m->envelope.exactly_once) {
      Fail(absl::InternalError(absl::StrCat(
          "invariant exactly_once.flag_intact: c", q->client, "/", q->seq,
          " sent ", q->exactly_once ? "" : "not ",
          "exactly-once reached server ", s, " ",
          m->envelope.exactly_once ? "" : "not ", "marked exactly-once")));
    }
    const int times = ++processed_[Key(q->client, q->seq)];
    if (q->exactly_once) {
      CountExactlyOnceRun(s, *q, *m);
    } else if (!q->idempotent && times > 1) {
      Fail(absl::InternalError(absl::StrCat(
          "invariant at_most_once: non-idempotent request c", q->client, "/",
          q->seq, " processed ", times, " times (latest by server ", s,
          " incarnation ", servers_[s].incarnation, ")")));
    }
    CheckDeadline(s, *q, *m);
    // Sometimes a slow handler, so that restarts find requests in flight.
    if (rng.Bernoulli(eo_slow_handlers_ ? 0.6 : o_.slow_handler_probability)) {
      co_await driver::Sleep(
          *servers_[s].host,
          rng.UniformDuration(
              absl::ZeroDuration(),
              o_.max_handler_delay * (eo_slow_handlers_ ? 10 : 1)));
    }
    // NotFound (connection gone) and FailedPrecondition (closed) are legal
    // here: the client sees its own outcome for it.
    if (q->error != absl::StatusCode::kOk) {
      (void)t.ReplyError(
          *m, absl::Status(q->error, HandlerErrorMessage(q->client, q->seq)));
    } else {
      (void)t.Reply(*m, absl::StrCat("r|", q->client, "|", q->seq, "|", s, "|",
                                     servers_[s].incarnation));
    }
  }
}

void PingPongRun::ReceiveOneWay(int s, const IncomingMessage& m) {
  std::optional<Parsed> o = ParseOneWay(m.envelope.payload);
  const auto it =
      o.has_value() ? one_ways_.find(Key(o->client, o->seq)) : one_ways_.end();
  if (it == one_ways_.end()) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant payload.intact: server ", s, " got one-way '",
        m.envelope.payload, "' (", EnvelopeKindName(m.envelope.kind),
        "), which no client sent")));
    return;
  }
  Sometimes(true, "one_way.delivered");
  if (it->second.received == 0) {
    --clients_[o->client].one_ways_unreceived[it->second.server];
  }
  if (++it->second.received > 1) {
    Fail(absl::InternalError(
        absl::StrCat("invariant one_way.at_most_once: one-way c", o->client,
                     "/", o->seq, " received ", it->second.received,
                     " times (latest by server ", s, ")")));
  }
}

void PingPongRun::CheckDeadline(int s, const Parsed& q,
                                const IncomingMessage& m) {
  // The budget travels relative (timeoutMicros, rounded up to a
  // microsecond) and restarts when the request arrives, so the server's
  // deadline is the client's, moved later by no more than the time the
  // request spent between its encoding and its arrival, which is at most
  // the time since the client issued it. All hosts share the virtual clock.
  const auto it = records_.find(Key(q.client, q.seq));
  if (it == records_.end()) return;  // payload.intact's business
  const Record& r = it->second;
  const absl::Time latest =
      r.deadline + (sim_.Now() - r.issued) + absl::Microseconds(1);
  if (m.deadline < r.deadline || m.deadline > latest) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant deadline.propagated: c", q.client, "/", q.seq,
        " issued at +", absl::FormatDuration(r.issued - start_),
        " with deadline +", absl::FormatDuration(r.deadline - start_),
        " reached server ", s, " at +",
        absl::FormatDuration(sim_.Now() - start_), " with deadline ",
        m.deadline == absl::InfiniteFuture()
            ? std::string("none")
            : absl::StrCat("+", absl::FormatDuration(m.deadline - start_)),
        " (must lie in [client's, client's + time in transit])")));
  }
}

Task<void> PingPongRun::OneRequest(int c, int server, Mode mode,
                                   absl::StatusCode error,
                                   absl::Duration timeout, bool quiet) {
  const bool idempotent = mode == Mode::kIdempotent;
  const bool exactly_once = mode == Mode::kExactlyOnce;
  ClientSlot& client = clients_[c];
  const driver::Peer* peer = client.transport->peer(servers_[server].target);
  const uint64_t seq = client.next_seq++;
  const uint64_t key = Key(c, seq);
  Record& rec0 = records_[key];
  rec0 = Record{
      .client = c,
      .seq = seq,
      .idempotent = idempotent,
      .exactly_once = exactly_once,
      .quiet = quiet,
      .error = error,
      .issued = sim_.Now(),
      .deadline = sim_.Now() + timeout,
      .outcomes = 0,
      .kind = Kind::kPending,
      .status = absl::OkStatus(),
      .server_incarnation = servers_[server].incarnation,
      .peer_incarnation = peer != nullptr ? peer->server_incarnation() : 0};
  ++issued_;
  sim_.TraceUser(1, key, static_cast<uint64_t>(mode));
  RequestOptions ro = RequestOptions::Timeout(timeout);
  ro.idempotent = idempotent;
  ro.exactly_once = exactly_once;
  absl::StatusOr<std::string> reply =
      co_await client.transport->Request<std::string>(
          servers_[server].target,
          absl::StrCat("q|", c, "|", seq, "|", static_cast<int>(mode), "|",
                       static_cast<int>(error)),
          ro);
  Record& rec = records_[key];
  ++rec.outcomes;
  ++resolved_;
  sim_.TraceUser(2, key, static_cast<uint64_t>(reply.status().code()));
  if (rec.outcomes != 1) {
    Fail(absl::InternalError(absl::StrCat("invariant one_outcome: c", c, "/",
                                          seq, " got ", rec.outcomes)));
  }
  rec.status = reply.status();
  const std::string id = absl::StrCat("c", c, "/", seq);
  const bool wants_error = error != absl::StatusCode::kOk;
  const absl::StatusCode code = reply.status().code();
  if (internal::EndedByTlsRecordFailure(reply.status())) ++tls_record_failures_;
  // What the transport itself may end a request with (Cancelled only to
  // be reported as outcome_kind below).
  const bool transport_outcome = code == absl::StatusCode::kDeadlineExceeded ||
                                 code == absl::StatusCode::kUnavailable ||
                                 code == absl::StatusCode::kAborted ||
                                 code == absl::StatusCode::kCancelled;
  if ((wants_error && !transport_outcome) || IsHandlerErrorCode(code)) {
    // The handler's error reply, which must arrive as the handler gave it:
    // its code and message, to the request that asked for it.
    rec.kind = Kind::kReply;
    const absl::Status want(error, HandlerErrorMessage(c, seq));
    if (reply.status() != want) {
      Fail(absl::InternalError(absl::StrCat(
          "invariant error_reply.intact: ", id, " to server ", server,
          " wanted ",
          wants_error ? want.ToString() : std::string("a plain reply"),
          ", got ",
          reply.ok() ? absl::StrCat("the reply '", *reply, "'")
                     : reply.status().ToString())));
    } else {
      ++replies_;
      Sometimes(true, "outcome.error_reply");
      if (!processed_.contains(key)) {
        Fail(absl::InternalError(
            absl::StrCat("invariant reply_implies_processed: ", id,
                         " got its error reply, never processed")));
      }
    }
  } else if (reply.ok()) {
    rec.kind = Kind::kReply;
    ++replies_;
    Sometimes(true, "outcome.reply");
    std::vector<absl::string_view> f = absl::StrSplit(*reply, '|');
    int rc = -1, rs = -1;
    uint64_t rseq = 0;
    if (f.size() != 5 || f[0] != "r" || !absl::SimpleAtoi(f[1], &rc) ||
        !absl::SimpleAtoi(f[2], &rseq) || !absl::SimpleAtoi(f[3], &rs) ||
        rc != c || rseq != seq || rs != server) {
      Fail(absl::InternalError(
          absl::StrCat("invariant reply_matches_request: ", id, " to server ",
                       server, " got reply '", *reply, "'")));
    }
    const auto it = processed_.find(key);
    const int times = it == processed_.end() ? 0 : it->second;
    if (times < 1) {
      Fail(absl::InternalError(
          absl::StrCat("invariant reply_implies_processed: ", id,
                       " replied, never processed")));
    }
    if (exactly_once) {
      // The recorded reply, sent again to a resend, is the one its handler
      // gave: it names the incarnation that ran it.
      Sometimes(true, "exactly_once.reply");
      uint64_t inc = 0;
      const auto ran = eo_ran_on_.find(key);
      if (f.size() != 5 || !absl::SimpleAtoi(f[4], &inc) ||
          ran == eo_ran_on_.end() || inc != ran->second) {
        Fail(absl::InternalError(absl::StrCat(
            "invariant exactly_once.reply_intact: ", id, " to server ", server,
            " got reply '", *reply, "', but its handler ran on incarnation ",
            ran == eo_ran_on_.end() ? 0 : ran->second)));
      }
    }
    Sometimes(idempotent && times > 1, "outcome.idempotent_retried_success");
  } else {
    switch (code) {
      case absl::StatusCode::kDeadlineExceeded:
        rec.kind = Kind::kDeadline;
        Sometimes(true, "outcome.deadline_exceeded");
        break;
      case absl::StatusCode::kUnavailable:
        rec.kind = Kind::kUnavailable;
        Sometimes(true, "outcome.unavailable");
        break;
      case absl::StatusCode::kAborted:
        rec.kind = Kind::kAborted;
        ++aborted_;
        Sometimes(true, "outcome.aborted_maybe_delivered");
        if (idempotent) {
          Fail(absl::InternalError(
              absl::StrCat("invariant idempotent_not_aborted: ", id, ": ",
                           reply.status().ToString())));
        }
        if (exactly_once) CheckExactlyOnceAborted(rec, server, reply.status());
        break;
      case absl::StatusCode::kCancelled:
        // The workload cancels nothing and closes no client transport
        // before every outcome is in.
        rec.kind = Kind::kCancelled;
        Fail(absl::InternalError(
            absl::StrCat("invariant outcome_kind: ", id,
                         " Cancelled though nothing cancelled it: ",
                         reply.status().ToString())));
        break;
      default:
        Fail(absl::InternalError(absl::StrCat("invariant outcome_kind: ", id,
                                              " ended in ",
                                              reply.status().ToString())));
    }
  }
  // The handler's answer: its reply, or the error reply it was asked for.
  const bool answered =
      wants_error
          ? reply.status() == absl::Status(error, HandlerErrorMessage(c, seq))
          : reply.ok();
  if (quiet && !answered) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant quiet_liveness: ", id, (idempotent ? " (idempotent)" : ""),
        " to server ", server,
        " failed in the quiet phase: ", reply.status().ToString())));
  }
}

Task<void> PingPongRun::Lane(int c, int lane) {
  SimRandom& rng = sim_.random_source();
  SimHost& host = *clients_[c].host;
  for (int i = 0; i < o_.requests_per_lane; ++i) {
    const int server = static_cast<int>(rng.Uniform(servers_.size()));
    const bool idempotent = rng.Bernoulli(0.5);
    // (From the fork: the run's own draws stay what they were.)
    const bool exactly_once =
        !idempotent && eo_on_ && eo_rng_.Bernoulli(eo_share_);
    const Mode mode = idempotent     ? Mode::kIdempotent
                      : exactly_once ? Mode::kExactlyOnce
                                     : Mode::kPlain;
    const absl::Duration timeout =
        rng.UniformDuration(absl::Milliseconds(20), absl::Seconds(2));
    absl::StatusCode error = absl::StatusCode::kOk;
    if (rng.Bernoulli(o_.error_reply_probability)) {
      error = kHandlerErrorCodes[rng.Uniform(std::size(kHandlerErrorCodes))];
    }
    if (rng.Bernoulli(o_.one_way_probability)) {
      SendOneWay(c, static_cast<int>(rng.Uniform(servers_.size())),
                 /*quiet=*/false);
    }
    co_await OneRequest(c, server, mode, error, timeout, /*quiet=*/false);
    co_await driver::Sleep(
        host, rng.UniformDuration(absl::ZeroDuration(), o_.max_think));
  }
  ++lanes_done_;
}

void PingPongRun::SendOneWay(int c, int server, bool quiet) {
  ClientSlot& client = clients_[c];
  const uint64_t seq = client.next_one_way++;
  absl::Status s = client.transport->SendEncoded(
      servers_[server].target, absl::StrCat("o|", c, "|", seq));
  sim_.TraceUser(4, Key(c, seq), static_cast<uint64_t>(s.code()));
  if (s.ok()) {
    one_ways_[Key(c, seq)] =
        OneWayRecord{.server = server, .quiet = quiet, .received = 0};
    ++client.one_ways_unreceived[server];
  } else if (!absl::IsResourceExhausted(s) || quiet) {
    // A full queue is the only legal refusal, and only under chaos.
    Fail(absl::InternalError(absl::StrCat("invariant one_way.accepted: c", c,
                                          "/", seq, " to server ", server, ": ",
                                          s.ToString())));
  }
}

Task<void> PingPongRun::Controller() {
  SimRandom& rng = sim_.random_source();
  while (!chaos_over_) {
    co_await driver::Sleep(sim_, rng.UniformDuration(absl::Milliseconds(20),
                                                     absl::Milliseconds(200)) *
                                     (eo_fewer_restarts_ ? 3 : 1));
    if (chaos_over_) break;
    const int s = static_cast<int>(rng.Uniform(servers_.size()));
    ServerSlot& slot = servers_[s];
    const bool abrupt = graceful_ && abrupt_ ? rng.Bernoulli(0.5) : abrupt_;
    ++restarts_;
    sim_.TraceUser(3, s, abrupt);
    if (abrupt) {
      Sometimes(true, "restart.abrupt");
      (void)sim_.KillHost(slot.ip);
      StopServerNow(s);  // the dead process's objects
      co_await driver::Sleep(
          sim_,
          rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(100)));
      if (absl::Status st = sim_.RestartHost(slot.ip); !st.ok()) Fail(st);
    } else {
      Sometimes(true, "restart.graceful");
      ServerTransport* t = slot.process->transport.get();
      co_await t->Close(/*drain=*/true);
      StopServerNow(s);
    }
    if (absl::Status st = StartServer(s); !st.ok()) Fail(st);
  }
  controller_done_ = true;
}

void PingPongRun::CheckBounds() {
  // A client never has more requests pending toward one server than it has
  // lanes, or quiet requests (plus the one-way messages to it not yet
  // received); a server never queues more than all of them together.
  const size_t lanes = std::max(static_cast<size_t>(o_.lanes_per_client),
                                kQuietRequestsPerServer);
  const size_t all_lanes = lanes * clients_.size();
  for (size_t c = 0; c < clients_.size(); ++c) {
    if (clients_[c].transport == nullptr) continue;
    for (size_t i = 0; i < servers_.size(); ++i) {
      const ServerSlot& s = servers_[i];
      const driver::Peer* p = clients_[c].transport->peer(s.target);
      const size_t bound = lanes + clients_[c].one_ways_unreceived[i];
      if (p != nullptr && p->pending_requests() > bound) {
        Fail(absl::InternalError(absl::StrCat(
            "invariant memory.peer_queue: client ", c, " has ",
            p->pending_requests(), " pending toward ", s.ip, " > ", bound)));
      }
    }
  }
  for (size_t s = 0; s < servers_.size(); ++s) {
    if (servers_[s].process == nullptr) continue;
    const transport::ServerStats st = servers_[s].process->transport->stats();
    size_t one_ways = 0;
    for (const ClientSlot& c : clients_) one_ways += c.one_ways_unreceived[s];
    if (st.queued_messages > all_lanes + one_ways ||
        st.requests_in_flight > std::min(all_lanes, kServerMaxInFlight) ||
        st.connections_open > 4 * clients_.size()) {
      Fail(absl::InternalError(
          absl::StrCat("invariant memory.server: server ", s, " queued ",
                       st.queued_messages, " in flight ", st.requests_in_flight,
                       " connections ", st.connections_open)));
    }
  }
}

Task<void> PingPongRun::Monitor() {
  while (true) {
    co_await driver::Sleep(sim_, absl::Milliseconds(50));
    CheckBounds();
  }
}

void PingPongRun::Teardown() {
  if (control_ != nullptr) control_->Clear();
  for (ClientSlot& c : clients_) {
    if (c.tasks != nullptr) c.tasks->Clear();
  }
  for (ClientSlot& c : clients_) {
    if (c.transport != nullptr) c.transport->Close();
    c.transport.reset();
    c.tasks.reset();
  }
  for (size_t s = 0; s < servers_.size(); ++s)
    StopServerNow(static_cast<int>(s));
  control_.reset();
}

bool PingPongRun::Lossy(const AssertionRegistry& reg) const {
  auto happened = [&](absl::string_view n) {
    auto it = reg.points().find(n);
    return it != reg.points().end() && it->second.held > 0;
  };
  return happened("fault.reset") || happened("fault.half_close") ||
         happened("fault.bit_flip") || happened("fault.host_killed") ||
         restarts_ > 0;
}

absl::Status PingPongRun::Execute(WorkloadStats& stats) {
  AssertionRegistry& reg = sim_.assertions();
  for (absl::string_view n : kOutcomePoints) reg.Declare(n);
  for (absl::string_view n : internal::kTlsCoveragePoints) reg.Declare(n);
  DrawExactlyOnce();
  const absl::Time t0 = sim_.Now();
  start_ = t0;
  SimRandom& rng = sim_.random_source();
  if (sim_.chaos().any_fault()) {
    graceful_ = rng.Bernoulli(0.5);
    abrupt_ = rng.Bernoulli(0.5);
  }
  for (int s = 0; s < o_.servers; ++s) {
    ServerSlot slot;
    slot.ip = absl::StrCat("10.0.2.", s + 1);
    absl::StatusOr<SimHost*> h = sim_.AddHost(slot.ip);
    if (!h.ok()) return h.status();
    slot.host = *h;
    const std::string name = absl::StrCat("server", s, ".sim");
    if (absl::Status st = sim_.SetHostName(name, {slot.ip}); !st.ok()) {
      return st;
    }
    absl::StatusOr<driver::HostPort> target =
        driver::HostPort::FromParts(name, kPort);
    if (!target.ok()) return target.status();
    slot.target = *target;
    servers_.push_back(std::move(slot));
  }
  if (absl::Status st = SetUpTls(); !st.ok()) return st;
  for (int c = 0; c < o_.clients; ++c) {
    absl::StatusOr<SimHost*> h = sim_.AddHost(absl::StrCat("10.0.1.", c + 1));
    if (!h.ok()) return h.status();
    ClientSlot slot;
    slot.host = *h;
    slot.one_ways_unreceived.assign(o_.servers, 0);
    transport::ClientOptions options;
    if (tls_) options.peer.tls = tls_contexts_.clients[c];
    slot.transport = std::make_unique<ClientTransport>(**h, options);
    slot.tasks = std::make_unique<TaskScope>(**h, [this](absl::Status e) {
      Fail(absl::InternalError(
          absl::StrCat("client task failed: ", e.ToString())));
    });
    clients_.push_back(std::move(slot));
  }
  for (int s = 0; s < o_.servers; ++s) {
    if (absl::Status st = StartServer(s); !st.ok()) return st;
  }
  control_ = std::make_unique<TaskScope>(sim_, [this](absl::Status e) {
    Fail(absl::InternalError(
        absl::StrCat("control task failed: ", e.ToString())));
  });
  control_->Spawn(Monitor());
  if (graceful_ || abrupt_) {
    controller_done_ = false;
    control_->Spawn(Controller());
  }
  for (int c = 0; c < o_.clients; ++c) {
    for (int l = 0; l < o_.lanes_per_client; ++l)
      clients_[c].tasks->Spawn(Lane(c, l));
  }
  const int lanes = o_.clients * o_.lanes_per_client;
  auto hang = [&](absl::string_view phase) {
    return absl::DeadlineExceededError(absl::StrCat(
        "invariant no_hang: hang in the ", phase,
        " phase: no progress by t=", absl::FormatDuration(sim_.Now() - t0),
        " with ", Pending(), " requests pending (", sim_.pending_events(),
        " events scheduled, ", sim_.live_connections(), " connections)"));
  };
  auto finish = [&](absl::Status s) {
    stats.requests = issued_;
    stats.round_trips = replies_;
    stats.virtual_time = sim_.Now() - t0;
    Teardown();
    return s;
  };

  // Chaos phase: every lane runs its requests to their outcomes.
  if (!sim_.RunUntil([&] { return lanes_done_ == lanes || !failure_.ok(); },
                     sim_.Now() + o_.phase_budget)) {
    return finish(hang("chaos"));
  }
  if (!failure_.ok()) return finish(failure_);
  chaos_over_ = true;
  sim_.set_chaos(ChaosConfig{});
  if (!sim_.RunUntil([&] { return controller_done_; },
                     sim_.Now() + o_.phase_budget)) {
    return finish(hang("restart"));
  }
  // Quiet phase: faults off; stalls already drawn release, and keepalive
  // ends what the chaos left silent. Then every new request must succeed.
  sim_.RunUntil([] { return false; }, sim_.Now() + o_.quiet_settle);
  const uint64_t quiet_target =
      issued_ + kQuietRequestsPerServer * clients_.size() * servers_.size();
  for (int c = 0; c < o_.clients; ++c) {
    for (int s = 0; s < o_.servers; ++s) {
      SendOneWay(c, s, /*quiet=*/true);
      clients_[c].tasks->Spawn(OneRequest(c, s, Mode::kIdempotent,
                                          absl::StatusCode::kOk,
                                          o_.quiet_timeout, true));
      // In a run with exactly-once requests, the plain one is exactly-once:
      // with faults off it too must get its handler's answer.
      clients_[c].tasks->Spawn(
          OneRequest(c, s, eo_on_ ? Mode::kExactlyOnce : Mode::kPlain,
                     absl::StatusCode::kOk, o_.quiet_timeout, true));
      clients_[c].tasks->Spawn(OneRequest(
          c, s, Mode::kPlain,
          kHandlerErrorCodes[(c + s) % std::size(kHandlerErrorCodes)],
          o_.quiet_timeout, true));
    }
  }
  if (!sim_.RunUntil([&] { return resolved_ == quiet_target; },
                     sim_.Now() + o_.phase_budget)) {
    return finish(hang("quiet"));
  }
  // The one-way messages went ahead of the quiet requests on the same
  // connections; give their handlers a moment past the last reply.
  sim_.RunUntil([] { return false; }, sim_.Now() + absl::Milliseconds(100));
  CheckBounds();
  for (size_t c = 0; c < clients_.size(); ++c) {
    for (const ServerSlot& s : servers_) {
      const driver::Peer* p = clients_[c].transport->peer(s.target);
      if (p != nullptr && p->pending_requests() != 0) {
        Fail(absl::InternalError(absl::StrCat(
            "invariant memory.peer_drained: client ", c, " still has ",
            p->pending_requests(), " pending toward ", s.ip)));
      }
    }
  }
  for (const auto& [key, r] : records_) {
    if (r.outcomes != 1) {
      Fail(absl::InternalError(absl::StrCat("invariant one_outcome: c",
                                            r.client, "/", r.seq, " got ",
                                            r.outcomes, " outcomes")));
    }
  }
  // A stall is not a close: without anything that may lose a connection,
  // nothing written may end Aborted.
  uint64_t keepalive = server_keepalive_timeouts_,
           protocol_errors = server_protocol_errors_;
  for (const ServerSlot& s : servers_) {
    if (s.process != nullptr) {
      const transport::ServerStats st = s.process->transport->stats();
      keepalive += st.keepalive_timeouts;
      protocol_errors += st.protocol_errors;
    }
  }
  for (const ClientSlot& c : clients_) {
    for (const ServerSlot& s : servers_) {
      const driver::Peer* p = c.transport->peer(s.target);
      if (p != nullptr) {
        keepalive += p->stats().keepalive_timeouts;
        protocol_errors += p->stats().protocol_errors;
      }
    }
  }
  const bool lossy = Lossy(reg) || keepalive > 0 || protocol_errors > 0;
  if (aborted_ > 0 && !lossy) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant stall_is_not_close: ", aborted_,
        " requests Aborted with no reset, half-close, bit flip, restart or "
        "keepalive timeout in the run")));
  }
  // A one-way message may be lost only with the connection it was written
  // on; in the quiet phase none dies.
  uint64_t lost = 0, quiet_lost = 0, example = 0;
  for (const auto& [key, o] : one_ways_) {
    if (o.received > 0) continue;
    ++lost;
    if (o.quiet) ++quiet_lost;
    if (example == 0 || key < example) example = key;
  }
  if (quiet_lost > 0 || (lost > 0 && !lossy)) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant one_way.delivered: ", lost, " of ", one_ways_.size(),
        " one-way messages never reached a handler (", quiet_lost,
        " in the quiet phase; first c", example >> 40, "/",
        example & ((uint64_t{1} << 40) - 1), ")",
        lossy ? "" : " with no connection lost in the run")));
  }
  ExactlyOnceCoverage();
  TlsCoverage();
  return finish(failure_);
}

}  // namespace

absl::Status PingPongWorkload::Run(SimLoop& sim, WorkloadStats& stats) {
  PingPongRun run(sim, pingpong_);
  return run.Execute(stats);
}

}  // namespace moonpool::chaos
