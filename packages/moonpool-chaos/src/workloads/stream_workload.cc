#include "workloads/stream_workload.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/protocol/always.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/method_handler.h"
#include "moonpool/transport/method_stats.h"
#include "moonpool/transport/reply_stream.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_transport.h"
#include "moonpool/transport/stream_method.h"
#include "moonpool/transport/stream_writer.h"
#include "workloads/workload_tls.h"

namespace moonpool::chaos {
namespace {

using driver::Task;
using driver::TaskScope;
using transport::ClientTransport;
using transport::HandlerOptions;
using transport::ReplyStream;
using transport::RequestContext;
using transport::ServerOptions;
using transport::ServerTransport;
using transport::StreamMethod;
using transport::StreamOptions;
using transport::StreamWriter;

constexpr uint16_t kPort = 4600;
constexpr absl::string_view kServerIp = "10.0.3.1";
constexpr absl::string_view kServerName = "stream.sim";

// Request: "s|<key>|<n>|<max padding>|<fail at>|<code>|<max delay us>|
// <window>|<idempotent>"; item: "<key>|<attempt>|<index>|<checksum>|<pad>".
const StreamMethod<std::string, std::string> kItems{"sim.Stream/Items"};

// Handler slots, below the clients' lanes together, so that streams queue
// for a slot in every run and the server's bound is checked.
constexpr size_t kMaxConcurrent = 4;
// In the quiet phase each client opens, at once: a stream that must end
// done and one that must end with its handler's error.
constexpr int kQuietStreamsPerClient = 2;

// Declared up front so that a point never reached shows as a hole.
constexpr absl::string_view kCoveragePoints[] = {
    "stream.end.done",
    "stream.end.error",
    "stream.end.cancel",
    "stream.end.deadline",
    "stream.end.connection_lost",
    "stream.end.connection_lost_after_items",
    "stream.writer_waited_for_credit",
    "stream.writer_cancelled",
    "stream.resent_before_first_item",
    "restart.graceful",
    "restart.abrupt",
};

// The codes a handler ends a stream with: none is one the transport makes
// up itself, so the client can tell the handler's end from a transport's.
constexpr absl::StatusCode kHandlerErrorCodes[] = {
    absl::StatusCode::kNotFound,
    absl::StatusCode::kDataLoss,
    absl::StatusCode::kPermissionDenied,
    absl::StatusCode::kOutOfRange,
};

bool IsHandlerErrorCode(absl::StatusCode code) {
  for (absl::StatusCode c : kHandlerErrorCodes) {
    if (c == code) return true;
  }
  return false;
}

std::string HandlerErrorMessage(uint64_t key) {
  return absl::StrCat("handler error for stream ", key);
}

uint64_t Key(int client, uint64_t seq) {
  return (static_cast<uint64_t>(client) << 32) | seq;
}

std::string KeyName(uint64_t key) {
  return absl::StrCat("c", key >> 32, "/", key & 0xffffffffu);
}

// FNV-1a, 64 bits: a checksum both sides compute alike (absl::Hash is
// salted per process).
uint64_t Checksum(absl::string_view a, absl::string_view b) {
  uint64_t h = 14695981039346656037ull;
  for (absl::string_view part : {a, absl::string_view("|"), b}) {
    for (char ch : part) {
      h ^= static_cast<unsigned char>(ch);
      h *= 1099511628211ull;
    }
  }
  return h;
}

char PadByte(uint64_t key, uint64_t index, size_t j) {
  return static_cast<char>('a' + (key * 31 + index * 7 + j) % 26);
}

std::string MakeItem(uint64_t key, int attempt, int index, size_t pad_bytes) {
  std::string pad(pad_bytes, ' ');
  for (size_t j = 0; j < pad_bytes; ++j) pad[j] = PadByte(key, index, j);
  const std::string head = absl::StrCat(key, "|", attempt, "|", index);
  return absl::StrCat(
      head, "|", absl::Hex(Checksum(head, pad), absl::kZeroPad16), "|", pad);
}

struct ParsedItem {
  uint64_t key = 0;
  int attempt = 0;
  int index = 0;
};

// The item's fields if it is whole: its checksum and padding match.
std::optional<ParsedItem> ParseItem(absl::string_view item) {
  std::vector<absl::string_view> f =
      absl::StrSplit(item, absl::MaxSplits('|', 4));
  ParsedItem p;
  uint64_t sum = 0;
  if (f.size() != 5 || !absl::SimpleAtoi(f[0], &p.key) ||
      !absl::SimpleAtoi(f[1], &p.attempt) ||
      !absl::SimpleAtoi(f[2], &p.index) || f[3].size() != 16 ||
      !absl::SimpleHexAtoi(f[3], &sum)) {
    return std::nullopt;
  }
  const absl::string_view head(
      f[0].data(),
      static_cast<size_t>(f[2].data() + f[2].size() - f[0].data()));
  if (Checksum(head, f[4]) != sum) return std::nullopt;
  for (size_t j = 0; j < f[4].size(); ++j) {
    if (f[4][j] != PadByte(p.key, p.index, j)) return std::nullopt;
  }
  return p;
}

// What one stream asks for, and how its client treats it.
struct Plan {
  int items = 1;
  uint64_t max_padding = 0;
  int fail_at = -1;  // the handler's error after this many items; -1: none
  absl::StatusCode code = absl::StatusCode::kOk;
  absl::Duration max_item_delay = absl::ZeroDuration();
  absl::Duration max_consume_delay = absl::ZeroDuration();
  uint64_t window = 0;
  bool idempotent = false;
  int cancel_after = -1;  // the client destroys it after this many; -1: no
  absl::Duration timeout = absl::Seconds(10);
};

// The largest item stream `key` can get from attempts up to `attempt`.
uint64_t MaxItemBytes(uint64_t key, int attempt, const Plan& p) {
  return MakeItem(key, attempt, p.items - 1, 0).size() + p.max_padding;
}

struct Request {
  uint64_t key = 0;
  Plan plan;
};

std::string EncodeRequest(uint64_t key, const Plan& p) {
  return absl::StrCat("s|", key, "|", p.items, "|", p.max_padding, "|",
                      p.fail_at, "|", static_cast<int>(p.code), "|",
                      absl::ToInt64Microseconds(p.max_item_delay), "|",
                      p.window, "|", p.idempotent ? 1 : 0);
}

std::optional<Request> ParseRequest(absl::string_view s) {
  std::vector<absl::string_view> f = absl::StrSplit(s, '|');
  Request r;
  int code = 0, idem = 0;
  int64_t delay_us = 0;
  if (f.size() != 9 || f[0] != "s" || !absl::SimpleAtoi(f[1], &r.key) ||
      !absl::SimpleAtoi(f[2], &r.plan.items) ||
      !absl::SimpleAtoi(f[3], &r.plan.max_padding) ||
      !absl::SimpleAtoi(f[4], &r.plan.fail_at) ||
      !absl::SimpleAtoi(f[5], &code) || !absl::SimpleAtoi(f[6], &delay_us) ||
      !absl::SimpleAtoi(f[7], &r.plan.window) ||
      !absl::SimpleAtoi(f[8], &idem)) {
    return std::nullopt;
  }
  r.plan.code = static_cast<absl::StatusCode>(code);
  r.plan.max_item_delay = absl::Microseconds(delay_us);
  r.plan.idempotent = idem != 0;
  return r;
}

// One stream, as the client sees it.
struct StreamRecord {
  Plan plan;
  bool quiet = false;
  int attempt = 0;  // the server attempt its items came from; 0: none yet
  int received = 0;
  int ends = 0;
  absl::Time deadline;  // the client's, when it called
};

// One handler invocation for a stream: bytes written (Write yielded OK) and
// bytes of its items the client consumed (Next yielded them).
struct AttemptRecord {
  uint64_t written = 0;
  uint64_t consumed = 0;
};

struct ServerProcess {
  std::unique_ptr<ServerTransport> transport;
};

struct ClientSlot {
  SimHost* host = nullptr;
  std::unique_ptr<ClientTransport> transport;
  std::unique_ptr<TaskScope> tasks;
  uint64_t next_seq = 1;
};

// Everything one run holds; tasks and handlers point into it.
class StreamRun {
 public:
  StreamRun(SimLoop& sim, const StreamWorkloadOptions& o) : sim_(sim), o_(o) {}

