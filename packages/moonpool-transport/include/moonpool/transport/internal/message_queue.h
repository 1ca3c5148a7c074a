// A FIFO of T in one growable ring: push and pop move elements in place and
// allocate only when the ring grows past its largest size so far (deque
// would allocate a block every few elements, forever). Not API.
#ifndef MOONPOOL_TRANSPORT_INTERNAL_MESSAGE_QUEUE_H_
#define MOONPOOL_TRANSPORT_INTERNAL_MESSAGE_QUEUE_H_

#include <cassert>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace moonpool::transport::internal {

template <typename T>
class MessageQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

  void Push(T value) {
    if (size_ == slots_.size()) Grow();
    slots_[(head_ + size_) % slots_.size()].emplace(std::move(value));
    ++size_;
  }
  // REQUIRES: !empty().
  T Pop() {
    assert(size_ > 0);
    std::optional<T>& slot = slots_[head_];
    T value = std::move(*slot);
    slot.reset();
    head_ = (head_ + 1) % slots_.size();
    --size_;
    return value;
  }
  // Calls f(T&) on each element, oldest first.
  template <typename F>
  void ForEach(F&& f) {
    for (size_t i = 0; i < size_; ++i) f(*slots_[(head_ + i) % slots_.size()]);
  }
  void Clear() {
    for (std::optional<T>& slot : slots_) slot.reset();
    head_ = 0;
    size_ = 0;
  }

 private:
  void Grow() {
    std::vector<std::optional<T>> bigger(slots_.empty() ? 64
                                                        : slots_.size() * 2);
    for (size_t i = 0; i < size_; ++i) {
      bigger[i] = std::move(slots_[(head_ + i) % slots_.size()]);
    }
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<std::optional<T>> slots_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace moonpool::transport::internal

#endif  // MOONPOOL_TRANSPORT_INTERNAL_MESSAGE_QUEUE_H_
