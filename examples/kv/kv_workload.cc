// "kv": one server host runs KeyValueService; several client hosts call
// Get, Put and Delete (typed calls: ClientTransport::Call) and Scan (a
// reply stream: ClientTransport::CallStream, with a window of a few hundred
// bytes so that flow control runs in every scan of more than a few keys)
// on a few keys,
// under the seed's faults and server restarts (the host killed and
// restarted, or the server closed gracefully and started again); the store
// lives in memory, so each restart empties it. Then the faults stop and a
// quiet phase reads back what it writes.
//
// Invariants (a failure names one):
//   kv.outcome_kind       every call ends in OK or in an outcome DESIGN.md
//                         section 6 allows it: DeadlineExceeded,
//                         Unavailable, and Aborted only for Put (Get and
//                         Delete are idempotent: sent again instead) or for
//                         a fail-fast call (wait_for_ready = false: its
//                         retry fails at once while the server is down);
//   kv.one_outcome        exactly one outcome per call;
//   kv.get_value_was_put  a Get that finds a value finds one that some Put
//                         of that key sent (values are unique per Put);
//   kv.restart_empties_store  after the server restarted with no Put since,
//                         a Get finds nothing;
//   kv.read_back          in the quiet phase (faults off, no restart), an
//                         acknowledged Put is read back by the next Get, a
//                         Delete after it finds the key, and a Get after
//                         that finds nothing;
//   kv.quiet_liveness     every quiet call succeeds;
//   kv.scan_order, kv.scan_range, kv.scan_limit
//                         every scan's keys are strictly increasing, within
//                         [start, end), and at most `limit` of them;
//   kv.scan_value_was_put every value a scan finds was sent by a Put of
//                         that key;
//   kv.scan_one_end       every scan that its caller did not abandon ends
//                         exactly once (asked again after its end, the
//                         stream yields the same end, never an item);
//   kv.scan_exact         in the quiet phase, once the store is known (the
//                         per-key checks leave it empty; then one client
//                         puts a subset of the keys), a scan returns exactly
//                         the keys and values the model has in its range,
//                         cut at its limit;
//   kv.no_hang            every phase ends within its virtual-time budget.
//   kv.put_applied_at_most_once  the store applies each Put (each value) at
//                         most once, across the server's incarnations; in
//                         some runs (a swarm switch) a share of the Puts is
//                         exactly-once (RequestOptions::exactly_once), sent
//                         again after a lost connection and answered from
//                         the server's record;
//   kv.exactly_once_aborted  an exactly-once Put ends Aborted only when the
//                         server restarted while it was outstanding, its
//                         record was forgotten, or it was fail-fast.
//
// Coverage (Sometimes; a sweep requires each to hold at least once): each
// outcome kind (kv.outcome.*), fail-fast calls failing at once while the
// server is down (kv.outcome.unavailable_fail_fast), calls abandoned by
// their caller (kv.call.abandoned) and the server seeing a Get's cancel
// (kv.server.get_cancelled, from its MethodStats), Gets that find and miss,
// Deletes that find, both restart kinds, the quiet phase's read after a
// restart finding the store empty, and scans ended OK (kv.scan_ended_ok),
// ended by an error (kv.scan_ended_error), ended by a lost connection
// after their first item (kv.scan_connection_lost), abandoned by their
// caller mid-stream (kv.scan_abandoned), and carrying more item bytes than
// their window (kv.scan_past_window: the server waited for credit).
//
// Under faults a client cannot tell whether a call that failed was applied,
// nor, with the relative deadline budget, how late a request held in a
// stalled link still reaches the server; so read-your-writes is checked in
// the quiet phase only, after the network has settled for longer than any
// stall and the keepalive timeout.
#include "kv_workload.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kv.capnp.h"
#include "kv_methods.h"
#include "kv_service.h"
#include "moonpool/chaos/sim_host.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/chaos/sim_random.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/chaos/workload.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/method_stats.h"
#include "moonpool/transport/reply_stream.h"
#include "moonpool/transport/request_options.h"
#include "moonpool/transport/server_options.h"
#include "moonpool/transport/server_transport.h"

ABSL_FLAG(int, kv_clients, 3, "kv workload: client hosts");
ABSL_FLAG(int, kv_ops, 30, "kv workload: calls per client in the chaos phase");
ABSL_FLAG(int, kv_keys, 4, "kv workload: keys the clients share");
ABSL_FLAG(double, kv_scans, 0.15,
          "kv workload: the fraction of chaos-phase calls that are scans");

