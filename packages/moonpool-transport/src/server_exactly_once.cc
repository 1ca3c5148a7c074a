// ServerTransport's side of exactly-once requests (DESIGN.md section 5,
// "Exactly-once"): admitting each request against the outcome records
// (protocol::OutcomeTable), recording each answer, and answering duplicates
// from the records. The records span connections: a request's own
// connection may be gone when its handler finishes, and its resend waits on
// another.
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server_connection.h"
#include "server_services.h"

#ifdef MOONPOOL_PLANTED_BUGS
#include "moonpool_planted.h"
#endif

namespace moonpool::transport {

using Verdict = protocol::OutcomeTable::Verdict;

namespace {

// The duplicate of `request` that arrived on connection `connection_id`
// (a record's waiter): the same request, without its payload.
IncomingMessage DuplicateOn(const IncomingMessage& request,
                            uint64_t connection_id) {
  IncomingMessage duplicate;
  duplicate.envelope.correlation_id = request.envelope.correlation_id;
  duplicate.envelope.kind = EnvelopeKind::kRequest;
  duplicate.envelope.endpoint = request.envelope.endpoint;
  duplicate.envelope.exactly_once = true;
  duplicate.connection_id = connection_id;
  duplicate.deadline = request.deadline;
  duplicate.client_incarnation = request.client_incarnation;
  return duplicate;
}

}  // namespace

bool ServerTransport::AdmitRequest(Connection& c, IncomingMessage& message,
                                   CorrelationId answered_below) {
  const absl::Time now = loop_.Now();
  outcomes_.Settle(message.client_incarnation, answered_below, now);
  if (!message.envelope.exactly_once) return true;
  const CorrelationId id = message.envelope.correlation_id;
  protocol::OutcomeTable::Arrival a = outcomes_.Arrive(
      message.client_incarnation, id, message.deadline, c.id(), now);
  ArmOutcomeTimer();
#ifdef MOONPOOL_PLANTED_BUGS
  // Planted bug (exactly-once): a duplicate runs the handler again instead
  // of waiting for, or being answered from, the record.
  if (moonpool_planted::Active("exactly_once_runs_duplicate") &&
      (a.verdict == Verdict::kRunning || a.verdict == Verdict::kCompleted)) {
    return true;
  }
#endif
  switch (a.verdict) {
    case Verdict::kNew:
      return true;
    case Verdict::kRunning:
      // Answered when the original's handler finishes (RecordOutcome).
      return false;
    case Verdict::kCompleted:
      AnswerFromRecord(std::move(message), a.code, a.bytes);
      return false;
    case Verdict::kForgotten:
      AnswerFromRecord(
          std::move(message), absl::StatusCode::kAborted,
          absl::StrCat("outcome forgotten, maybe delivered: request ",
                       id.ToString(),
                       " is at or below the ids whose records this server "
                       "dropped (a bound or their lifetime) or that the "
                       "client settled"));
      return false;
    case Verdict::kRefused:
      AnswerFromRecord(
          std::move(message), absl::StatusCode::kResourceExhausted,
          absl::StrCat("this server keeps exactly-once records for at most ",
                       options_.exactly_once.max_clients,
                       " clients; try again later"));
      return false;
  }
  return false;
}

void ServerTransport::RecordOutcome(const IncomingMessage& request,
                                    absl::StatusCode code,
                                    absl::string_view bytes) {
  if (!request.envelope.exactly_once || !request.is_request() ||
      state_ == State::kClosed) {
    return;
  }
  std::vector<uint64_t> waiters = outcomes_.Complete(
      request.client_incarnation, request.envelope.correlation_id, code, bytes,
      loop_.Now());
  ArmOutcomeTimer();
  for (uint64_t connection_id : waiters) {
    if (connection_id == request.connection_id) continue;
    AnswerFromRecord(DuplicateOn(request, connection_id), code, bytes);
  }
}

void ServerTransport::AbandonRecord(const IncomingMessage& request) {
  if (!request.envelope.exactly_once || !request.is_request()) return;
  // Duplicates waiting for it are given up as well: it was dropped because
  // its client gave up (a cancel, its deadline), and they are the same
  // request. Forgotten unanswered, as the original is.
  for (uint64_t connection_id : outcomes_.Abandon(
           request.client_incarnation, request.envelope.correlation_id)) {
    if (Connection* c = Find(connection_id); c != nullptr) {
      c->Abandon(DuplicateOn(request, connection_id));
    }
  }
}

void ServerTransport::AnswerFromRecord(IncomingMessage request,
                                       absl::StatusCode code,
                                       absl::string_view bytes) {
  Connection* c = Find(request.connection_id);
  if (c == nullptr) return;  // that connection is gone too: nobody to tell
  const absl::Status error(code, bytes);
  absl::Status s = c->Answer(request, bytes,
                             code == absl::StatusCode::kOk ? nullptr : &error);
  if (s.ok()) {
    ++(code == absl::StatusCode::kOk ? stats_.replies_sent
                                     : stats_.error_replies_sent);
    return;
  }
  if (absl::IsResourceExhausted(s) && c->HasOutput()) {
    // As any answer that finds the output full: sent once there is room.
    // (Its Reply records nothing again: the record has its outcome.)
    services_->Spawn(AnswerWhenWritable(
        std::move(request),
        code == absl::StatusCode::kOk ? std::string(bytes) : std::string(),
        error));
    return;
  }
  if (absl::IsResourceExhausted(s) && code == absl::StatusCode::kOk) {
    // The recorded reply can never fit this connection's bounds.
    const absl::Status too_large = absl::ResourceExhaustedError(
        absl::StrCat("the recorded answer could not be sent: ", s.message()));
    (void)c->Answer(request, {}, &too_large);
  }
}

void ServerTransport::ArmOutcomeTimer() {
  // A closed server keeps no timer: its loop must be free to end.
  if (state_ == State::kClosed) return;
  const absl::Time at = outcomes_.NextWakeup();
  if (at == absl::InfiniteFuture() || at >= outcome_timer_at_) return;
  outcome_timer_at_ = at;
  outcome_timer_->Start(at);
}

}  // namespace moonpool::transport
