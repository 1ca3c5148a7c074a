#include "server_services.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "moonpool/transport/method.h"
#include "server_connection.h"

namespace moonpool::transport {
namespace internal {

MethodStats ServedMethod::Snapshot() const {
  MethodStats s = stats;
  s.running = running;
  s.queued = queued;
  s.latency_p50 = latency.Percentile(50);
  s.latency_p90 = latency.Percentile(90);
  s.latency_p99 = latency.Percentile(99);
  s.latency_max = latency.max();
  return s;
}

void ServerCall::Reset(IncomingMessage message, ServedMethod& m,
                       uint64_t incarnation, absl::Time now) {
  context.call_ = this;
  context.message_ = std::move(message);
  context.method_name_ = m.name;
  context.peer_incarnation_ = incarnation;
  context.cancelled_ = false;
  context.cancel_reason_ = {};
  reply.clear();
  method = &m;
  received = now;
  heap_index = kNotInHeap;
  state = State::kQueued;
}

void ServerCall::Release(driver::BufferPool& buffers) {
  credit_waiter = driver::Promise<void>();
  // Work the handler left running with the token hears that the call is
  // over; a token copy outlives the source (cancellation.h).
  context.Cancel("the call has ended");
  context.source_.reset();
  context.token_ = driver::CancellationToken();
  context.peer_identity_.reset();
  buffers.Give(std::move(context.message_.envelope.payload));
}

}  // namespace internal

using internal::ServedMethod;
using internal::ServerCall;

ServerTransport::Services::Services(ServerTransport& server)
    : server_(server),
      deadline_timer_(server.loop_.CreateTimer([this] { OnDeadlineTimer(); })),
      // Handlers are Task<void>; only the answers that wait for output room
      // (Task<absl::Status>) can fail, and their failures (the connection
      // went, the deadline passed) are counted where they happen.
      scope_(server.loop_, [](absl::Status) {}) {}

ServerTransport::Services::~Services() { CloseAll(); }

absl::Status ServerTransport::Services::Register(absl::string_view name,
                                                 Endpoint token,
                                                 HandlerOptions options,
                                                 CallRunner runner,
                                                 bool streaming) {
  if (options.max_concurrent == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HandlerOptions for \"", name, "\": max_concurrent must be positive"));
  }
  if (server_.state_ == State::kClosed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "server transport is closed; \"", name, "\" cannot be served"));
  }
  auto it = methods_.find(token);
  if (it != methods_.end()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "token 0x", absl::Hex(token.value(), absl::kZeroPad16), " of \"", name,
        "\" is served already, by \"", it->second->name, "\""));
  }
  auto m = std::make_unique<ServedMethod>();
  m->name = std::string(name);
  m->token = token;
  m->options = options;
  m->run = std::move(runner);
  m->streaming = streaming;
  m->stats.name = m->name;
  in_order_.push_back(m.get());
  methods_.emplace(token, std::move(m));
  return absl::OkStatus();
}

absl::Status ServerTransport::Services::Authorize(absl::string_view service,
                                                  Authorizer authorize) {
  if (service.empty() || service.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Authorize: \"", service,
        "\" is not a service name (the part of a method name before '/')"));
  }
  if (!authorize) {
    service_authorizers_.erase(std::string(service));
  } else {
    service_authorizers_[std::string(service)] = std::move(authorize);
  }
  return absl::OkStatus();
}

absl::Status ServerTransport::Services::Authorized(
    const ServedMethod& m, const RequestContext& context) const {
  if (const Authorizer& a = server_.options_.authorize; a) {
    if (absl::Status s = a(context); !s.ok()) return s;
  }
  if (!service_authorizers_.empty()) {
    const absl::string_view name = m.name;
    auto it = service_authorizers_.find(name.substr(0, name.find('/')));
    if (it != service_authorizers_.end()) {
      if (absl::Status s = it->second(context); !s.ok()) return s;
    }
  }
  if (m.options.authorize) return m.options.authorize(context);
  return absl::OkStatus();
}

ServerCall* ServerTransport::Services::NewCall() {
  ServerCall* call;
  if (free_.empty()) {
    call = new ServerCall(server_.loop_);
  } else {
    call = free_.back().release();
    free_.pop_back();
  }
  call->prev = nullptr;
  call->next = calls_;
  if (calls_ != nullptr) calls_->prev = call;
  calls_ = call;
  return call;
}

