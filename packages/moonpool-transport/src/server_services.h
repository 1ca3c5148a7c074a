// ServerTransport::Services: the methods a ServerTransport serves (Handle),
// their calls, limits and counters, and the one timer that fires the calls'
// deadlines. Private to the transport's sources.
//
// A call's life: Dispatch makes a ServerCall (from a free list: its payload
// and reply strings keep their capacity), and either starts it (a task
// spawned in the server's TaskScope, run on a later turn), queues it behind
// the method's limit, or rejects it. Finish answers through Reply/ReplyError
// (the one path every answer takes) and ends it: its slot goes to the next
// queued call. A request is in `by_id_` (so a cancel finds it) from Dispatch
// to its end; a running one with a deadline is in the deadline heap.
#ifndef MOONPOOL_TRANSPORT_SRC_SERVER_SERVICES_H_
#define MOONPOOL_TRANSPORT_SRC_SERVER_SERVICES_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "latency_histogram.h"
#include "moonpool/driver/buffer_pool.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/timer.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/transport/internal/message_queue.h"
#include "moonpool/transport/method_handler.h"
#include "moonpool/transport/method_stats.h"
#include "moonpool/transport/request_context.h"
#include "moonpool/transport/server_transport.h"

namespace moonpool::transport {
namespace internal {

class ServerCall;

// One registered method.
struct ServedMethod {
  std::string name;
  Endpoint token;
  HandlerOptions options;
  absl::AnyInvocable<driver::Task<void>(RequestContext&)> run;
  // A reply stream (HandleStream): its calls must accept one.
  bool streaming = false;
  // Counters; the gauges and latencies are filled in by Snapshot.
  MethodStats stats;
  LatencyHistogram latency;
  size_t running = 0;
  // Calls waiting for a slot, oldest first; dropped ones (cancelled,
  // orphaned) are skipped and freed when reached.
  MessageQueue<ServerCall*> queue;
  size_t queued = 0;  // live calls in `queue`

  MethodStats Snapshot() const;
};

// One call of a method. RequestContext is its public face.
class ServerCall {
 public:
  static constexpr size_t kNotInHeap = std::numeric_limits<size_t>::max();
  enum class State { kQueued, kRunning, kDropped };

  explicit ServerCall(driver::Loop& loop) : context(loop) {}

  // Makes a used call fresh for `message` (keeps the strings' capacity).
  void Reset(IncomingMessage message, ServedMethod& m, uint64_t incarnation,
             absl::Time now);
  // Fires the token with "call ended" and lets go of the request.
  void Release(driver::BufferPool& buffers);
  IncomingMessage& message() { return context.message_; }
  absl::string_view cancel_reason() const { return context.cancel_reason_; }
  // Fires the token, and wakes a stream writer waiting for credit (its
  // Write then yields Cancelled).
  void Cancel(absl::string_view reason) {
    context.Cancel(reason);
    WakeWriter();
  }
  // Wakes a stream writer waiting for credit, if one is.
  void WakeWriter() {
    if (credit_waiter.valid() && !credit_waiter.fulfilled()) {
      credit_waiter.Set();
    }
  }

  RequestContext context;
  std::string reply;  // the reply, encoded
  // A stream handler's Write waiting for the client's credit.
  driver::Promise<void> credit_waiter;
  ServedMethod* method = nullptr;
  absl::Time received;
  size_t heap_index = kNotInHeap;
  State state = State::kQueued;
  // Services' list of live calls.
  ServerCall* prev = nullptr;
  ServerCall* next = nullptr;
};

}  // namespace internal

class ServerTransport::Services {
 public:
  explicit Services(ServerTransport& server);
  ~Services();