namespace kv {
namespace {

using moonpool::chaos::SimHost;
using moonpool::chaos::SimLoop;
using moonpool::chaos::SimRandom;
using moonpool::chaos::Sometimes;
using moonpool::chaos::WorkloadContext;
using moonpool::driver::Address;
using moonpool::driver::HostPort;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::transport::CapnpMessage;
using moonpool::transport::ClientTransport;
using moonpool::transport::MethodStats;
using moonpool::transport::ReplyStream;
using moonpool::transport::RequestOptions;
using moonpool::transport::ServerOptions;
using moonpool::transport::ServerTransport;
using moonpool::transport::StreamOptions;

constexpr uint16_t kPort = 4500;
constexpr char kServerIp[] = "10.0.5.1";
// The clients call the server by name, as a deployment would: every
// connect is a lookup through the simulated resolver, with its faults.
constexpr char kServerName[] = "kv.sim";
// Long enough for every stall drawn in the chaos phase to release and for
// keepalive (4 s) to end connections the chaos left silent, so nothing sent
// in the chaos phase reaches the server in the quiet one.
constexpr absl::Duration kQuietSettle = absl::Seconds(10);
constexpr absl::Duration kQuietTimeout = absl::Seconds(20);
constexpr absl::Duration kPhaseBudget = absl::Seconds(300);

// Declared up front so that one never reached shows as a coverage hole.
constexpr absl::string_view kCoveragePoints[] = {
    "kv.outcome.ok",
    "kv.outcome.deadline_exceeded",
    "kv.outcome.unavailable",
    "kv.outcome.unavailable_fail_fast",
    "kv.outcome.aborted_put",
    "kv.call.abandoned",
    "kv.get.found",
    "kv.get.not_found",
    "kv.delete.existed",
    "kv.restart.abrupt",
    "kv.restart.graceful",
    "kv.quiet.read_after_restart_empty",
    "kv.scan_ended_ok",
    "kv.scan_ended_error",
    "kv.scan_connection_lost",
    "kv.scan_abandoned",
    "kv.scan_past_window",
    "kv.exactly_once.put_ok",
};
// Scans' windows: a few items' worth (an item of a short key and value is
// about 50 bytes), so that a scan of more than a few keys waits for credit.
constexpr int64_t kScanWindowMin = 64, kScanWindowMax = 256;

enum class Op : uint8_t { kGet, kPut, kDelete, kScan };

absl::string_view OpName(Op op) {
  switch (op) {
    case Op::kGet:
      return "Get";
    case Op::kPut:
      return "Put";
    case Op::kDelete:
      return "Delete";
    case Op::kScan:
      return "Scan";
  }
  return "?";
}

kj::ArrayPtr<const kj::byte> AsBytes(const std::string& s) {
  return kj::arrayPtr(s.data(), s.size()).asBytes();
}

// What a call ended in, as the workload sees it.
struct Outcome {
  absl::Status status;
  bool abandoned = false;  // its caller stopped waiting (destroyed the call)
  bool found = false;      // Get: found; Delete: existed
  std::string value;       // Get, when found
  // The server restarted while it was outstanding: a new incarnation
  // started, or the client's Peer shook hands with another one than it had
  // (a call made just after a restart may go out on a connection to the
  // dead one).
  bool server_restarted = false;
};

// One scan: what it asked for and what it saw.
struct ScanSpec {
  std::string start, end;  // [start, end); end empty: to the last key
  uint64_t limit = 0;      // 0: none
  uint64_t window = 0;     // StreamOptions::window_bytes
  std::string ToString() const {
    return absl::StrCat("Scan [", start, ", ", end.empty() ? "(end)" : end,
                        ") limit ", limit, " window ", window);
  }
};
struct ScanOutcome {
  absl::Status status;     // the end (when ends > 0)
  bool abandoned = false;  // its caller destroyed the stream mid-way
  int ends = 0;            // ends Next yielded (asked once more after one)
  bool item_after_end = false;
  std::vector<std::pair<std::string, std::string>> items;
  uint64_t bytes = 0;  // item payload bytes (ReplyStreamStats::bytes)
};

struct ServerProcess {
  // Declared first, destroyed last: the transport's handlers call into it.
  std::unique_ptr<KeyValueService> service;
  std::unique_ptr<ServerTransport> transport;
};

struct ClientSlot {
  SimHost* host = nullptr;
  std::unique_ptr<ClientTransport> transport;
  std::unique_ptr<TaskScope> tasks;
  uint64_t next_seq = 1;
};

class KvRun {
 public:
  KvRun(SimLoop& sim, int clients, int ops, int keys, double scans)
      : sim_(sim), clients_n_(clients), ops_(ops), keys_(keys), scans_(scans) {}

  absl::Status Execute(WorkloadContext& ctx);

 private:
  void Fail(absl::Status s) {
    if (failure_.ok()) failure_ = std::move(s);
  }
  std::string Key(int k) const { return absl::StrCat("k", k); }
  absl::Status StartServer();
  void StopServerNow();
  Task<void> Restart(bool abrupt);
  Task<void> Controller();
  Task<void> Lane(int c);
  // One call of `op` on key `k` by client `c`; `value` for a Put.
  Task<Outcome> Call(int c, Op op, const std::string& key,
                     const std::string& value, RequestOptions options,
                     absl::Duration abandon_after);
  void CheckChaosOutcome(int c, Op op, const std::string& key,
                         const std::string& value, const RequestOptions& o,
                         const Outcome& out);
  ScanSpec RandomScan();
  // One scan by client `c`, read to its end (or until `abandon_after`).
  Task<ScanOutcome> Scan(int c, ScanSpec spec, StreamOptions options,
                         absl::Duration abandon_after);
  // The invariants every scan keeps; in the chaos phase, its outcome kind.
  void CheckScan(int c, const ScanSpec& spec, const StreamOptions& o,
                 const ScanOutcome& out, bool quiet);
  Task<void> QuietKey(int k);
  // After every QuietKey: puts some keys, then scans them and compares.
  Task<void> QuietScans();
  void Teardown();