void ServerTransport::Services::FreeCall(ServerCall* call) {
  if (call->prev != nullptr) {
    call->prev->next = call->next;
  } else {
    calls_ = call->next;
  }
  if (call->next != nullptr) call->next->prev = call->prev;
  call->prev = call->next = nullptr;
  // Enough records for a full in-flight window are kept (their strings keep
  // their capacity); a burst beyond it is given back.
  if (free_.size() < 1024) {
    free_.emplace_back(call);
  } else {
    delete call;
  }
}

void ServerTransport::Services::Refuse(IncomingMessage message,
                                       absl::Status status) {
  absl::Status s = server_.ReplyError(message, status);
  // OK, or the connection is gone or the server closed: nobody to tell.
  if (s.ok() || absl::IsNotFound(s) || absl::IsFailedPrecondition(s)) return;
  Connection* c = server_.Find(message.connection_id);
  if (c == nullptr) return;
  if (absl::IsResourceExhausted(s) && c->HasOutput()) {
    scope_.Spawn(
        server_.AnswerWhenWritable(std::move(message), {}, std::move(status)));
    return;
  }
  c->Abandon(message);  // cannot be sent at all: forgotten, not leaked
}

void ServerTransport::Services::Dispatch(Connection& c,
                                         IncomingMessage message) {
  const bool request = message.is_request();
  auto it = methods_.find(message.envelope.endpoint);
  if (it == methods_.end()) {
    ++server_.stats_.unimplemented;
    if (request) {
      const Endpoint token = message.envelope.endpoint;
      Refuse(std::move(message), absl::UnimplementedError(absl::StrCat(
                                     "no method with token 0x",
                                     absl::Hex(token.value(), absl::kZeroPad16),
                                     " is served here")));
    }
    return;
  }
  ServedMethod& m = *it->second;
  if (request) {
    ++m.stats.requests;
  } else {
    ++m.stats.one_way;
  }
  if (m.streaming && (!request || message.envelope.stream_credit == 0)) {
    // Nobody could read the items: a one-way message, a version 1 client,
    // or a client that called the name as a unary method.
    ++m.stats.rejected;
    if (request) {
      Refuse(std::move(message),
             absl::FailedPreconditionError(absl::StrCat(
                 m.name,
                 " answers with a reply stream, and this request does not "
                 "accept one (protocol version 1, or a unary call)")));
    }
    return;
  }
  const bool start = m.queued == 0 && m.running < m.options.max_concurrent;
  if (!start && m.queued >= m.options.max_queued) {
    ++m.stats.rejected;
    if (request) {
      Refuse(std::move(message),
             absl::ResourceExhaustedError(absl::StrCat(
                 m.name, " is busy: ", m.running, " calls run and ", m.queued,
                 " wait (its HandlerOptions' limits); try again later")));
    }
    return;
  }
  ServerCall* call = NewCall();
  call->Reset(std::move(message), m, c.peer_incarnation(), server_.loop_.Now());
  call->context.peer_identity_ = c.peer_identity();
  if (absl::Status allowed = Authorized(m, call->context); !allowed.ok()) {
    ++m.stats.denied;
    IncomingMessage refused = std::move(call->message());
    call->context.peer_identity_.reset();
    FreeCall(call);
    if (request) {
      Refuse(std::move(refused), std::move(allowed));
    } else {
      server_.buffers_.Give(std::move(refused.envelope.payload));
    }
    return;
  }
  ++live_;
  if (request) {
    by_id_.emplace(
        CallKey(c.id(), call->message().envelope.correlation_id.value()), call);
  }
  if (start) {
    Start(call);
  } else {
    m.queue.Push(call);
    ++m.queued;
    server_.queued_bytes_ += call->message().envelope.payload.size();
  }
}

void ServerTransport::Services::Start(ServerCall* call) {
  ServedMethod& m = *call->method;
  call->state = ServerCall::State::kRunning;
  ++m.running;
  if (call->message().is_request() &&
      call->message().deadline != absl::InfiniteFuture()) {
    HeapPush(call);
  }
  scope_.Spawn(m.run(call->context));
}

