// The replaced global allocation functions behind alloc_counter.h: every form
// of operator new and delete, and on glibc (no sanitizer) the malloc family
// too, each counting into thread-local words before forwarding to the C
// allocator.
//
// Why thread-local plain words rather than one atomic: a counter that is
// bumped inside the loop being timed must cost next to nothing, and a
// benchmark wants the allocations of its own thread only.
//
// Each allocation is counted once: operator new calls glibc's __libc_malloc
// directly when malloc itself is interposed, so it is not counted a second
// time by the malloc wrapper.
#include "alloc_counter.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

// Interposing malloc is glibc's documented "replacing malloc" mechanism; a
// sanitizer runtime owns malloc itself, so leave it alone there.
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer) && !__has_feature(thread_sanitizer) && \
    !__has_feature(memory_sanitizer)
#define MOONPOOL_BENCH_INTERPOSE_MALLOC 1
#endif
#else
#define MOONPOOL_BENCH_INTERPOSE_MALLOC 1
#endif
#endif

#ifdef MOONPOOL_BENCH_INTERPOSE_MALLOC
extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* ptr, size_t size);
void __libc_free(void* ptr);
void* __libc_memalign(size_t alignment, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);
}
#endif

namespace moonpool::bench {
namespace {

// Zero-initialised static TLS in the executable: no constructor, no lazy
// allocation, safe to touch from inside malloc.
constinit thread_local uint64_t tls_allocations = 0;
constinit thread_local uint64_t tls_allocated_bytes = 0;
constinit thread_local uint64_t tls_deallocations = 0;

inline void CountAllocation(size_t bytes) {
  ++tls_allocations;
  tls_allocated_bytes += bytes;
}

inline void CountDeallocation(void* ptr) {
  if (ptr != nullptr) ++tls_deallocations;
}

// The uncounted C allocator.
inline void* RawMalloc(size_t size) {
#ifdef MOONPOOL_BENCH_INTERPOSE_MALLOC
  return __libc_malloc(size);
#else
  return std::malloc(size);
#endif
}

inline void* RawAlignedAlloc(size_t alignment, size_t size) {
#ifdef MOONPOOL_BENCH_INTERPOSE_MALLOC
  return __libc_memalign(alignment, size);
#else
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  void* ptr = nullptr;
  return posix_memalign(&ptr, alignment, size) == 0 ? ptr : nullptr;
#endif
}

inline void RawFree(void* ptr) {
#ifdef MOONPOOL_BENCH_INTERPOSE_MALLOC
  __libc_free(ptr);
#else
  std::free(ptr);
#endif
}

// operator new's contract: never null; call the new-handler until it either
// makes room or throws, and throw bad_alloc when there is none.
void* CountedNew(size_t size) {
  if (size == 0) size = 1;
  for (;;) {
    if (void* ptr = RawMalloc(size)) {
      CountAllocation(size);
      return ptr;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* CountedAlignedNew(size_t size, std::align_val_t alignment) {
  if (size == 0) size = 1;
  for (;;) {
    if (void* ptr = RawAlignedAlloc(static_cast<size_t>(alignment), size)) {
      CountAllocation(size);
      return ptr;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* CountedNewNothrow(size_t size) noexcept {
  try {
    return CountedNew(size);
  } catch (...) {
    return nullptr;
  }
}

void* CountedAlignedNewNothrow(size_t size,
                               std::align_val_t alignment) noexcept {
  try {
    return CountedAlignedNew(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

void CountedDelete(void* ptr) noexcept {
  CountDeallocation(ptr);
  RawFree(ptr);
}

}  // namespace

uint64_t ThreadAllocations() { return tls_allocations; }
uint64_t ThreadAllocatedBytes() { return tls_allocated_bytes; }
uint64_t ThreadDeallocations() { return tls_deallocations; }

bool CountsMallocCalls() {
#ifdef MOONPOOL_BENCH_INTERPOSE_MALLOC
  return true;
#else
  return false;
#endif
}

}  // namespace moonpool::bench

using moonpool::bench::CountedAlignedNew;
using moonpool::bench::CountedAlignedNewNothrow;
using moonpool::bench::CountedDelete;
using moonpool::bench::CountedNew;
using moonpool::bench::CountedNewNothrow;

// The replaceable global allocation functions ([new.delete]), all twenty-two.
void* operator new(size_t size) { return CountedNew(size); }
void* operator new[](size_t size) { return CountedNew(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  return CountedNewNothrow(size);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return CountedNewNothrow(size);
}
void* operator new(size_t size, std::align_val_t alignment) {
  return CountedAlignedNew(size, alignment);
}
void* operator new[](size_t size, std::align_val_t alignment) {
  return CountedAlignedNew(size, alignment);
}
void* operator new(size_t size, std::align_val_t alignment,
                   const std::nothrow_t&) noexcept {
  return CountedAlignedNewNothrow(size, alignment);
}
void* operator new[](size_t size, std::align_val_t alignment,
                     const std::nothrow_t&) noexcept {
  return CountedAlignedNewNothrow(size, alignment);
}

void operator delete(void* ptr) noexcept { CountedDelete(ptr); }
void operator delete[](void* ptr) noexcept { CountedDelete(ptr); }
void operator delete(void* ptr, size_t) noexcept { CountedDelete(ptr); }
void operator delete[](void* ptr, size_t) noexcept { CountedDelete(ptr); }
void operator delete(void* ptr, const std::nothrow_t&) noexcept {
  CountedDelete(ptr);
}
void operator delete[](void* ptr, const std::nothrow_t&) noexcept {
  CountedDelete(ptr);
}
void operator delete(void* ptr, std::align_val_t) noexcept {
  CountedDelete(ptr);
}
void operator delete[](void* ptr, std::align_val_t) noexcept {
  CountedDelete(ptr);
}
void operator delete(void* ptr, size_t, std::align_val_t) noexcept {
  CountedDelete(ptr);
}
void operator delete[](void* ptr, size_t, std::align_val_t) noexcept {
  CountedDelete(ptr);
}
void operator delete(void* ptr, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  CountedDelete(ptr);
}
void operator delete[](void* ptr, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  CountedDelete(ptr);
}

#ifdef MOONPOOL_BENCH_INTERPOSE_MALLOC
// The malloc family, counted and forwarded to glibc's own implementation. A
// realloc counts as one allocation (it may move the block), unless it frees.
extern "C" {

void* malloc(size_t size) noexcept {
  void* ptr = __libc_malloc(size);
  if (ptr != nullptr) moonpool::bench::CountAllocation(size);
  return ptr;
}

void* calloc(size_t count, size_t size) noexcept {
  void* ptr = __libc_calloc(count, size);
  if (ptr != nullptr) moonpool::bench::CountAllocation(count * size);
  return ptr;
}

void* realloc(void* ptr, size_t size) noexcept {
  if (ptr != nullptr && size == 0) {
    moonpool::bench::CountDeallocation(ptr);
    return __libc_realloc(ptr, size);
  }
  void* result = __libc_realloc(ptr, size);
  if (result != nullptr) moonpool::bench::CountAllocation(size);
  return result;
}

void free(void* ptr) noexcept {
  moonpool::bench::CountDeallocation(ptr);
  __libc_free(ptr);
}

void* memalign(size_t alignment, size_t size) noexcept {
  void* ptr = __libc_memalign(alignment, size);
  if (ptr != nullptr) moonpool::bench::CountAllocation(size);
  return ptr;
}

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  return memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) {
    return EINVAL;
  }
  void* ptr = memalign(alignment, size);
  if (ptr == nullptr) return ENOMEM;
  *out = ptr;
  return 0;
}

void* valloc(size_t size) noexcept {
  void* ptr = __libc_valloc(size);
  if (ptr != nullptr) moonpool::bench::CountAllocation(size);
  return ptr;
}

void* pvalloc(size_t size) noexcept {
  void* ptr = __libc_pvalloc(size);
  if (ptr != nullptr) moonpool::bench::CountAllocation(size);
  return ptr;
}

}  // extern "C"
#endif  // MOONPOOL_BENCH_INTERPOSE_MALLOC