  SimLoop& sim_;
  const int clients_n_, ops_, keys_;
  const double scans_;  // the fraction of chaos calls that are scans
  absl::Status failure_;
  SimHost* server_host_ = nullptr;
  Address server_address_;  // where the server binds
  HostPort server_target_;  // what the clients call
  std::unique_ptr<ServerProcess> server_;
  uint64_t incarnation_ = 0;
  std::vector<ClientSlot> clients_;
  std::unique_ptr<TaskScope> control_;
  // Every value any Put sent, per key (sent: it may have been applied).
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> put_;
  uint64_t calls_ = 0, outcomes_ = 0, oks_ = 0;
  // Client cancels of Gets the server saw (MethodStats::cancelled), summed
  // over its incarnations.
  uint64_t server_get_cancels_ = 0;
  int lanes_done_ = 0, quiet_done_ = 0;
  bool quiet_scans_done_ = false;
  bool restarts_ = false, chaos_over_ = false, controller_done_ = true;
  // The server restarted after the last chaos call ended: the quiet phase's
  // first Gets must find nothing.
  bool restarted_for_quiet_ = false;
  // Exactly-once Puts: whether this run sends any and which share of its
  // chaos Puts, drawn from a fork so the run's other draws stay as they
  // were; and how often the store applied each value.
  SimRandom eo_rng_{0};
  bool eo_on_ = false;
  double eo_share_ = 0;
  absl::btree_map<std::string, int> applied_;
};

absl::Status KvRun::StartServer() {
  SimRandom& rng = sim_.random_source();
  ServerOptions so;
  so.drain_timeout = absl::Seconds(1);
  so.connection.incarnation = ++incarnation_;
  auto p = std::make_unique<ServerProcess>();
  // Sometimes slow Gets, so that restarts and abandoned calls find
  // handlers running (and their cancellation is exercised).
  KeyValueServiceOptions service_options;
  if (rng.Bernoulli(0.5)) {
    service_options.get_delay =
        rng.UniformDuration(absl::Milliseconds(1), absl::Milliseconds(50));
  }
  // Sometimes slow scans, so that restarts and lost connections cut them
  // after their first item.
  if (rng.Bernoulli(0.5)) {
    service_options.scan_item_delay =
        rng.UniformDuration(absl::Milliseconds(1), absl::Milliseconds(30));
  }
  service_options.on_put = [this](absl::string_view key,
                                  absl::string_view value) {
    const int n = ++applied_[std::string(value)];
    if (n > 1) {
      Fail(absl::InternalError(
          absl::StrCat("invariant kv.put_applied_at_most_once: Put ", key, "=",
                       value, " applied ", n, " times (latest by incarnation ",
                       incarnation_, ")")));
    }
  };
  p->service = std::make_unique<KeyValueService>(*server_host_,
                                                 std::move(service_options));
  absl::StatusOr<std::unique_ptr<ServerTransport>> t =
      ServerTransport::Bind(*server_host_, server_address_, so);
  if (!t.ok()) {
    return absl::InternalError(
        absl::StrCat("invariant kv.server_bind: ", "incarnation ", incarnation_,
                     ": ", t.status().ToString()));
  }
  p->transport = std::move(*t);
  if (absl::Status s = p->service->Register(*p->transport); !s.ok()) {
    return absl::InternalError(
        absl::StrCat("invariant kv.register: ", s.ToString()));
  }
  server_ = std::move(p);
  return absl::OkStatus();
}

void KvRun::StopServerNow() {
  if (server_ == nullptr) return;
  // The dead (or closed) process's counters: cancels that reached it.
  if (std::optional<MethodStats> get = server_->transport->method_stats(kGet)) {
    server_get_cancels_ += get->cancelled;
  }
  server_->transport.reset();  // before the service its handlers call
  server_.reset();
}

Task<void> KvRun::Restart(bool abrupt) {
  SimRandom& rng = sim_.random_source();
  sim_.TraceUser(3, incarnation_, abrupt);
  if (abrupt) {
    Sometimes(true, "kv.restart.abrupt");
    (void)sim_.KillHost(kServerIp);
    StopServerNow();  // the dead process's objects
    co_await moonpool::driver::Sleep(
        sim_,
        rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(200)));
    if (absl::Status s = sim_.RestartHost(kServerIp); !s.ok()) Fail(s);
  } else {
    Sometimes(true, "kv.restart.graceful");
    co_await server_->transport->Close(/*drain=*/true);
    StopServerNow();
    // Down for a while: connects are refused, and fail-fast calls fail.
    co_await moonpool::driver::Sleep(
        sim_,
        rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(200)));
  }
  if (absl::Status s = StartServer(); !s.ok()) Fail(s);
}