void ServerTransport::Services::Finish(ServerCall& call, absl::Status outcome) {
  ServedMethod& m = *call.method;
  IncomingMessage& message = call.message();
  if (outcome.ok()) {
    ++m.stats.replies;
  } else {
    ++m.stats.errors;
    ++m.stats.errors_by_code[outcome.code()];
  }
  if (message.is_request()) {
    m.latency.Record(server_.loop_.Now() - call.received);
    absl::Status s =
        !outcome.ok() ? server_.ReplyError(message, outcome)
        : m.streaming ? server_.EndStream(message)
                      : server_.Reply(message, absl::string_view(call.reply));
    if (!s.ok() && !absl::IsNotFound(s) && !absl::IsFailedPrecondition(s)) {
      Connection* c = server_.Find(message.connection_id);
      if (c != nullptr && absl::IsResourceExhausted(s) && c->HasOutput()) {
        // ReplyWhenWritable's wait: the answer goes once the client has
        // read enough, or is forgotten at the deadline.
        scope_.Spawn(AnswerLater(message, std::move(call.reply),
                                 std::move(outcome), m.streaming));
      } else if (c != nullptr) {
        // The answer can never be sent (larger than the output bound or a
        // frame): the client hears why instead of waiting for its deadline.
        Refuse(message,
               absl::Status(s.code(),
                            absl::StrCat("the answer of ", m.name,
                                         " could not be sent: ", s.message())));
      }
    }
  }
  End(&call);
}

driver::Task<void> ServerTransport::Services::AnswerLater(
    IncomingMessage message, std::string reply, absl::Status outcome,
    bool stream_end) {
  const bool is_reply = outcome.ok();
  absl::Status s = co_await server_.AnswerWhenWritable(
      message, std::move(reply), std::move(outcome), stream_end);
  // Full with nothing left to write: this reply alone is larger than the
  // output bound. (Other failures: the connection went, or the deadline
  // passed and the request was forgotten.)
  if (is_reply && absl::IsResourceExhausted(s)) {
    Refuse(std::move(message),
           absl::ResourceExhaustedError(
               absl::StrCat("the answer could not be sent: ", s.message())));
  }
}

void ServerTransport::Services::End(ServerCall* call) {
  ServedMethod& m = *call->method;
  if (call->state == ServerCall::State::kRunning) {
    --m.running;
    HeapRemove(call);
  }
  if (call->state != ServerCall::State::kDropped) {
    --live_;
    if (call->message().is_request()) {
      by_id_.erase(CallKey(call->message().connection_id,
                           call->message().envelope.correlation_id.value()));
    }
    call->Release(server_.buffers_);
  }
  FreeCall(call);
  StartQueued(m);
  if (live_ == 0 && server_.state_ == State::kDraining) {
    WakeAll(server_.close_waiters_);
  }
}

void ServerTransport::Services::StartQueued(ServedMethod& m) {
  bool dropped = false;
  while (m.running < m.options.max_concurrent && !m.queue.empty()) {
    ServerCall* call = m.queue.Pop();
    if (call->state == ServerCall::State::kDropped) {
      FreeCall(call);
      continue;
    }
    --m.queued;
    IncomingMessage& message = call->message();
    server_.queued_bytes_ -= message.envelope.payload.size();
    if (message.is_request()) {
      Connection* c = server_.Find(message.connection_id);
      // An exactly-once call outlives its connection: its client sends it
      // again on another, where it waits for this call's answer.
      const bool gone = c == nullptr && !message.envelope.exactly_once;
      const bool expired = !gone && message.deadline <= server_.loop_.Now();
      if (gone || expired) {
        server_.AbandonRecord(message);
        if (gone) {
          ++m.stats.orphaned;
          ++server_.stats_.orphaned_dropped;
        } else {
          // Its client has given up (DESIGN.md section 5): forgotten
          // unanswered, as the default queue does.
          ++m.stats.expired;
          ++server_.stats_.expired_dropped;
          if (c != nullptr) c->Abandon(message);
        }
        by_id_.erase(CallKey(message.connection_id,
                             message.envelope.correlation_id.value()));
        --live_;
        call->Release(server_.buffers_);
        FreeCall(call);
        dropped = true;
        continue;
      }
    }
    Start(call);
  }
  if (dropped) server_.ResumePaused();
}

bool ServerTransport::Services::Cancel(Connection& c, CorrelationId id) {
  auto it = by_id_.find(CallKey(c.id(), id.value()));
  if (it == by_id_.end()) return false;
  ServerCall* call = it->second;
  ServedMethod& m = *call->method;
  ++m.stats.cancelled;
  if (call->state == ServerCall::State::kRunning) {
    call->Cancel("cancelled by the client");
    return true;
  }
  // Still queued: nobody will want its answer. Dropped here; its record
  // leaves the queue when the queue reaches it.
  by_id_.erase(it);
  call->state = ServerCall::State::kDropped;
  --m.queued;
  --live_;
  server_.queued_bytes_ -= call->message().envelope.payload.size();
  ++server_.stats_.cancelled_before_handler;
  c.Abandon(call->message());
  server_.AbandonRecord(call->message());
  call->Release(server_.buffers_);
  server_.ResumePaused();
  if (live_ == 0 && server_.state_ == State::kDraining) {
    WakeAll(server_.close_waiters_);
  }
  return true;
}

