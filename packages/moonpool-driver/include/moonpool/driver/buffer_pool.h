// BufferPool keeps the strings of finished payloads for the next ones, so
// that a steady flow of requests allocates no payload storage: a client's
// encoded requests (ClientTransport encodes into a string from its pool, and
// its Peers give the string back when the request's outcome is delivered),
// and a server's received messages (ServerTransport copies each into a
// string from its pool, and takes it back from a message given back to
// Reply).
//
// What it is not: a general allocator or thread-safe (one pool per loop, on
// the loop's thread), and it never holds what it was not given. Bounded: it
// keeps at most `max_buffers` strings, none with a capacity above
// `max_buffer_bytes` (larger ones are freed at once: a rare 1 MiB payload
// must not pin 1 MiB per slot).
//
// Hand-written because neither Abseil nor the standard library keeps a
// free list of std::string storage; the strings are ordinary std::strings,
// so whoever ends up owning one may keep or free it as usual.
#ifndef MOONPOOL_DRIVER_BUFFER_POOL_H_
#define MOONPOOL_DRIVER_BUFFER_POOL_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace moonpool::driver {

struct BufferPoolOptions {
  // Strings kept; about the requests in flight at once that it should
  // cover.
  size_t max_buffers = 1024;
  // Largest capacity kept.
  size_t max_buffer_bytes = 64 * 1024;
};

class BufferPool {
 public:
  explicit BufferPool(BufferPoolOptions options = {}) : options_(options) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // An empty string, with the capacity of one given back if there is one.
  std::string Take() {
    if (free_.empty()) return std::string();
    std::string s = std::move(free_.back());
    free_.pop_back();
    return s;
  }

  // Keeps `s`'s storage for a later Take, within the bounds; `s` is left
  // empty either way.
  void Give(std::string&& s) {
    if (s.capacity() > options_.max_buffer_bytes ||
        free_.size() >= options_.max_buffers ||
        s.capacity() <= std::string().capacity()) {
      std::string().swap(s);
      return;
    }
    s.clear();
    free_.push_back(std::move(s));
  }

  size_t size() const { return free_.size(); }

 private:
  BufferPoolOptions options_;
  std::vector<std::string> free_;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_BUFFER_POOL_H_