Task<void> KvRun::Controller() {
  SimRandom& rng = sim_.random_source();
  while (!chaos_over_) {
    co_await moonpool::driver::Sleep(
        sim_,
        rng.UniformDuration(absl::Milliseconds(100), absl::Milliseconds(800)));
    if (chaos_over_) break;
    co_await Restart(rng.Bernoulli(0.5));
  }
  controller_done_ = true;
}

Task<Outcome> KvRun::Call(int c, Op op, const std::string& key,
                          const std::string& value, RequestOptions options,
                          absl::Duration abandon_after) {
  ClientTransport& client = *clients_[c].transport;
  SimHost& host = *clients_[c].host;
  Outcome out;
  const uint64_t incarnation = incarnation_;
  auto peer_incarnation = [&] {
    const moonpool::driver::Peer* p = client.peer(server_target_);
    return p != nullptr ? p->server_incarnation() : 0;
  };
  const uint64_t peer_before = peer_incarnation();
  // The messages live in this frame until the call has ended.
  switch (op) {
    case Op::kGet: {
      CapnpMessage<GetRequest> request;
      request.builder().setKey(key);
      auto r = co_await moonpool::driver::Select(
          client.Call(server_target_, kGet, request, options),
          moonpool::driver::Sleep(host, abandon_after));
      if (r.index() == 1) {
        out.abandoned = true;
      } else if (auto& reply = std::get<0>(r); reply.ok()) {
        out.found = reply->get().getFound();
        kj::ArrayPtr<const char> v = reply->get().getValue().asChars();
        out.value.assign(v.begin(), v.size());
      } else {
        out.status = reply.status();
      }
      break;
    }
    case Op::kPut: {
      CapnpMessage<PutRequest> request;
      request.builder().setKey(key);
      request.builder().setValue(AsBytes(value));
      auto r = co_await moonpool::driver::Select(
          client.Call(server_target_, kPut, request, options),
          moonpool::driver::Sleep(host, abandon_after));
      if (r.index() == 1) {
        out.abandoned = true;
      } else {
        out.status = std::get<0>(r).status();
      }
      break;
    }
    case Op::kDelete: {
      CapnpMessage<DeleteRequest> request;
      request.builder().setKey(key);
      auto r = co_await moonpool::driver::Select(
          client.Call(server_target_, kDelete, request, options),
          moonpool::driver::Sleep(host, abandon_after));
      if (r.index() == 1) {
        out.abandoned = true;
      } else if (auto& reply = std::get<0>(r); reply.ok()) {
        out.found = reply->get().getExisted();
      } else {
        out.status = reply.status();
      }
      break;
    }
    case Op::kScan:  // a stream: KvRun::Scan
      out.status = absl::InternalError("Scan is not a unary call");
      break;
  }
  out.server_restarted =
      incarnation_ != incarnation ||
      (peer_before != 0 && peer_incarnation() != peer_before);
  ++outcomes_;
  if (out.status.ok() && !out.abandoned) ++oks_;
  sim_.TraceUser(
      2, static_cast<uint64_t>(op),
      out.abandoned ? 100 : static_cast<uint64_t>(out.status.code()));
  co_return out;
}

void KvRun::CheckChaosOutcome(int c, Op op, const std::string& key,
                              const std::string& value, const RequestOptions& o,
                              const Outcome& out) {
  const std::string what =
      absl::StrCat("client ", c, " ", OpName(op), " ", key,
                   op == Op::kPut ? absl::StrCat("=", value) : "");
  if (out.abandoned) {
    Sometimes(true, "kv.call.abandoned");
    return;
  }
  switch (out.status.code()) {
    case absl::StatusCode::kOk:
      Sometimes(true, "kv.outcome.ok");
      Sometimes(op == Op::kPut && o.exactly_once, "kv.exactly_once.put_ok");
      break;
    case absl::StatusCode::kDeadlineExceeded:
      Sometimes(true, "kv.outcome.deadline_exceeded");
      return;
    case absl::StatusCode::kUnavailable:
      Sometimes(true, "kv.outcome.unavailable");
      Sometimes(!o.wait_for_ready, "kv.outcome.unavailable_fail_fast");
      return;
    case absl::StatusCode::kAborted:
      // Maybe delivered: Put, which is not sent again; or a fail-fast call
      // written on a connection that died, whose retry then found the
      // server unreachable (it does not wait to be sent again).
      if (op == Op::kPut && o.exactly_once && o.wait_for_ready &&
          !absl::StrContains(out.status.message(), "outcome forgotten") &&
          !out.server_restarted) {
        Fail(absl::InternalError(absl::StrCat(
            "invariant kv.exactly_once_aborted: exactly-once ", what, " ended ",
            out.status.ToString(),
            " though the server did not restart while it was outstanding")));
        return;
      }
      if (op == Op::kPut || !o.wait_for_ready) {
        Sometimes(op == Op::kPut, "kv.outcome.aborted_put");
        return;
      }
      [[fallthrough]];
    default:
      Fail(absl::InternalError(absl::StrCat("invariant kv.outcome_kind: ", what,
                                            " ended ", out.status.ToString())));
      return;
  }
  if (op == Op::kGet) {
    Sometimes(out.found, "kv.get.found");
    Sometimes(!out.found, "kv.get.not_found");
    if (out.found && !put_[key].contains(out.value)) {
      Fail(absl::InternalError(
          absl::StrCat("invariant kv.get_value_was_put: ", what, " found '",
                       out.value, "', which no Put of ", key, " sent")));
    }
  } else if (op == Op::kDelete) {
    Sometimes(out.found, "kv.delete.existed");
  }
}

