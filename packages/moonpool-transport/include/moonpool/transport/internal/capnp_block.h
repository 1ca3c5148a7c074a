// The memory behind one CapnpMessage (a CapnpBuilderBlock: the
// capnp::MallocMessageBuilder and its 8 KiB first segment) or one
// CapnpReader (a CapnpReaderBlock: the capnp::FlatArrayMessageReader and
// room for a small message's copy). Blocks come from bounded free lists per
// thread, so a small message costs no heap allocation in steady state (a
// builder of its own callocs and zeroes 8 KiB; a reader allocated its copy
// and itself). Not API.
//
// Who owns what: a block taken with TakeCapnpBlock<Block>() belongs to its
// taker until GiveCapnpBlock(); the object in it is the taker's to construct
// and destroy. A block may be given back on another thread than the one
// that took it: it joins that thread's list. Each list keeps at most
// Block::kMaxFree blocks (about 130 KiB of builders, 264 KiB of readers per
// thread that used them) and is freed when its thread ends; a block given
// back after that is freed at once.
#ifndef MOONPOOL_TRANSPORT_INTERNAL_CAPNP_BLOCK_H_
#define MOONPOOL_TRANSPORT_INTERNAL_CAPNP_BLOCK_H_

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "capnp/common.h"
#include "capnp/message.h"
#include "capnp/serialize.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MOONPOOL_CAPNP_BLOCK_POISON(addr, size) \
  ASAN_POISON_MEMORY_REGION(addr, size)
#define MOONPOOL_CAPNP_BLOCK_UNPOISON(addr, size) \
  ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define MOONPOOL_CAPNP_BLOCK_POISON(addr, size) ((void)(addr), (void)(size))
#define MOONPOOL_CAPNP_BLOCK_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

namespace moonpool::transport::internal {

// A builder's first segment: capnp's own first segment size
// (SUGGESTED_FIRST_SEGMENT_WORDS), so every message is split into segments
// exactly as a default MallocMessageBuilder splits it: the bytes on the wire
// do not change.
inline constexpr size_t kCapnpBuilderWords = 1024;
// A reader's copy held in its block; a larger message's copy is an array of
// its own.
inline constexpr size_t kCapnpReaderWords = 96;

// The memory of one CapnpMessage: its builder, and its first segment, which
// is all zeros whenever the block is free (a new block is value-initialised;
// the builder's destructor zeroes what it used).
struct CapnpBuilderBlock {
  // Free blocks kept per thread, about 8.3 KiB each: a loop's turn-by-turn
  // churn (a message built, sent and destroyed while the next is built).
  static constexpr int kMaxFree = 16;
  CapnpBuilderBlock* next = nullptr;  // in a free list
  alignas(capnp::MallocMessageBuilder) unsigned char object[sizeof(
      capnp::MallocMessageBuilder)];
  capnp::word words[kCapnpBuilderWords];
};

// The memory of one CapnpReader: its reader, and its copy when small.
struct CapnpReaderBlock {
  // Free blocks kept per thread, about 1 KiB each (at most 264 KiB): the
  // replies decoded from one read all live until their callers resume, so
  // a loop with 256 requests in flight needs up to 256 at once.
  static constexpr int kMaxFree = 256;
  CapnpReaderBlock* next = nullptr;  // in a free list
  alignas(capnp::FlatArrayMessageReader) unsigned char object[sizeof(
      capnp::FlatArrayMessageReader)];
  capnp::word words[kCapnpReaderWords];
};

// One thread's free list of Blocks. Trivially destructible, so a block
// given back while the thread's destructors run (a static CapnpMessage)
// still finds it.
template <typename Block>
struct CapnpFreeList {
  Block* head = nullptr;
  int count = 0;
  bool closed = false;  // the thread is ending: free blocks at once
};
template <typename Block>
inline thread_local constinit CapnpFreeList<Block> capnp_free_list;

// Frees a thread's list when the thread ends, and closes it.
template <typename Block>
struct CapnpFreeListDrain {
  CapnpFreeListDrain() = default;
  CapnpFreeListDrain(const CapnpFreeListDrain&) = delete;
  CapnpFreeListDrain& operator=(const CapnpFreeListDrain&) = delete;
  ~CapnpFreeListDrain() {
    CapnpFreeList<Block>& list = capnp_free_list<Block>;
    list.closed = true;
    while (list.head != nullptr) {
      Block* block = list.head;
      MOONPOOL_CAPNP_BLOCK_UNPOISON(block, sizeof(Block));
      list.head = block->next;
      delete block;
    }
    list.count = 0;
  }
};

template <typename Block>
Block* TakeCapnpBlock() {
  CapnpFreeList<Block>& list = capnp_free_list<Block>;
  if (list.head == nullptr) return new Block();  // words zeroed
  Block* block = list.head;
  MOONPOOL_CAPNP_BLOCK_UNPOISON(block, sizeof(Block));
  list.head = block->next;
  --list.count;
  block->next = nullptr;
  return block;
}

// REQUIRES: the object in `block` is destroyed; for a CapnpBuilderBlock,
// its words are zeros again.
template <typename Block>
void GiveCapnpBlock(Block* block) {
  // Registers the drain on this thread's first give (a thread that never
  // gives a block back keeps no list).
  thread_local CapnpFreeListDrain<Block> drain;
  (void)drain;
  CapnpFreeList<Block>& list = capnp_free_list<Block>;
  if (list.closed || list.count >= Block::kMaxFree) {
    delete block;
    return;
  }
  block->next = list.head;
  list.head = block;
  ++list.count;
  // A use after the owner let go is an ASan report, as it was when each
  // message had its own heap memory.
  MOONPOOL_CAPNP_BLOCK_POISON(block, sizeof(Block));
}

}  // namespace moonpool::transport::internal

#endif  // MOONPOOL_TRANSPORT_INTERNAL_CAPNP_BLOCK_H_