  absl::Status Execute(WorkloadContext& ctx);

 private:
  void Fail(absl::Status s) {
    if (failure_.ok()) failure_ = std::move(s);
  }
  void Violation(absl::string_view name, absl::string_view what) {
    Fail(absl::InternalError(
        absl::StrCat("invariant stream.", name, ": ", what)));
  }
  absl::Status StartServer();
  void StopServerNow();
  // Whether anything that may lose a connection happened in the run.
  bool Lossy() const;
  Task<absl::Status> Handle(RequestContext& ctx, std::string request,
                            StreamWriter<std::string>& out);
  Plan DrawPlan(bool quiet);
  Task<void> Lane(int c);
  Task<void> OneStream(int c, Plan plan, bool quiet);
  void TakeItem(uint64_t key, StreamRecord& rec, absl::string_view item);
  void Ended(uint64_t key, StreamRecord& rec, const absl::Status& end,
             bool cancelled);
  Task<void> Controller();
  Task<void> Monitor();
  void CheckBounds(bool drained);
  void Teardown();
  // The transport's own Always (protocol.stream_within_credit), reported as
  // this workload's invariant (the runner would report it too, unnamed,
  // after whatever it broke downstream).
  void CheckTransportAlways();

  SimLoop& sim_;
  const StreamWorkloadOptions& o_;
  absl::Status failure_;
  SimHost* server_host_ = nullptr;
  driver::HostPort target_;
  uint64_t incarnation_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::vector<ClientSlot> clients_;
  std::unique_ptr<TaskScope> control_;
  // std::map: handlers and consumers keep references across suspensions.
  std::map<uint64_t, StreamRecord> streams_;
  std::map<std::pair<uint64_t, int>, AttemptRecord> attempts_;
  absl::btree_map<uint64_t, int> handled_;  // handler invocations by stream
  uint64_t opened_ = 0, ended_ = 0, items_ = 0;
  // Streams that ended Unavailable or Aborted after an item; restarts done;
  // keepalive timeouts and protocol errors of server incarnations gone.
  uint64_t lost_after_items_ = 0, restarts_ = 0;
  uint64_t server_keepalive_timeouts_ = 0, server_protocol_errors_ = 0;
  int handlers_running_ = 0;
  int lanes_done_ = 0;
  bool chaos_over_ = false;
  bool controller_done_ = true;
  bool graceful_ = false, abrupt_ = false;
  // TLS (ChaosConfig::tls, read once at the start: the quiet phase's plan
  // has it off): the contexts, and what the servers and ends counted.
  bool tls_ = false;
  internal::WorkloadTls tls_contexts_;
  uint64_t tls_handshakes_ = 0, tls_handshake_failures_ = 0;
  uint64_t tls_record_failures_ = 0;
};

// Counts the handlers alive (a killed server destroys them mid-way).
class HandlerCount {
 public:
  explicit HandlerCount(int& n) : n_(n) { ++n_; }
  HandlerCount(const HandlerCount&) = delete;
  HandlerCount& operator=(const HandlerCount&) = delete;
  ~HandlerCount() { --n_; }

