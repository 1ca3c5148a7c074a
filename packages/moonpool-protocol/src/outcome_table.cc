#include "moonpool/protocol/outcome_table.h"

#include <algorithm>
#include <utility>

namespace moonpool::protocol {
namespace {

// A deadline that bounds a lifetime: InfiniteFuture() (no deadline) bounds
// nothing, so it counts as none.
absl::Time FiniteOrPast(absl::Time t) {
  return t == absl::InfiniteFuture() ? absl::InfinitePast() : t;
}

OutcomeTable::Arrival Only(OutcomeTable::Verdict verdict) {
  OutcomeTable::Arrival a;
  a.verdict = verdict;
  return a;
}

}  // namespace

OutcomeTable::OutcomeTable(OutcomeTableOptions options)
    : options_(options),
      sweep_period_(std::max(options.min_lifetime, absl::ZeroDuration()) / 4) {
  options_.min_lifetime = std::max(options_.min_lifetime, absl::ZeroDuration());
}

void OutcomeTable::Settle(uint64_t client, CorrelationId below,
                          absl::Time /*now*/) {
  if (!below.valid()) return;
  auto cit = clients_.find(client);
  if (cit == clients_.end()) return;
  Client& c = cit->second;
  if (below.value() <= c.settled) return;
  c.settled = below.value();
  // Usually a few records at the front; running ones stay (see the header).
  for (auto it = c.records.begin();
       it != c.records.end() && it->first < c.settled;) {
    if (RecordOf(it).completed) {
      it = Erase(c, it);
      ++stats_.settled;
    } else {
      ++it;
    }
  }
}

OutcomeTable::Arrival OutcomeTable::Arrive(uint64_t client, CorrelationId id,
                                           absl::Time deadline, uint64_t waiter,
                                           absl::Time now) {
  const absl::Time finite_deadline = FiniteOrPast(deadline);
  auto cit = clients_.find(client);
  if (cit == clients_.end()) {
    if (clients_.size() >= options_.max_clients) {
      ++stats_.clients_refused;
      return Only(Verdict::kRefused);
    }
    cit = clients_.try_emplace(client).first;
    stats_.clients = clients_.size();
    if (next_sweep_ == absl::InfiniteFuture()) {
      next_sweep_ = now + sweep_period_;
    }
  }
  Client& c = cit->second;
  c.keep_until =
      std::max({c.keep_until, finite_deadline, now + options_.min_lifetime});

  auto it = c.records.lower_bound(id.value());
  if (it != c.records.end() && it->first == id.value()) {
    Record& r = RecordOf(it);
    r.deadline = std::max(r.deadline, finite_deadline);
    if (r.completed) {
      // A later resend of this duplicate may come until its deadline.
      r.expires = std::max(r.expires, r.deadline);
      ++stats_.duplicates_completed;
      return {.verdict = Verdict::kCompleted, .code = r.code, .bytes = r.bytes};
    }
    r.waiters.push_back(waiter);
    r.expires = std::max(r.expires,
                         (deadline == absl::InfiniteFuture() ? now : deadline) +
                             options_.min_lifetime);
    ++stats_.duplicates_running;
    return Only(Verdict::kRunning);
  }
  if (id.value() < c.settled || id.value() <= c.forgotten) {
    ++stats_.forgotten_answers;
    return Only(Verdict::kForgotten);
  }
  const uint32_t index = NewRecord();
  Record& r = slab_[index];
  r.deadline = finite_deadline;
  r.expires = (deadline == absl::InfiniteFuture() ? now : deadline) +
              options_.min_lifetime;
  c.records.emplace_hint(it, id.value(), index);
  ++c.running;
  c.bytes += kRecordOverheadBytes;
  ++stats_.records;
  ++stats_.running;
  stats_.bytes += kRecordOverheadBytes;
  ApplyBounds(c);
  return Only(Verdict::kNew);
}

std::vector<uint64_t> OutcomeTable::Complete(uint64_t client, CorrelationId id,
                                             absl::StatusCode code,
                                             absl::string_view bytes,
                                             absl::Time now) {
  auto cit = clients_.find(client);
  if (cit == clients_.end()) return {};
  Client& c = cit->second;
  auto it = c.records.find(id.value());
  if (it == c.records.end() || RecordOf(it).completed) return {};
  Record& r = RecordOf(it);
  std::vector<uint64_t> waiters = std::move(r.waiters);
  r.waiters = {};
  if (id.value() < c.settled) {
    // Settled while it ran: nobody will ask again.
    Erase(c, it);
    ++stats_.settled;
    return waiters;
  }
  r.completed = true;
  r.code = code;
  r.bytes.assign(bytes.data(), bytes.size());
  r.expires = std::max(r.deadline, now + options_.min_lifetime);
  --c.running;
  --stats_.running;
  c.bytes += bytes.size();
  stats_.bytes += bytes.size();
  c.completed_from = std::min(c.completed_from, id.value());
  ++stats_.recorded;
  ApplyBounds(c);
  return waiters;
}

std::vector<uint64_t> OutcomeTable::Abandon(uint64_t client, CorrelationId id) {
  auto cit = clients_.find(client);
  if (cit == clients_.end()) return {};
  Client& c = cit->second;
  auto it = c.records.find(id.value());
  if (it == c.records.end() || RecordOf(it).completed) return {};
  std::vector<uint64_t> waiters = std::move(RecordOf(it).waiters);
  Erase(c, it);
  ++stats_.abandoned;
  return waiters;
}

void OutcomeTable::AdvanceTime(absl::Time now) {
  if (now < next_sweep_) return;
  for (auto cit = clients_.begin(); cit != clients_.end();) {
    Client& c = cit->second;
    for (auto it = c.records.begin(); it != c.records.end();) {
      if (RecordOf(it).expires <= now) {
        c.forgotten = std::max(c.forgotten, it->first);
        it = Erase(c, it);
        ++stats_.forgotten_by_time;
      } else {
        ++it;
      }
    }
    if (c.records.empty() && c.keep_until <= now) {
      clients_.erase(cit++);
    } else {
      ++cit;
    }
  }
  stats_.clients = clients_.size();
  next_sweep_ = clients_.empty() ? absl::InfiniteFuture() : now + sweep_period_;
}

OutcomeTable::Records::iterator OutcomeTable::Erase(Client& c,
                                                    Records::iterator it) {
  Record& r = RecordOf(it);
  const size_t bytes = kRecordOverheadBytes + r.bytes.size();
  c.bytes -= bytes;
  stats_.bytes -= bytes;
  --stats_.records;
  if (!r.completed) {
    --c.running;
    --stats_.running;
  }
  // A small outcome's storage stays with the slot for the next record (one
  // allocation and free fewer per request in steady state); a larger one
  // goes back. So a free slot keeps at most kKeptOutcomeBytes the bounds do
  // not count, and the slab is never larger than the most records held at
  // once.
  if (r.bytes.capacity() > kKeptOutcomeBytes) {
    std::string().swap(r.bytes);
  } else {
    r.bytes.clear();
  }
  r.waiters.clear();
  r.deadline = absl::InfinitePast();
  r.expires = absl::Time();
  r.code = absl::StatusCode::kOk;
  r.completed = false;
  free_.push_back(it->second);
  return c.records.erase(it);
}

uint32_t OutcomeTable::NewRecord() {
  if (!free_.empty()) {
    const uint32_t index = free_.back();
    free_.pop_back();
    return index;
  }
  slab_.emplace_back();
  return static_cast<uint32_t>(slab_.size() - 1);
}

bool OutcomeTable::ForgetLowestCompleted(Client& c) {
  if (c.records.size() == c.running) return false;
  // Running records below the first completed one are skipped once: the
  // hint moves past them.
  auto it = c.records.lower_bound(c.completed_from);
  while (it != c.records.end() && !RecordOf(it).completed) ++it;
  if (it == c.records.end()) {  // unreachable while the counts are right
    c.completed_from = UINT64_MAX;
    return false;
  }
  c.completed_from = it->first;
  c.forgotten = std::max(c.forgotten, it->first);
  Erase(c, it);
  ++stats_.forgotten_by_bound;
  return true;
}

void OutcomeTable::ApplyBounds(Client& c) {
  while ((c.records.size() > options_.max_records_per_client ||
          c.bytes > options_.max_bytes_per_client) &&
         ForgetLowestCompleted(c)) {
  }
  ApplyTotalBounds();
}

void OutcomeTable::ApplyTotalBounds() {
  while (stats_.records > options_.max_records ||
         stats_.bytes > options_.max_bytes) {
    if (stats_.records == stats_.running) return;  // nothing to forget
    const bool by_count = stats_.records > options_.max_records;
    // Linear in the clients; ties go to the lowest incarnation so that the
    // hash order never shows.
    Client* victim = nullptr;
    uint64_t victim_key = 0;
    size_t victim_size = 0;
    for (auto& [key, c] : clients_) {
      if (c.records.size() == c.running) continue;  // nothing to forget
      const size_t size = by_count ? c.records.size() : c.bytes;
      if (victim == nullptr || size > victim_size ||
          (size == victim_size && key < victim_key)) {
        victim = &c;
        victim_key = key;
        victim_size = size;
      }
    }
    if (victim == nullptr || !ForgetLowestCompleted(*victim)) return;
  }
}

}  // namespace moonpool::protocol