ScanSpec KvRun::RandomScan() {
  SimRandom& rng = sim_.random_source();
  ScanSpec spec;
  if (!rng.Bernoulli(0.3))
    spec.start = Key(static_cast<int>(rng.Uniform(keys_)));
  // Key(keys_) is past every key the workload writes.
  if (!rng.Bernoulli(0.3)) {
    spec.end = Key(static_cast<int>(rng.Uniform(keys_ + 1)));
  }
  spec.limit = rng.Bernoulli(0.5) ? 0 : 1 + rng.Uniform(keys_);
  spec.window =
      static_cast<uint64_t>(rng.UniformInRange(kScanWindowMin, kScanWindowMax));
  return spec;
}

// Reads `request`'s stream to its end into `out`, then asks once more (a
// stream that ended yields the same end again, never an item). Its frame
// owns the stream: destroying it mid-way (the caller gives up) cancels the
// call.
Task<void> ReadScan(ClientTransport& client, const HostPort& to,
                    const CapnpMessage<ScanRequest>& request,
                    const StreamOptions& options, ScanOutcome* out) {
  absl::StatusOr<ReplyStream<ScanItem>> stream =
      client.CallStream(to, kScan, request, options);
  if (!stream.ok()) {
    out->ends = 1;
    out->status = stream.status();
    co_return;
  }
  while (true) {
    absl::StatusOr<std::optional<moonpool::transport::CapnpReader<ScanItem>>>
        next = co_await stream->Next();
    out->bytes = stream->stats().bytes;
    if (next.ok() && next->has_value()) {
      ScanItem::Reader item = (*next)->get();
      kj::ArrayPtr<const char> v = item.getValue().asChars();
      out->items.emplace_back(
          std::string(item.getKey().begin(), item.getKey().size()),
          std::string(v.begin(), v.size()));
      continue;
    }
    ++out->ends;
    out->status = next.status();
    absl::StatusOr<std::optional<moonpool::transport::CapnpReader<ScanItem>>>
        again = co_await stream->Next();
    if (again.ok() && again->has_value()) {
      out->item_after_end = true;
    } else if (again.status() != out->status) {
      ++out->ends;  // a second end, not the same one
    }
    co_return;
  }
}

std::string Keys(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string s = "[";
  for (const auto& [key, value] : kv) {
    absl::StrAppend(&s, s.size() > 1 ? " " : "", key, "(", value.size(), "B)");
  }
  return s + "]";
}

Task<ScanOutcome> KvRun::Scan(int c, ScanSpec spec, StreamOptions options,
                              absl::Duration abandon_after) {
  ClientTransport& client = *clients_[c].transport;
  SimHost& host = *clients_[c].host;
  options.window_bytes = spec.window;
  CapnpMessage<ScanRequest> request;
  request.builder().setStart(spec.start);
  request.builder().setEnd(spec.end);
  request.builder().setLimit(spec.limit);
  ScanOutcome out;
  auto r = co_await moonpool::driver::Select(
      ReadScan(client, server_target_, request, options, &out),
      moonpool::driver::Sleep(host, abandon_after));
  if (r.index() == 1) out.abandoned = true;
  ++outcomes_;
  if (out.status.ok() && !out.abandoned) ++oks_;
  sim_.TraceUser(
      2, static_cast<uint64_t>(Op::kScan),
      out.abandoned ? 100 : static_cast<uint64_t>(out.status.code()));
  co_return out;
}

