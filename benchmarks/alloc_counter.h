// Heap allocation counting for benchmarks: linking alloc_counter.cc into a
// binary replaces the global operator new and delete (every form: plain,
// array, nothrow, aligned, sized delete) and, on glibc without a sanitizer,
// also interposes malloc, calloc, realloc and the aligned C allocators, so
// that allocations made by C libraries (Cap'n Proto's MallocMessageBuilder
// uses calloc) are counted too. Each allocation is counted exactly once,
// whichever entry point it came through.
//
// Counts are per thread: a benchmark loop reads the count of the thread that
// runs it, and an increment is a plain add to a thread-local word (no atomic
// read-modify-write), so counting costs almost nothing in the loop it
// measures.
//
// Example:
//
//   moonpool::bench::AllocationScope scope;
//   for (auto _ : state) DoWork();
//   state.counters["allocs_per_frame"] = benchmark::Counter(
//       scope.allocations(), benchmark::Counter::kAvgIterations);
//
// What it is not: a leak checker or a profiler. Frees are counted but not
// matched to allocations, and nothing records where an allocation came from.
// Link the counter into benchmark binaries only, never into a sanitizer
// build's tests (the malloc interposition is disabled there anyway).
#ifndef MOONPOOL_BENCHMARKS_ALLOC_COUNTER_H_
#define MOONPOOL_BENCHMARKS_ALLOC_COUNTER_H_

#include <cstdint>

namespace moonpool::bench {

// Allocations (operator new of any form, and malloc-family calls when
// interposed) made by the calling thread since it started.
uint64_t ThreadAllocations();
// Bytes requested by those allocations.
uint64_t ThreadAllocatedBytes();
// Deallocations (operator delete of any form, free of a non-null pointer)
// made by the calling thread since it started.
uint64_t ThreadDeallocations();

// True when malloc, calloc and realloc are counted as well as operator new;
// false when only operator new is (non-glibc, or a sanitizer owns malloc).
bool CountsMallocCalls();

// The calling thread's allocations from construction to each query. Use it on
// one thread only.
class AllocationScope {
 public:
  AllocationScope()
      : start_allocations_(ThreadAllocations()),
        start_bytes_(ThreadAllocatedBytes()) {}

  uint64_t allocations() const {
    return ThreadAllocations() - start_allocations_;
  }
  uint64_t bytes() const { return ThreadAllocatedBytes() - start_bytes_; }

 private:
  uint64_t start_allocations_;
  uint64_t start_bytes_;
};

}  // namespace moonpool::bench

#endif  // MOONPOOL_BENCHMARKS_ALLOC_COUNTER_H_