 private:
  int& n_;
};

absl::Status StreamRun::StartServer() {
  ServerOptions so;
  so.drain_timeout = absl::Seconds(1);
  so.connection.incarnation = ++incarnation_;
  if (tls_) so.tls = tls_contexts_.servers[0];
  absl::StatusOr<std::unique_ptr<ServerTransport>> t =
      ServerTransport::Bind(*server_host_, server_host_->Addr(kPort), so);
  if (!t.ok()) {
    return absl::InternalError(
        absl::StrCat("invariant stream.server_bind: ", "incarnation ",
                     incarnation_, ": ", t.status().ToString()));
  }
  HandlerOptions ho;
  ho.max_concurrent = kMaxConcurrent;
  absl::Status s = (*t)->HandleStream(
      kItems,
      [this](RequestContext& ctx, std::string request,
             StreamWriter<std::string>& out) -> Task<absl::Status> {
        return Handle(ctx, std::move(request), out);
      },
      ho);
  if (!s.ok()) return s;
  server_ = std::make_unique<ServerProcess>();
  server_->transport = std::move(*t);
  return absl::OkStatus();
}

void StreamRun::StopServerNow() {
  if (server_ == nullptr) return;
  const transport::ServerStats st = server_->transport->stats();
  server_keepalive_timeouts_ += st.keepalive_timeouts + st.read_timeouts;
  server_protocol_errors_ += st.protocol_errors;
  tls_handshakes_ += st.tls_handshakes;
  tls_handshake_failures_ += st.tls_handshake_failures;
  server_.reset();
}

bool StreamRun::Lossy() const {
  const AssertionRegistry& reg = sim_.assertions();
  auto happened = [&](absl::string_view n) {
    auto it = reg.points().find(n);
    return it != reg.points().end() && it->second.held > 0;
  };
  uint64_t keepalive = server_keepalive_timeouts_,
           protocol_errors = server_protocol_errors_;
  if (server_ != nullptr) {
    const transport::ServerStats st = server_->transport->stats();
    keepalive += st.keepalive_timeouts + st.read_timeouts;
    protocol_errors += st.protocol_errors;
  }
  for (const ClientSlot& c : clients_) {
    const driver::Peer* p = c.transport->peer(target_);
    if (p != nullptr) {
      keepalive += p->stats().keepalive_timeouts;
      protocol_errors += p->stats().protocol_errors;
    }
  }
  return happened("fault.reset") || happened("fault.half_close") ||
         happened("fault.bit_flip") || happened("fault.host_killed") ||
         restarts_ > 0 || keepalive > 0 || protocol_errors > 0;
}

Task<absl::Status> StreamRun::Handle(RequestContext& ctx, std::string request,
                                     StreamWriter<std::string>& out) {
  const HandlerCount alive(handlers_running_);
  if (tls_) {
    // Mutual TLS: every call comes from a client whose certificate the
    // server verified, and the handler sees who.
    const driver::PeerIdentity* who = ctx.peer_identity();
    if (who == nullptr || who->uris.size() != 1 ||
        !absl::StartsWith(who->uris[0], "spiffe://moonpool.sim/client-")) {
      Violation("tls_peer_identity",
                absl::StrCat("a handler's peer identity is ",
                             who == nullptr ? std::string("missing")
                                            : absl::StrCat("subject '",
                                                           who->subject, "'")));
    }
  }
  SimRandom& rng = sim_.random_source();
  std::optional<Request> r = ParseRequest(request);
  if (!r.has_value() || !streams_.contains(r->key)) {
    Violation("item_intact", absl::StrCat("the server got request '", request,
                                          "', which no client sent"));
    co_return absl::InvalidArgumentError("not a request of this workload");
  }
  const uint64_t key = r->key;
  const Plan& p = r->plan;
  const int attempt = ++handled_[key];
  if (!p.idempotent && attempt > 1) {
    Violation("at_most_once",
              absl::StrCat("non-idempotent stream ", KeyName(key),
                           " reached a handler ", attempt, " times"));
  }
  AttemptRecord& a = attempts_[{key, attempt}];
  const absl::Duration delay =
      rng.UniformDuration(absl::ZeroDuration(), p.max_item_delay);
  for (int i = 0; i < p.items; ++i) {
    if (i == p.fail_at)
      co_return absl::Status(p.code, HandlerErrorMessage(key));
    if (delay > absl::ZeroDuration() && rng.Bernoulli(0.5)) {
      co_await driver::Sleep(*server_host_,
                             rng.UniformDuration(absl::ZeroDuration(), delay));
    }
    const std::string item =
        MakeItem(key, attempt, i, rng.Uniform(p.max_padding + 1));
    // Once the unconsumed bytes fill the window the writer cannot have
    // credit: the client grants at most what it consumed.
    // (Signed: an item may be consumed before its Write resumes here.)
    const bool must_wait = static_cast<int64_t>(a.written - a.consumed) >=
                           static_cast<int64_t>(p.window);
    const uint64_t before = a.written;
    absl::Status s = co_await out.Write(item);
    if (!s.ok()) {
      // The call ended first (cancel, deadline, connection or server gone):
      // stream_writer.h promises Cancelled, and nothing else for an item
      // that encodes and fits a frame.
      Sometimes(true, "stream.writer_cancelled");
      if (!absl::IsCancelled(s)) {
        Violation("write_outcome",
                  absl::StrCat(KeyName(key), " attempt ", attempt, " item ", i,
                               ": Write yielded ", s.ToString()));
      }
      co_return s;  // stop writing
    }
    a.written += item.size();
    Sometimes(must_wait, "stream.writer_waited_for_credit");
    // The item went out within credit: the bytes sent before it and not
    // granted back were below the window, and the client grants no more
    // than it consumed.
    const int64_t unconsumed = static_cast<int64_t>(before - a.consumed);
    if (unconsumed >= static_cast<int64_t>(p.window)) {
      Violation("server_within_window",
                absl::StrCat(KeyName(key), " attempt ", attempt, " item ", i,
                             ": written with ", unconsumed,
                             " bytes unconsumed before it, window ", p.window));
    }
  }
  if (p.fail_at == p.items) {
    co_return absl::Status(p.code, HandlerErrorMessage(key));
  }
  co_return absl::OkStatus();
}

Plan StreamRun::DrawPlan(bool quiet) {
  SimRandom& rng = sim_.random_source();
  Plan p;
  p.items = static_cast<int>(rng.UniformInRange(1, o_.max_items));
  p.max_padding = rng.Uniform(o_.max_item_padding + 1);
  p.window = static_cast<uint64_t>(
      rng.UniformInRange(static_cast<int64_t>(o_.min_window),
                         static_cast<int64_t>(o_.max_window)));
  p.max_item_delay =
      rng.UniformDuration(absl::ZeroDuration(), o_.max_item_delay);
  p.max_consume_delay =
      rng.Bernoulli(0.5)
          ? absl::ZeroDuration()
          : rng.UniformDuration(absl::ZeroDuration(), o_.max_consume_delay);
  p.idempotent = rng.Bernoulli(o_.idempotent_probability);
  if (rng.Bernoulli(o_.fail_probability)) {
    p.fail_at = static_cast<int>(rng.UniformInRange(0, p.items));
    p.code = kHandlerErrorCodes[rng.Uniform(std::size(kHandlerErrorCodes))];
  }
  if (quiet) {
    p.timeout = o_.quiet_timeout;
    return p;
  }
  if (rng.Bernoulli(o_.cancel_probability)) {
    p.cancel_after = static_cast<int>(rng.UniformInRange(0, p.items - 1));
  }
  p.timeout =
      rng.Bernoulli(o_.short_deadline_probability)
          ? rng.UniformDuration(o_.short_deadline_min, o_.short_deadline_max)
          : rng.UniformDuration(absl::Seconds(1), absl::Seconds(8));
  return p;
}

void StreamRun::TakeItem(uint64_t key, StreamRecord& rec,
                         absl::string_view item) {
  ++items_;
  std::optional<ParsedItem> it = ParseItem(item);
  if (!it.has_value() || it->key != key) {
    Violation("item_intact", absl::StrCat(KeyName(key), " got item '",
                                          item.substr(0, 64), "'"));
    return;
  }
  if (rec.attempt == 0) {
    rec.attempt = it->attempt;
    Sometimes(it->attempt > 1, "stream.resent_before_first_item");
  } else if (it->attempt != rec.attempt) {
    Violation(
        "never_resent_after_item",
        absl::StrCat(KeyName(key), " item ", it->index, " came from attempt ",
                     it->attempt, " after items of attempt ", rec.attempt));
  }
  if (it->index != rec.received) {
    Violation("in_order",
              absl::StrCat(KeyName(key), " got item ", it->index, " as its ",
                           rec.received, "-th (",
                           it->index < rec.received ? "duplicated" : "lost",
                           " items)"));
  }
  ++rec.received;
  attempts_[{key, it->attempt}].consumed += item.size();
}

void StreamRun::CheckTransportAlways() {
  const AssertionRegistry& reg = sim_.assertions();
  const auto it =
      reg.points().find(protocol::always_points::kStreamWithinCredit);
  if (it != reg.points().end() && it->second.held < it->second.reached) {
    Violation("transport_within_credit",
              absl::StrCat(it->second.reached - it->second.held, " of ",
                           it->second.reached,
                           " items sent or received past credit; first: ",
                           it->second.first_failure));
  }
}

void StreamRun::Ended(uint64_t key, StreamRecord& rec, const absl::Status& end,
                      bool cancelled) {
  // First, so that a stream its connection lost for an overrun reports the
  // overrun, not what followed from it.
  CheckTransportAlways();
  ++ended_;
  if (++rec.ends != 1) {
    Violation("one_end", absl::StrCat(KeyName(key), " ended ", rec.ends,
                                      " times, now with ", end.ToString()));
  }
  const Plan& p = rec.plan;
  const std::string id = KeyName(key);
  sim_.TraceUser(12, key, static_cast<uint64_t>(end.code()));
  if (internal::EndedByTlsRecordFailure(end)) ++tls_record_failures_;
  if (cancelled) {
    Sometimes(true, "stream.end.cancel");
    return;
  }
  bool as_handler_ends = false;
  if (end.ok()) {
    Sometimes(true, "stream.end.done");
    as_handler_ends = true;
    if (p.fail_at >= 0 || rec.received != p.items) {
      Violation(
          p.fail_at >= 0 ? "end_kind" : "none_lost",
          absl::StrCat(
              id, " ended OK after ", rec.received, " of ", p.items, " items",
              p.fail_at >= 0
                  ? absl::StrCat("; its handler fails after ", p.fail_at)
                  : ""));
    }
  } else if (IsHandlerErrorCode(end.code())) {
    Sometimes(true, "stream.end.error");
    as_handler_ends = true;
    if (end != absl::Status(p.code, HandlerErrorMessage(key))) {
      Violation(
          "end_kind",
          absl::StrCat(
              id, " wanted ",
              p.fail_at >= 0
                  ? absl::Status(p.code, HandlerErrorMessage(key)).ToString()
                  : std::string("no handler error"),
              ", got ", end.ToString()));
    } else if (rec.received != p.fail_at) {
      Violation("none_lost",
                absl::StrCat(id, " ended with its handler's error after ",
                             rec.received, " items, not ", p.fail_at));
    }
  } else {
    switch (end.code()) {
      case absl::StatusCode::kDeadlineExceeded:
        Sometimes(true, "stream.end.deadline");
        // The server's deadline is the client's or later (the budget
        // travels and shrinks), so no end may beat the client's own.
        if (sim_.Now() < rec.deadline) {
          Violation(
              "deadline_not_early",
              absl::StrCat(id, " ended DeadlineExceeded ",
                           absl::FormatDuration(rec.deadline - sim_.Now()),
                           " before its deadline"));
        }
        break;
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kAborted:
        Sometimes(true, "stream.end.connection_lost");
        Sometimes(rec.received > 0, "stream.end.connection_lost_after_items");
        if (rec.received > 0) ++lost_after_items_;
        break;
      default:
        Violation("end_kind", absl::StrCat(id, " ended with ", end.ToString(),
                                           " after ", rec.received, " items"));
    }
  }
  if (rec.quiet && !as_handler_ends) {
    Violation("quiet_liveness",
              absl::StrCat(id, " ended with ", end.ToString(), " after ",
                           rec.received, " of ", p.items,
                           " items in the quiet phase"));
  }
}

Task<void> StreamRun::OneStream(int c, Plan plan, bool quiet) {
  ClientSlot& client = clients_[c];
  SimRandom& rng = sim_.random_source();
  const uint64_t key = Key(c, client.next_seq++);
  StreamRecord& rec = streams_[key];
  rec.plan = plan;
  rec.quiet = quiet;
  rec.deadline = sim_.Now() + plan.timeout;
  ++opened_;
  sim_.TraceUser(11, key, plan.items);
  StreamOptions so;
  so.timeout = plan.timeout;
  so.idempotent = plan.idempotent;
  so.window_bytes = plan.window;
  absl::StatusOr<ReplyStream<std::string>> call = client.transport->CallStream(
      target_, kItems, EncodeRequest(key, plan), so);
  if (!call.ok()) {
    Violation("call_accepted",
              absl::StrCat(KeyName(key), ": ", call.status().ToString()));
    Ended(key, rec, call.status(), /*cancelled=*/false);
    co_return;
  }
  std::optional<ReplyStream<std::string>> stream(std::move(*call));
  // Items still buffered were never seen here, so the bound takes the
  // largest item the plan allows (its attempt no later than the server's
  // latest for it).
  auto check_buffer = [&] {
    const uint64_t most = stream->stats().max_buffered_bytes;
    const uint64_t item = MaxItemBytes(key, std::max(handled_[key], 1), plan);
    if (most > plan.window + item) {
      Violation(
          "client_buffer",
          absl::StrCat(KeyName(key), " buffered ", most, " bytes, window ",
                       plan.window, ", largest item possible ", item));
    }
  };
  absl::Status end;
  while (true) {
    if (rec.received == plan.cancel_after) {
      check_buffer();
      stream.reset();  // cancels the call
      Ended(key, rec, absl::CancelledError("cancelled by the client"),
            /*cancelled=*/true);
      co_return;
    }
    absl::StatusOr<std::optional<std::string>> next = co_await stream->Next();
    if (!next.ok()) {
      end = next.status();
      break;
    }
    if (!next->has_value()) break;
    TakeItem(key, rec, **next);
    if (plan.max_consume_delay > absl::ZeroDuration()) {
      co_await driver::Sleep(
          *client.host,
          rng.UniformDuration(absl::ZeroDuration(), plan.max_consume_delay));
    }
  }
  check_buffer();
  Ended(key, rec, end, /*cancelled=*/false);
  // Exactly one end: asked again, the stream says the same.
  absl::StatusOr<std::optional<std::string>> again = co_await stream->Next();
  const bool same =
      end.ok() ? again.ok() && !again->has_value() : again.status() == end;
  if (!same) {
    Violation("one_end", absl::StrCat(KeyName(key), " ended with ",
                                      end.ToString(), ", then Next yielded ",
                                      again.ok() ? (again->has_value()
                                                        ? std::string("an item")
                                                        : std::string("OK"))
                                                 : again.status().ToString()));
  }
}

Task<void> StreamRun::Lane(int c) {
  SimRandom& rng = sim_.random_source();
  for (int i = 0; i < o_.streams_per_lane; ++i) {
    co_await OneStream(c, DrawPlan(/*quiet=*/false), /*quiet=*/false);
    co_await driver::Sleep(
        *clients_[c].host,
        rng.UniformDuration(absl::ZeroDuration(), o_.max_think));
  }
  ++lanes_done_;
}

Task<void> StreamRun::Controller() {
  SimRandom& rng = sim_.random_source();
  while (!chaos_over_) {
    co_await driver::Sleep(sim_, rng.UniformDuration(absl::Milliseconds(50),
                                                     absl::Milliseconds(400)));
    if (chaos_over_) break;
    const bool abrupt = graceful_ && abrupt_ ? rng.Bernoulli(0.5) : abrupt_;
    sim_.TraceUser(13, abrupt);
    ++restarts_;
    if (abrupt) {
      Sometimes(true, "restart.abrupt");
      (void)sim_.KillHost(std::string(kServerIp));
      StopServerNow();  // the dead process's objects
      co_await driver::Sleep(
          sim_,
          rng.UniformDuration(absl::ZeroDuration(), absl::Milliseconds(100)));
      if (absl::Status st = sim_.RestartHost(std::string(kServerIp));
          !st.ok()) {
        Fail(st);
      }
    } else {
      Sometimes(true, "restart.graceful");
      co_await server_->transport->Close(/*drain=*/true);
      StopServerNow();
    }
    if (absl::Status st = StartServer(); !st.ok()) Fail(st);
  }
  controller_done_ = true;
}

void StreamRun::CheckBounds(bool drained) {
  // Each lane has at most one stream open; a stream the server still
  // serves for a connection that died (its handler not yet told) may be
  // counted beside its resent copy.
  const size_t lanes = static_cast<size_t>(
      std::max(o_.lanes_per_client, kQuietStreamsPerClient));
  const size_t all_lanes = lanes * clients_.size();
  for (size_t c = 0; c < clients_.size(); ++c) {
    const driver::Peer* p = clients_[c].transport->peer(target_);
    const size_t pending = p == nullptr ? 0 : p->pending_requests();
    if (pending > (drained ? 0 : lanes)) {
      Violation("memory", absl::StrCat("client ", c, " has ", pending,
                                       " requests pending",
                                       drained ? " after the quiet phase" : "",
                                       " (lanes ", lanes, ")"));
    }
  }
  if (server_ == nullptr) return;
  const transport::ServerStats st = server_->transport->stats();
  std::optional<transport::MethodStats> ms =
      server_->transport->method_stats(kItems);
  const size_t running = ms.has_value() ? ms->running : 0;
  const size_t queued = ms.has_value() ? ms->queued : 0;
  const size_t bound = drained ? 0 : 2 * all_lanes;
  if (running > (drained ? 0 : kMaxConcurrent) || running + queued > bound ||
      st.requests_in_flight > bound || st.queued_messages > bound ||
      (drained && handlers_running_ != 0)) {
    Violation("memory",
              absl::StrCat(
                  "server: handlers running ", running, " queued ", queued,
                  ", requests in flight ", st.requests_in_flight,
                  ", messages queued ", st.queued_messages, ", handler frames ",
                  handlers_running_, drained ? " after the quiet phase" : "",
                  " (bound ", bound, ")"));
  }
}

Task<void> StreamRun::Monitor() {
  while (true) {
    co_await driver::Sleep(sim_, absl::Milliseconds(50));
    CheckBounds(/*drained=*/false);
    CheckTransportAlways();
  }
}

void StreamRun::Teardown() {
  if (control_ != nullptr) control_->Clear();
  // Client tasks own their ReplyStreams, which borrow the transports' Peers.
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

absl::Status StreamRun::Execute(WorkloadContext& ctx) {
  AssertionRegistry& reg = sim_.assertions();
  for (absl::string_view n : kCoveragePoints) reg.Declare(n);
  for (absl::string_view n : internal::kTlsCoveragePoints) reg.Declare(n);
  const absl::Time t0 = sim_.Now();
  SimRandom& rng = sim_.random_source();
  if (sim_.chaos().any_fault()) {
    graceful_ = rng.Bernoulli(0.5);
    abrupt_ = rng.Bernoulli(0.5);
  }
  absl::StatusOr<SimHost*> h = sim_.AddHost(std::string(kServerIp));
  if (!h.ok()) return h.status();
  server_host_ = *h;
  if (absl::Status st =
          sim_.SetHostName(std::string(kServerName), {std::string(kServerIp)});
      !st.ok()) {
    return st;
  }
  absl::StatusOr<driver::HostPort> target =
      driver::HostPort::FromParts(kServerName, kPort);
  if (!target.ok()) return target.status();
  target_ = *target;
  tls_ = sim_.chaos().tls;
  if (tls_) {
    absl::StatusOr<internal::WorkloadTls> tls = internal::MakeWorkloadTls(
        sim_.seed(), {{std::string(kServerName), std::string(kServerIp)}},
        o_.clients);
    if (!tls.ok()) return tls.status();
    tls_contexts_ = *std::move(tls);
  }
  for (int c = 0; c < o_.clients; ++c) {
    absl::StatusOr<SimHost*> ch = sim_.AddHost(absl::StrCat("10.0.4.", c + 1));
    if (!ch.ok()) return ch.status();
    ClientSlot slot;
    slot.host = *ch;
    transport::ClientOptions options;
    if (tls_) options.peer.tls = tls_contexts_.clients[c];
    slot.transport = std::make_unique<ClientTransport>(**ch, options);
    slot.tasks = std::make_unique<TaskScope>(**ch, [this](absl::Status e) {
      Fail(absl::InternalError(
          absl::StrCat("client task failed: ", e.ToString())));
    });
    clients_.push_back(std::move(slot));
  }
  if (absl::Status st = StartServer(); !st.ok()) return st;
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
      clients_[c].tasks->Spawn(Lane(c));
  }
  const int lanes = o_.clients * o_.lanes_per_client;
  auto hang = [&](absl::string_view phase) {
    return absl::DeadlineExceededError(absl::StrCat(
        "invariant stream.no_hang: hang in the ", phase,
        " phase: no progress by t=", absl::FormatDuration(sim_.Now() - t0),
        " with ", opened_ - ended_, " streams open (", sim_.pending_events(),
        " events scheduled, ", sim_.live_connections(), " connections)"));
  };
  auto finish = [&](absl::Status s) {
    ctx.stats().requests = opened_;
    ctx.stats().round_trips = items_;
    Teardown();
    return s;
  };

  // Chaos phase: every lane runs its streams to their ends.
  if (!sim_.RunUntil([&] { return lanes_done_ == lanes || !failure_.ok(); },
                     sim_.Now() + o_.phase_budget)) {
    return finish(hang("chaos"));
  }
  if (!failure_.ok()) return finish(failure_);
  chaos_over_ = true;
  sim_.set_chaos(ChaosConfig{});
  if (!sim_.RunUntil([&] { return controller_done_ || !failure_.ok(); },
                     sim_.Now() + o_.phase_budget)) {
    return finish(hang("restart"));
  }
  // Quiet phase: faults off; stalls already drawn release, and keepalive
  // ends what the chaos left silent. Then every new stream must end as its
  // handler ends it.
  sim_.RunUntil([] { return false; }, sim_.Now() + o_.quiet_settle);
  const uint64_t quiet_target =
      ended_ + static_cast<uint64_t>(kQuietStreamsPerClient) * clients_.size();
  for (int c = 0; c < o_.clients; ++c) {
    Plan done = DrawPlan(/*quiet=*/true);
    done.fail_at = -1;
    done.code = absl::StatusCode::kOk;
    Plan error = DrawPlan(/*quiet=*/true);
    error.fail_at = static_cast<int>(rng.UniformInRange(0, error.items));
    error.code = kHandlerErrorCodes[c % std::size(kHandlerErrorCodes)];
    clients_[c].tasks->Spawn(OneStream(c, done, /*quiet=*/true));
    clients_[c].tasks->Spawn(OneStream(c, error, /*quiet=*/true));
  }
  if (!sim_.RunUntil([&] { return ended_ == quiet_target || !failure_.ok(); },
                     sim_.Now() + o_.phase_budget)) {
    return finish(hang("quiet"));
  }
  // Handlers end (and the server forgets the calls) a moment after the
  // client has its end.
  sim_.RunUntil([] { return false; }, sim_.Now() + absl::Milliseconds(200));
  CheckBounds(/*drained=*/true);
  CheckTransportAlways();
  // None lost while the connection lived: a stream that had items ends
  // Unavailable or Aborted only when a connection may have died (a stall
  // is not a close).
  if (lost_after_items_ > 0 && !Lossy()) {
    Fail(absl::InternalError(absl::StrCat(
        "invariant stream.stall_is_not_close: ", lost_after_items_,
        " streams lost their connection after items with no reset, "
        "half-close, bit flip, kill, restart, keepalive timeout or protocol "
        "error in the run")));
  }
  uint64_t handshakes = tls_handshakes_, failures = tls_handshake_failures_;
  if (server_ != nullptr) {
    const transport::ServerStats st = server_->transport->stats();
    handshakes += st.tls_handshakes;
    failures += st.tls_handshake_failures;
  }
  for (const ClientSlot& c : clients_) {
    if (const driver::Peer* p = c.transport->peer(target_); p != nullptr) {
      failures += p->stats().tls_handshake_failures;
    }
  }
  Sometimes(handshakes > 0, "tls.handshake_done");
  Sometimes(failures > 0, "tls.handshake_failed");
  Sometimes(tls_record_failures_ > 0, "tls.bit_flip_caught");
  return finish(failure_);
}

}  // namespace

absl::Status StreamWorkload::Simulate(WorkloadContext& ctx) {
  StreamRun run(ctx.sim(), stream_);
  return run.Execute(ctx);
}

}  // namespace moonpool::chaos