void KvRun::CheckScan(int c, const ScanSpec& spec, const StreamOptions& o,
                      const ScanOutcome& out, bool quiet) {
  const std::string what =
      absl::StrCat(quiet ? "quiet " : "", "client ", c, " ", spec.ToString(),
                   " got ", Keys(out.items));
  auto fail = [&](absl::string_view invariant, absl::string_view detail) {
    Fail(absl::InternalError(
        absl::StrCat("invariant ", invariant, ": ", what, ": ", detail)));
  };
  for (size_t i = 0; i < out.items.size(); ++i) {
    const std::string& key = out.items[i].first;
    if (i > 0 && !(out.items[i - 1].first < key)) {
      fail("kv.scan_order",
           absl::StrCat(key, " after ", out.items[i - 1].first));
    }
    if (key < spec.start || (!spec.end.empty() && key >= spec.end)) {
      fail("kv.scan_range", absl::StrCat(key, " is out of range"));
    }
    if (!put_[key].contains(out.items[i].second)) {
      fail("kv.scan_value_was_put", absl::StrCat(key, "='", out.items[i].second,
                                                 "', which no Put sent"));
    }
  }
  if (spec.limit != 0 && out.items.size() > spec.limit) {
    fail("kv.scan_limit", absl::StrCat(out.items.size(), " items"));
  }
  Sometimes(out.bytes > spec.window, "kv.scan_past_window");
  if (out.abandoned) {
    Sometimes(true, "kv.scan_abandoned");
    return;
  }
  if (out.ends != 1 || out.item_after_end) {
    fail(
        "kv.scan_one_end",
        absl::StrCat(out.ends, " ends",
                     out.item_after_end ? ", then an item after the end" : ""));
    return;
  }
  if (out.status.ok()) {
    Sometimes(true, "kv.scan_ended_ok");
    return;
  }
  Sometimes(true, "kv.scan_ended_error");
  switch (out.status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnavailable:
      return;
    case absl::StatusCode::kAborted:
      // The connection died after an item (a stream is never sent again
      // once one has arrived, idempotent or not), or a fail-fast scan's
      // retry found the server unreachable.
      Sometimes(!out.items.empty(), "kv.scan_connection_lost");
      if (!out.items.empty() || !o.wait_for_ready) return;
      [[fallthrough]];
    default:
      fail("kv.outcome_kind", absl::StrCat("ended ", out.status.ToString()));
      return;
  }
}

Task<void> KvRun::Lane(int c) {
  SimRandom& rng = sim_.random_source();
  ClientSlot& slot = clients_[c];
  for (int i = 0; i < ops_; ++i) {
    const std::string key = Key(static_cast<int>(rng.Uniform(keys_)));
    // Scans first; the rest split 45:35:20 between Get, Put and Delete.
    const double pick = rng.UnitDouble();
    const double rest = (pick - scans_) / (1 - scans_);
    const Op op = pick < scans_ ? Op::kScan
                  : rest < 0.45 ? Op::kGet
                  : rest < 0.8  ? Op::kPut
                                : Op::kDelete;
    std::string value;
    if (op == Op::kPut) {
      value = absl::StrCat("c", c, ".", slot.next_seq++);
      put_[key].insert(value);  // before it is sent: it may be applied
    }
    RequestOptions options = RequestOptions::Timeout(
        rng.UniformDuration(absl::Milliseconds(50), absl::Seconds(1)));
    options.wait_for_ready = !rng.Bernoulli(0.3);
    options.exactly_once =
        op == Op::kPut && eo_on_ && eo_rng_.Bernoulli(eo_share_);
    // Now and then the caller gives up early, sometimes while the call is
    // in flight: the transport sends `cancel`.
    const absl::Duration abandon_after =
        rng.Bernoulli(0.05)
            ? rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(60))
            : absl::InfiniteDuration();
    ++calls_;
    if (op == Op::kScan) {
      StreamOptions scan_options;
      static_cast<RequestOptions&>(scan_options) = options;
      // Scans are abandoned more often: a stream cut mid-way is the case.
      const absl::Duration give_up =
          rng.Bernoulli(0.15) ? rng.UniformDuration(absl::ZeroDuration(),
                                                    absl::Milliseconds(60))
                              : abandon_after;
      const ScanSpec spec = RandomScan();
      ScanOutcome out = co_await Scan(c, spec, scan_options, give_up);
      CheckScan(c, spec, scan_options, out, /*quiet=*/false);
    } else {
      Outcome out = co_await Call(c, op, key, value, options, abandon_after);
      CheckChaosOutcome(c, op, key, value, options, out);
    }
    co_await moonpool::driver::Sleep(
        *slot.host,
        rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(50)));
  }
  ++lanes_done_;
}

// The quiet phase for key `k`, one call after the other from one client.
Task<void> KvRun::QuietKey(int k) {
  const int c = k % clients_n_;
  const std::string key = Key(k);
  const RequestOptions options = RequestOptions::Timeout(kQuietTimeout);
  auto call = [&](Op op, const std::string& value) {
    ++calls_;
    return Call(c, op, key, value, options, absl::InfiniteDuration());
  };
  auto liveness = [&](Op op, const Outcome& out) {
    if (out.status.ok()) return true;
    Fail(absl::InternalError(
        absl::StrCat("invariant kv.quiet_liveness: ", OpName(op), " ", key,
                     " ended ", out.status.ToString())));
    return false;
  };
  Outcome first = co_await call(Op::kGet, "");
  if (!liveness(Op::kGet, first)) co_return;
  if (restarted_for_quiet_) {
    Sometimes(!first.found, "kv.quiet.read_after_restart_empty");
    if (first.found) {
      Fail(absl::InternalError(
          absl::StrCat("invariant kv.restart_empties_store: after the restart ",
                       key, " holds '", first.value, "'")));
    }
  } else if (first.found && !put_[key].contains(first.value)) {
    Fail(absl::InternalError(
        absl::StrCat("invariant kv.get_value_was_put: quiet Get ", key,
                     " found '", first.value, "', which no Put sent")));
  }
  const std::string value = absl::StrCat("quiet.", k);
  put_[key].insert(value);
  Outcome put = co_await call(Op::kPut, value);
  if (!liveness(Op::kPut, put)) co_return;
  Outcome read = co_await call(Op::kGet, "");
  if (!liveness(Op::kGet, read)) co_return;
  if (!read.found || read.value != value) {
    Fail(absl::InternalError(
        absl::StrCat("invariant kv.read_back: acknowledged Put ", key, "=",
                     value, " then Get found ",
                     read.found ? absl::StrCat("'", read.value, "'")
                                : std::string("nothing"))));
    co_return;
  }
  Outcome del = co_await call(Op::kDelete, "");
  if (!liveness(Op::kDelete, del)) co_return;
  Outcome gone = co_await call(Op::kGet, "");
  if (!liveness(Op::kGet, gone)) co_return;
  if (!del.found || gone.found) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant kv.read_back: Delete ", key, " after its Put found ",
        del.found ? "it" : "nothing", ", then Get found ",
        gone.found ? absl::StrCat("'", gone.value, "'")
                   : std::string("nothing"))));
  }
  ++quiet_done_;
}