  absl::Status Register(absl::string_view name, Endpoint token,
                        HandlerOptions options, CallRunner runner,
                        bool streaming);
  absl::Status Authorize(absl::string_view service, Authorizer authorize);
  // `message` is a request or a one-way message for a non-zero token,
  // received on `c`; a request already counts in the server's in_flight_.
  void Dispatch(Connection& c, IncomingMessage message);
  // A cancel for a request of `c` that awaits its answer. True if it was a
  // method's call (queued: dropped; running: its token fired).
  bool Cancel(Connection& c, CorrelationId id);
  // The handler's outcome; ends the call (for a stream, OK is its end).
  void Finish(internal::ServerCall& call, absl::Status outcome);
  // A stream handler's Write (StreamWriter::Write).
  driver::Task<absl::Status> WriteItem(internal::ServerCall& call,
                                       absl::string_view payload,
                                       absl::Status encoded);
  // The client granted credit to stream `id` of `c`: its writer may go on.
  void OnCredit(Connection& c, CorrelationId id);
  // Stream writers of connection `id` waiting for credit: they do not count
  // against the in-flight bounds that pause reading (CanRead).
  size_t credit_waits(uint64_t id) const {
    auto it = credit_waits_.find(id);
    return it == credit_waits_.end() ? 0 : it->second;
  }
  size_t total_credit_waits() const { return total_credit_waits_; }
  // Connection `id` is gone: queued calls from it are dropped, running
  // ones have their token fired.
  void ConnectionGone(uint64_t id);
  // Destroys every handler's task and forgets every call (Close).
  void CloseAll();
  // Runs an answer that waits for output room in the services' scope.
  void Spawn(driver::Task<absl::Status> answer) {
    scope_.Spawn(std::move(answer));
  }

  // Handlers running, or calls waiting for one (a drain waits for none).
  size_t live() const { return live_; }
  std::optional<MethodStats> Stats(Endpoint token) const;
  std::vector<MethodStats> AllStats() const;

 private:
  using CallKey = std::pair<uint64_t, uint64_t>;  // connection, correlation

  // The first refusal of the server's, the service's and the method's
  // authorizers, in that order; OK when all allow the call.
  absl::Status Authorized(const internal::ServedMethod& m,
                          const RequestContext& context) const;
  internal::ServerCall* NewCall();
  void FreeCall(internal::ServerCall* call);
  void Start(internal::ServerCall* call);
  // Ends `call` (running or dropped) and starts what waits behind it.
  void End(internal::ServerCall* call);
  void StartQueued(internal::ServedMethod& m);
  // Answers a request of `c` at once with `status` (Unimplemented,
  // ResourceExhausted), waiting for output room if need be.
  void Refuse(IncomingMessage message, absl::Status status);
  // An answer that found the output full: sent once there is room
  // (ReplyWhenWritable), or refused if it can never fit.
  driver::Task<void> AnswerLater(IncomingMessage message, std::string reply,
                                 absl::Status outcome, bool stream_end);
  // Counts a stream writer waiting for credit for as long as it lives (in
  // the writer's frame, so a destroyed handler is uncounted too).
  class CreditWait {
   public:
    CreditWait(Services& services, uint64_t connection_id);
    CreditWait(const CreditWait&) = delete;
    CreditWait& operator=(const CreditWait&) = delete;
    ~CreditWait();

   private:
    Services& services_;
    uint64_t connection_id_;
  };

  // The deadline heap of running requests (a min-heap on deadline, each
  // call knowing its index, so an ended call leaves in O(log n)).
  void HeapPush(internal::ServerCall* call);
  void HeapRemove(internal::ServerCall* call);
  void HeapSwap(size_t a, size_t b);
  void HeapUp(size_t i);
  void HeapDown(size_t i);
  void ArmDeadlineTimer();
  void OnDeadlineTimer();

  ServerTransport& server_;
  absl::flat_hash_map<Endpoint, std::unique_ptr<internal::ServedMethod>>
      methods_;
  std::vector<internal::ServedMethod*> in_order_;  // registration order
  // Per-service authorizers, by service name (Authorize).
  absl::flat_hash_map<std::string, Authorizer> service_authorizers_;
  // Requests of live calls (queued or running), for cancels.
  absl::flat_hash_map<CallKey, internal::ServerCall*> by_id_;
  // Every live call, newest first (owned here: made by NewCall, handed to
  // free_ or deleted by FreeCall).
  internal::ServerCall* calls_ = nullptr;
  std::vector<std::unique_ptr<internal::ServerCall>> free_;
  size_t live_ = 0;
  std::vector<internal::ServerCall*> heap_;
  absl::Time timer_at_ = absl::InfiniteFuture();
  std::unique_ptr<driver::Timer> deadline_timer_;
  // Stream writers waiting for credit, by connection, and in all.
  absl::flat_hash_map<uint64_t, size_t> credit_waits_;
  size_t total_credit_waits_ = 0;
  // Last member: destroyed first, so no handler's frame outlives the calls
  // it borrows.
  driver::TaskScope scope_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_SRC_SERVER_SERVICES_H_