void ServerTransport::Services::ConnectionGone(uint64_t id) {
  if (by_id_.empty()) return;
  bool dropped = false;
  for (ServerCall* call = calls_; call != nullptr; call = call->next) {
    IncomingMessage& message = call->message();
    if (call->state == ServerCall::State::kDropped ||
        message.connection_id != id || !message.is_request() ||
        message.envelope.exactly_once) {
      // An exactly-once call goes on: its client sends it again on another
      // connection and waits there for its outcome.
      continue;
    }
    if (call->state == ServerCall::State::kRunning) {
      call->Cancel("the connection closed");
      continue;
    }
    // Queued: its in-flight count left with the connection (AddClosed).
    ServedMethod& m = *call->method;
    ++m.stats.orphaned;
    ++server_.stats_.orphaned_dropped;
    by_id_.erase(CallKey(id, message.envelope.correlation_id.value()));
    call->state = ServerCall::State::kDropped;
    --m.queued;
    --live_;
    server_.queued_bytes_ -= message.envelope.payload.size();
    call->Release(server_.buffers_);
    dropped = true;
  }
  if (dropped) server_.ResumePaused();
  // (Remove, our caller, wakes a drain.)
}

void ServerTransport::Services::CloseAll() {
  // Handlers first: their frames borrow the calls.
  scope_.Clear();
  while (calls_ != nullptr) {
    ServerCall* call = calls_;
    calls_ = call->next;
    delete call;
  }
  free_.clear();
  for (ServedMethod* m : in_order_) {
    m->queue.Clear();
    m->queued = 0;
    m->running = 0;
  }
  by_id_.clear();
  heap_.clear();
  live_ = 0;
  timer_at_ = absl::InfiniteFuture();
  deadline_timer_->Stop();
}

std::optional<MethodStats> ServerTransport::Services::Stats(
    Endpoint token) const {
  auto it = methods_.find(token);
  if (it == methods_.end()) return std::nullopt;
  return it->second->Snapshot();
}

std::vector<MethodStats> ServerTransport::Services::AllStats() const {
  std::vector<MethodStats> out;
  out.reserve(in_order_.size());
  for (const ServedMethod* m : in_order_) out.push_back(m->Snapshot());
  return out;
}

// ---- Reply streams ----

driver::Task<absl::Status> ServerTransport::Services::WriteItem(
    ServerCall& call, absl::string_view payload, absl::Status encoded) {
  if (!encoded.ok()) co_return encoded;
  const uint64_t connection_id = call.message().connection_id;
  const CorrelationId id = call.message().envelope.correlation_id;
  while (true) {
    if (call.context.cancelled()) {
      co_return absl::CancelledError(
          absl::StrCat("the stream of ", call.method->name,
                       " ended: ", call.cancel_reason()));
    }
    Connection* c = server_.Find(connection_id);
    if (c == nullptr || c->dead()) {
      co_return absl::CancelledError(
          absl::StrCat("the stream of ", call.method->name,
                       " ended: the connection closed"));
    }
    if (c->driver().StreamWritable(id)) {
      absl::Status s = c->driver().SendStreamItem(id, payload);
      if (s.ok()) {
        ++call.method->stats.items;
        co_return s;
      }
      // Anything but a full output is final (NotFound: the call was
      // answered or abandoned; a frame too large).
      if (!absl::IsResourceExhausted(s) || !c->HasOutput()) co_return s;
      std::pair<driver::Promise<void>, driver::Future<void>> room =
          driver::MakePromise<void>(server_.loop_);
      c->WaitForRoom(std::move(room.first));
      (void)co_await std::move(room.second);
      continue;
    }
    // Out of credit: wait for the client's grant (OnCredit), or for the call
    // to end (ServerCall::Cancel wakes it too). While it waits it does not
    // hold the connection's reading up (CanRead): the grant must be read.
    std::pair<driver::Promise<void>, driver::Future<void>> credit =
        driver::MakePromise<void>(server_.loop_);
    call.credit_waiter = std::move(credit.first);
    const CreditWait counted(*this, connection_id);
    server_.ResumePaused();
    (void)co_await std::move(credit.second);
  }
}