Task<void> KvRun::QuietScans() {
  SimRandom& rng = sim_.random_source();
  const int c = 0;
  std::map<std::string, std::string> model;  // what the store holds now
  for (int k = 0; k < keys_; ++k) {
    if (!rng.Bernoulli(0.7)) continue;
    const std::string key = Key(k);
    // Values long enough that a scan of a few keys passes its window.
    const std::string value =
        absl::StrCat("scan.", k, ".", std::string(rng.Uniform(80), 'x'));
    put_[key].insert(value);
    ++calls_;
    Outcome put = co_await Call(c, Op::kPut, key, value,
                                RequestOptions::Timeout(kQuietTimeout),
                                absl::InfiniteDuration());
    if (!put.status.ok()) {
      Fail(absl::InternalError(absl::StrCat("invariant kv.quiet_liveness: Put ",
                                            key, " ended ",
                                            put.status.ToString())));
      co_return;
    }
    model[key] = value;
  }
  for (int i = 0; i < 3; ++i) {
    const ScanSpec spec = RandomScan();
    StreamOptions options;
    options.timeout = kQuietTimeout;
    ++calls_;
    ScanOutcome out = co_await Scan(c, spec, options, absl::InfiniteDuration());
    CheckScan(c, spec, options, out, /*quiet=*/true);
    if (!out.status.ok()) {
      Fail(absl::InternalError(
          absl::StrCat("invariant kv.quiet_liveness: ", spec.ToString(),
                       " ended ", out.status.ToString())));
      co_return;
    }
    std::vector<std::pair<std::string, std::string>> want;
    for (auto it = model.lower_bound(spec.start);
         it != model.end() && (spec.end.empty() || it->first < spec.end) &&
         (spec.limit == 0 || want.size() < spec.limit);
         ++it) {
      want.emplace_back(it->first, it->second);
    }
    if (out.items != want) {
      Fail(absl::InternalError(absl::StrCat(
          "invariant kv.scan_exact: quiet ", spec.ToString(), " got ",
          Keys(out.items), ", the store holds ", Keys(want), " in range")));
      co_return;
    }
  }
  quiet_scans_done_ = true;
}

void KvRun::Teardown() {
  if (control_ != nullptr) control_->Clear();
  for (ClientSlot& c : clients_) {
    if (c.tasks != nullptr) c.tasks->Clear();
  }
  for (ClientSlot& c : clients_) {
    if (c.transport != nullptr) c.transport->Close();
    c.transport.reset();
    c.tasks.reset();
  }
  StopServerNow();
  control_.reset();
}

