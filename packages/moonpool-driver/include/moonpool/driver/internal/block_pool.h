// BlockPool: a per-thread cache of small heap blocks, by 64-byte size class,
// for the coroutine runtime's own short-lived objects: Task frames,
// Promise/Future shared states, spawned-task nodes. Not API.
//
// Why: a coroutine frame is allocated on every call of a coroutine, and GCC
// never elides that allocation. Recycling the block a finished frame leaves
// behind halves the cost of awaiting a task that finishes at once (and makes
// a steady-state promise hand-off allocation-free).
//
// What it is not: a general allocator. A block is plain global operator new
// memory, so it may be freed on any thread (it then joins that thread's
// cache). Each size class keeps at most 512 blocks per thread (32 KiB of
// the smallest, 512 KiB of the largest: only what the thread once had in
// use at the same time), so that a burst of 256 requests finishing in one
// turn, then 256 new ones, is served from the cache (with 16 KiB per class
// half of them missed); larger or surplus blocks go back to operator delete
// at once, and a thread's cache is emptied when the thread exits.
//
// Under AddressSanitizer (or with MOONPOOL_DRIVER_NO_BLOCK_POOL defined) the
// pool is bypassed, so that ASan still sees every use of a freed frame.
#ifndef MOONPOOL_DRIVER_INTERNAL_BLOCK_POOL_H_
#define MOONPOOL_DRIVER_INTERNAL_BLOCK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <new>

#if defined(__SANITIZE_ADDRESS__) || defined(MOONPOOL_DRIVER_NO_BLOCK_POOL)
#define MOONPOOL_DRIVER_BLOCK_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOONPOOL_DRIVER_BLOCK_POOL 0
#endif
#endif
#ifndef MOONPOOL_DRIVER_BLOCK_POOL
#define MOONPOOL_DRIVER_BLOCK_POOL 1
#endif

namespace moonpool::driver::internal {

class BlockPool {
 public:
  static constexpr std::size_t kGranule = 64;
  static constexpr std::size_t kClasses = 16;  // blocks up to 1 KiB
  static constexpr std::size_t kBlocksPerClass = 512;

  static void* Allocate(std::size_t size) {
#if MOONPOOL_DRIVER_BLOCK_POOL
    const std::size_t c = ClassOf(size);
    if (c < kClasses) {
      State& s = state;
      if (FreeBlock* block = s.heads[c]) {
        s.heads[c] = block->next;
        --s.counts[c];
        return block;
      }
      return ::operator new((c + 1) * kGranule);
    }
#endif
    return ::operator new(size);
  }

  static void Free(void* block, std::size_t size) noexcept {
#if MOONPOOL_DRIVER_BLOCK_POOL
    const std::size_t c = ClassOf(size);
    if (c < kClasses) {
      State& s = state;
      if (s.counts[c] < kBlocksPerClass && !s.closed) {
        if (!s.cleanup_registered) RegisterCleanup();
        auto* free_block = static_cast<FreeBlock*>(block);
        free_block->next = s.heads[c];
        s.heads[c] = free_block;
        ++s.counts[c];
        return;
      }
      ::operator delete(block, (c + 1) * kGranule);
      return;
    }
#endif
    ::operator delete(block, size);
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  // Trivial, so constant-initialised: reaching it costs no TLS guard.
  struct State {
    FreeBlock* heads[kClasses];
    uint32_t counts[kClasses];
    bool cleanup_registered;
    bool closed;  // the thread is exiting: free straight to operator delete
  };
  // Empties the calling thread's cache when the thread exits.
  struct Cleanup {
    ~Cleanup() {
      State& s = state;
      s.closed = true;
      for (std::size_t c = 0; c < kClasses; ++c) {
        while (FreeBlock* block = s.heads[c]) {
          s.heads[c] = block->next;
          ::operator delete(block, (c + 1) * kGranule);
        }
        s.counts[c] = 0;
      }
    }
  };

  static constexpr std::size_t ClassOf(std::size_t size) {
    return size == 0 ? 0 : (size - 1) / kGranule;
  }

  [[gnu::noinline]] static void RegisterCleanup() {
    static thread_local Cleanup cleanup;
    (void)cleanup;
    state.cleanup_registered = true;
  }

  static constinit inline thread_local State state{};
};

}  // namespace moonpool::driver::internal

#endif  // MOONPOOL_DRIVER_INTERNAL_BLOCK_POOL_H_
