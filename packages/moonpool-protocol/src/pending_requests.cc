#include "moonpool/protocol/internal/pending_requests.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace moonpool::protocol::internal {

bool PendingRequests::Before(size_t a, size_t b) const {
  const PendingRequest& x = slots_[heap_[a]].request;
  const PendingRequest& y = slots_[heap_[b]].request;
  if (x.deadline != y.deadline) return x.deadline < y.deadline;
  return x.id < y.id;
}

void PendingRequests::SwapHeap(size_t i, size_t j) {
  std::swap(heap_[i], heap_[j]);
  slots_[heap_[i]].heap_index = i;
  slots_[heap_[j]].heap_index = j;
}

void PendingRequests::SiftUp(size_t i) {
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!Before(i, parent)) break;
    SwapHeap(i, parent);
    i = parent;
  }
}

void PendingRequests::SiftDown(size_t i) {
  while (true) {
    const size_t left = 2 * i + 1;
    if (left >= heap_.size()) break;
    size_t child = left;
    if (left + 1 < heap_.size() && Before(left + 1, left)) child = left + 1;
    if (!Before(child, i)) break;
    SwapHeap(i, child);
    i = child;
  }
}

PendingRequest* PendingRequests::Find(CorrelationId id) {
  auto it = by_id_.find(id.value());
  if (it == by_id_.end()) return nullptr;
  return &slots_[it->second].request;
}

void PendingRequests::Add(const PendingRequest& r) {
  size_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = slots_.size();
    slots_.emplace_back();
  }
  slots_[slot].request = r;
  slots_[slot].heap_index = heap_.size();
  heap_.push_back(slot);
  SiftUp(heap_.size() - 1);
  const bool inserted = by_id_.emplace(r.id.value(), slot).second;
  assert(inserted);
  (void)inserted;
}

void PendingRequests::RemoveSlot(size_t slot) {
  const size_t i = slots_[slot].heap_index;
  const size_t last = heap_.size() - 1;
  if (i != last) {
    SwapHeap(i, last);
    heap_.pop_back();
    // The moved entry may belong above or below its new place.
    SiftDown(i);
    SiftUp(i);
  } else {
    heap_.pop_back();
  }
  by_id_.erase(slots_[slot].request.id.value());
  free_slots_.push_back(slot);
}

std::optional<PendingRequest> PendingRequests::Remove(CorrelationId id) {
  auto it = by_id_.find(id.value());
  if (it == by_id_.end()) return std::nullopt;
  const size_t slot = it->second;
  PendingRequest r = slots_[slot].request;
  RemoveSlot(slot);
  return r;
}

absl::Time PendingRequests::EarliestDeadline() const {
  if (heap_.empty()) return absl::InfiniteFuture();
  return slots_[heap_[0]].request.deadline;
}

std::optional<PendingRequest> PendingRequests::PopExpired(absl::Time now) {
  if (heap_.empty() || slots_[heap_[0]].request.deadline > now) {
    return std::nullopt;
  }
  const size_t slot = heap_[0];
  PendingRequest r = slots_[slot].request;
  RemoveSlot(slot);
  return r;
}

std::vector<PendingRequest> PendingRequests::TakeAll() {
  std::vector<PendingRequest> all;
  all.reserve(heap_.size());
  for (size_t slot : heap_) all.push_back(slots_[slot].request);
  std::sort(all.begin(), all.end(),
            [](const PendingRequest& a, const PendingRequest& b) {
              return a.id < b.id;
            });
  heap_.clear();
  by_id_.clear();
  slots_.clear();
  free_slots_.clear();
  return all;
}

}  // namespace moonpool::protocol::internal