absl::Status KvRun::Execute(WorkloadContext& ctx) {
  moonpool::chaos::AssertionRegistry& reg = sim_.assertions();
  for (absl::string_view n : kCoveragePoints) reg.Declare(n);
  SimRandom& rng = sim_.random_source();
  {
    SimRandom copy = rng;
    eo_rng_ = copy.Fork();
    eo_on_ = eo_rng_.Bernoulli(0.5);
    eo_share_ = 0.5 + 0.5 * eo_rng_.UnitDouble();
  }
  absl::StatusOr<SimHost*> h = sim_.AddHost(kServerIp);
  if (!h.ok()) return h.status();
  server_host_ = *h;
  server_address_ = server_host_->Addr(kPort);
  if (absl::Status st = sim_.SetHostName(kServerName, {kServerIp}); !st.ok()) {
    return st;
  }
  absl::StatusOr<HostPort> target = HostPort::FromParts(kServerName, kPort);
  if (!target.ok()) return target.status();
  server_target_ = *target;
  for (int c = 0; c < clients_n_; ++c) {
    absl::StatusOr<SimHost*> ch = sim_.AddHost(absl::StrCat("10.0.6.", c + 1));
    if (!ch.ok()) return ch.status();
    ClientSlot slot;
    slot.host = *ch;
    slot.transport = std::make_unique<ClientTransport>(**ch);
    slot.tasks = std::make_unique<TaskScope>(**ch, [this](absl::Status e) {
      Fail(absl::InternalError(
          absl::StrCat("client task failed: ", e.ToString())));
    });
    clients_.push_back(std::move(slot));
  }
  if (absl::Status s = StartServer(); !s.ok()) return s;
  control_ = std::make_unique<TaskScope>(sim_, [this](absl::Status e) {
    Fail(absl::InternalError(
        absl::StrCat("control task failed: ", e.ToString())));
  });
  // Restarts are the workload's own fault: most seeds have them, whatever
  // the network's plan.
  restarts_ = rng.Bernoulli(0.8);
  if (restarts_) {
    controller_done_ = false;
    control_->Spawn(Controller());
  }
  for (int c = 0; c < clients_n_; ++c) clients_[c].tasks->Spawn(Lane(c));

  auto hang = [&](absl::string_view phase) {
    return absl::DeadlineExceededError(absl::StrCat(
        "invariant kv.no_hang: the ", phase,
        " phase did not end by t=", absl::FormatDuration(ctx.Elapsed()), " (",
        calls_ - outcomes_, " calls without an outcome)"));
  };
  auto finish = [&](absl::Status s) {
    ctx.stats().requests = calls_;
    ctx.stats().round_trips = oks_;
    Teardown();
    Sometimes(server_get_cancels_ > 0, "kv.server.get_cancelled");
    return s;
  };

  // Chaos: every lane runs its calls to their outcomes.
  if (!sim_.RunUntil([&] { return lanes_done_ == clients_n_; },
                     sim_.Now() + kPhaseBudget)) {
    return finish(hang("chaos"));
  }
  chaos_over_ = true;
  sim_.set_chaos({});
  if (!sim_.RunUntil([&] { return controller_done_; },
                     sim_.Now() + kPhaseBudget)) {
    return finish(hang("restart"));
  }
  if (!failure_.ok()) return finish(failure_);
  // Quiet: faults off; what the chaos held is released and every chaos call
  // has long ended. Then, in some seeds, one more restart: the store must
  // come back empty.
  sim_.RunUntil([] { return false; }, sim_.Now() + kQuietSettle);
  if (restarts_ && rng.Bernoulli(0.5)) {
    bool restarted = false;
    control_->Spawn([](KvRun* run, bool abrupt, bool* done) -> Task<void> {
      co_await run->Restart(abrupt);
      *done = true;
    }(this, rng.Bernoulli(0.5), &restarted));
    if (!sim_.RunUntil([&] { return restarted; }, sim_.Now() + kPhaseBudget)) {
      return finish(hang("final restart"));
    }
    restarted_for_quiet_ = true;
  }
  const int quiet_calls_target = keys_;
  for (int k = 0; k < keys_; ++k)
    clients_[k % clients_n_].tasks->Spawn(QuietKey(k));
  if (!sim_.RunUntil(
          [&] { return quiet_done_ == quiet_calls_target || !failure_.ok(); },
          sim_.Now() + kPhaseBudget)) {
    return finish(hang("quiet"));
  }
  // Every QuietKey ended with its key deleted: the store is empty, and
  // QuietScans knows exactly what it holds.
  if (failure_.ok()) {
    clients_[0].tasks->Spawn(QuietScans());
    if (!sim_.RunUntil([&] { return quiet_scans_done_ || !failure_.ok(); },
                       sim_.Now() + kPhaseBudget)) {
      return finish(hang("quiet scan"));
    }
  }
  if (failure_.ok() && outcomes_ != calls_) {
    Fail(absl::InternalError(absl::StrCat("invariant kv.one_outcome: ", calls_,
                                          " calls, ", outcomes_, " outcomes")));
  }
  return finish(failure_);
}

class KvWorkload final : public moonpool::chaos::Workload {
 public:
  KvWorkload(int clients, int ops, int keys, double scans)
      : clients_(clients), ops_(ops), keys_(keys), scans_(scans) {}
  absl::string_view name() const override { return "kv"; }
  absl::Status Simulate(WorkloadContext& ctx) override {
    if (clients_ < 1 || ops_ < 0 || keys_ < 1 || !(scans_ >= 0) ||
        !(scans_ < 1)) {
      return absl::InvalidArgumentError(
          "--kv_clients and --kv_keys must be positive, --kv_ops not "
          "negative, --kv_scans in [0, 1)");
    }
    KvRun run(ctx.sim(), clients_, ops_, keys_, scans_);
    return run.Execute(ctx);
  }

 private:
  int clients_, ops_, keys_;
  double scans_;
};

}  // namespace

void RegisterKvWorkload() {
  moonpool::chaos::WorkloadRegistry::Global().Register("kv", [] {
    return std::make_unique<KvWorkload>(
        absl::GetFlag(FLAGS_kv_clients), absl::GetFlag(FLAGS_kv_ops),
        absl::GetFlag(FLAGS_kv_keys), absl::GetFlag(FLAGS_kv_scans));
  });
}

}  // namespace kv