ServerTransport::Services::CreditWait::CreditWait(Services& services,
                                                  uint64_t connection_id)
    : services_(services), connection_id_(connection_id) {
  ++services_.credit_waits_[connection_id_];
  ++services_.total_credit_waits_;
}

ServerTransport::Services::CreditWait::~CreditWait() {
  auto it = services_.credit_waits_.find(connection_id_);
  if (it != services_.credit_waits_.end() && --it->second == 0) {
    services_.credit_waits_.erase(it);
  }
  --services_.total_credit_waits_;
}

void ServerTransport::Services::OnCredit(Connection& c, CorrelationId id) {
  auto it = by_id_.find(CallKey(c.id(), id.value()));
  if (it == by_id_.end()) return;
  it->second->WakeWriter();
}

// ---- The deadline heap ----

void ServerTransport::Services::HeapSwap(size_t a, size_t b) {
  std::swap(heap_[a], heap_[b]);
  heap_[a]->heap_index = a;
  heap_[b]->heap_index = b;
}

void ServerTransport::Services::HeapUp(size_t i) {
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (heap_[parent]->message().deadline <= heap_[i]->message().deadline) {
      break;
    }
    HeapSwap(i, parent);
    i = parent;
  }
}

void ServerTransport::Services::HeapDown(size_t i) {
  while (true) {
    const size_t left = 2 * i + 1;
    if (left >= heap_.size()) return;
    size_t least = left;
    if (left + 1 < heap_.size() &&
        heap_[left + 1]->message().deadline < heap_[left]->message().deadline) {
      least = left + 1;
    }
    if (heap_[i]->message().deadline <= heap_[least]->message().deadline) {
      return;
    }
    HeapSwap(i, least);
    i = least;
  }
}

void ServerTransport::Services::HeapPush(ServerCall* call) {
  call->heap_index = heap_.size();
  heap_.push_back(call);
  HeapUp(call->heap_index);
  ArmDeadlineTimer();
}

void ServerTransport::Services::HeapRemove(ServerCall* call) {
  const size_t i = call->heap_index;
  if (i == ServerCall::kNotInHeap) return;
  call->heap_index = ServerCall::kNotInHeap;
  const size_t last = heap_.size() - 1;
  if (i != last) {
    ServerCall* moved = heap_[last];
    heap_[i] = moved;
    moved->heap_index = i;
    heap_.pop_back();
    HeapUp(i);
    HeapDown(moved->heap_index);
  } else {
    heap_.pop_back();
  }
  // The timer stays armed: if it fires early it finds nothing due and arms
  // again, which costs less than re-arming on every answer.
}

void ServerTransport::Services::ArmDeadlineTimer() {
  if (heap_.empty()) return;
  const absl::Time at = heap_.front()->message().deadline;
  if (at < timer_at_) {
    timer_at_ = at;
    deadline_timer_->Start(at);
  }
}

void ServerTransport::Services::OnDeadlineTimer() {
  timer_at_ = absl::InfiniteFuture();
  const absl::Time now = server_.loop_.Now();
  while (!heap_.empty() && heap_.front()->message().deadline <= now) {
    ServerCall* call = heap_.front();
    HeapRemove(call);
    call->Cancel("the request's deadline passed");
  }
  ArmDeadlineTimer();
}

// ---- ServerTransport's services entry points ----

absl::Status ServerTransport::Register(absl::string_view name, Endpoint token,
                                       HandlerOptions options,
                                       CallRunner runner, bool streaming) {
  return services_->Register(name, token, options, std::move(runner),
                             streaming);
}

void ServerTransport::Dispatch(Connection& c, IncomingMessage message) {
  services_->Dispatch(c, std::move(message));
}

void ServerTransport::Finish(RequestContext& ctx, absl::Status outcome) {
  services_->Finish(*ctx.call_, std::move(outcome));
}

driver::Task<absl::Status> ServerTransport::WriteItem(RequestContext& ctx,
                                                      absl::string_view payload,
                                                      absl::Status encoded) {
  return services_->WriteItem(*ctx.call_, payload, std::move(encoded));
}

void ServerTransport::OnCredit(Connection& c, CorrelationId id) {
  services_->OnCredit(c, id);
}

std::string& ServerTransport::ReplyBufferOf(RequestContext& ctx) {
  return ctx.call_->reply;
}

std::optional<MethodStats> ServerTransport::method_stats(Endpoint token) const {
  return services_->Stats(token);
}

std::vector<MethodStats> ServerTransport::all_method_stats() const {
  return services_->AllStats();
}

}  // namespace moonpool::transport
