// CapnpMessage and CapnpReader on reused blocks (issue 16): the bytes are
// the ones a default capnp builder writes, a reader keeps its promises
// (aligned or not, after the buffer and after a move), a block that held a
// reader's copy builds a clean message, and a small round trip allocates
// nothing once warm.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "capnp/message.h"
#include "capnp/serialize.h"
#include "gtest/gtest.h"
#include "kj/array.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/capnp_reader.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/ping.capnp.h"

#if defined(__SANITIZE_ADDRESS__)
#define MOONPOOL_HAVE_ASAN_HOOKS 1
extern "C" int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void*, size_t),
    void (*free_hook)(const volatile void*));
#endif

namespace moonpool::transport {
namespace {

// What capnp itself writes for a default MallocMessageBuilder holding the
// same Ping.
std::string ReferenceBytes(uint64_t sequence, const std::string& payload) {
  capnp::MallocMessageBuilder message;
  schema::Ping::Builder ping = message.initRoot<schema::Ping>();
  ping.setSequence(sequence);
  ping.setPayload(kj::arrayPtr(
      reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  const kj::ArrayPtr<const kj::byte> bytes = flat.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()),
                     bytes.size());
}

std::string Encoded(uint64_t sequence, const std::string& payload) {
  CapnpMessage<schema::Ping> ping;
  ping.builder().setSequence(sequence);
  ping.builder().setPayload(kj::arrayPtr(
      reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
  std::string out;
  EXPECT_TRUE(Codec<CapnpMessage<schema::Ping>>::Encode(ping, out).ok());
  return out;
}

TEST(CapnpBlock, SmallMessageEncodesAsCapnpWritesIt) {
  EXPECT_EQ(Encoded(7, std::string(64, 'p')),
            ReferenceBytes(7, std::string(64, 'p')));
  EXPECT_EQ(Encoded(0, ""), ReferenceBytes(0, ""));
}

TEST(CapnpBlock, MessagesLargerThanTheFirstSegmentEncodeAndDecode) {
  // 20 KiB does not fit the 8 KiB first segment: more segments, written by
  // capnp::writeMessage, and a reader copy of its own.
  std::string payload(20 * 1024, '\0');
  for (size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<char>(i * 131);
  }
  const std::string wire = Encoded(9, payload);
  EXPECT_EQ(wire, ReferenceBytes(9, payload));
  absl::StatusOr<CapnpReader<schema::Ping>> read =
      Codec<CapnpReader<schema::Ping>>::Decode(wire);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->get().getSequence(), 9u);
  const capnp::Data::Reader got = read->get().getPayload();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.begin()), got.size()),
            payload);
  EXPECT_EQ(read->bytes(), wire);

  // Just under and just over what a block holds for a reader's copy (96
  // words) and for a builder's first segment (1024 words).
  for (size_t words : {94u, 96u, 97u, 1020u, 1023u, 1024u, 1025u, 1030u}) {
    const std::string p((words - 4) * 8, 'q');  // table, root, pointer
    const std::string w = Encoded(words, p);
    absl::StatusOr<CapnpReader<schema::Ping>> r =
        Codec<CapnpReader<schema::Ping>>::Decode(w);
    ASSERT_TRUE(r.ok()) << words << ": " << r.status();
    EXPECT_EQ(r->get().getSequence(), words);
    EXPECT_EQ(r->get().getPayload().size(), p.size());
    EXPECT_EQ(r->bytes(), w);
  }
}

TEST(CapnpBlock, UnalignedBytesStillParse) {
  const std::string wire = Encoded(11, "unaligned");
  std::string buffer(wire.size() + 8, '\0');
  for (size_t offset = 1; offset < 8; ++offset) {
    buffer.replace(offset, wire.size(), wire);
    const absl::string_view view(buffer.data() + offset, wire.size());
    ASSERT_NE(reinterpret_cast<uintptr_t>(view.data()) % 8, 0u);
    absl::StatusOr<CapnpReader<schema::Ping>> read =
        Codec<CapnpReader<schema::Ping>>::Decode(view);
    ASSERT_TRUE(read.ok()) << offset << ": " << read.status();
    EXPECT_EQ(read->get().getSequence(), 11u);
    EXPECT_EQ(read->get().getPayload().size(), 9u);
  }
}

TEST(CapnpBlock, ReaderOutlivesTheBufferAndKeepsItsRootWhenMoved) {
  std::optional<CapnpReader<schema::Ping>> kept;
  std::optional<schema::Ping::Reader> root;
  {
    std::string buffer = Encoded(21, "kept");
    absl::StatusOr<CapnpReader<schema::Ping>> read =
        Codec<CapnpReader<schema::Ping>>::Decode(buffer);
    ASSERT_TRUE(read.ok());
    root = read->get();  // taken before the move
    kept.emplace(*std::move(read));
    buffer.assign(buffer.size(), '\xff');  // the reader owns its copy
  }
  // Other messages come and go on this thread's blocks meanwhile.
  for (int i = 0; i < 20; ++i) {
    const std::string w = Encoded(i, std::string(100, 'z'));
    ASSERT_TRUE(Codec<CapnpReader<schema::Ping>>::Decode(w).ok());
  }
  std::vector<CapnpReader<schema::Ping>> moved;
  moved.push_back(*std::move(kept));
  kept.reset();
  EXPECT_EQ(moved[0].get().getSequence(), 21u);
  EXPECT_EQ(root->getSequence(), 21u);
  const capnp::Data::Reader payload = root->getPayload();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(payload.begin()),
                        payload.size()),
            "kept");
}

TEST(CapnpBlock, BuilderKeepsItsRootWhenMoved) {
  CapnpMessage<schema::Ping> first;
  schema::Ping::Builder root = first.builder();
  CapnpMessage<schema::Ping> second = std::move(first);
  root.setSequence(5);
  EXPECT_EQ(second.reader().getSequence(), 5u);
  second = CapnpMessage<schema::Ping>();  // the old block goes back
  EXPECT_EQ(second.reader().getSequence(), 0u);
}

TEST(CapnpBlock, AReusedFirstSegmentBuildsAZeroedMessage) {
  // A message full of ones goes back to this thread's list; the messages
  // built after it (which reuse its block) must read and encode as new.
  {
    CapnpMessage<schema::Ping> ones;
    ones.builder().setSequence(UINT64_MAX);
    ones.builder().setSentMicros(UINT64_MAX);
    kj::ArrayPtr<kj::byte> p = ones.builder().initPayload(7000);
    std::memset(p.begin(), 0xff, p.size());
  }
  // Readers' blocks come and go too (full of ones, and a malformed one).
  const std::string wire = Encoded(UINT64_MAX, std::string(6000, '\xff'));
  ASSERT_TRUE(Codec<CapnpReader<schema::Ping>>::Decode(wire).ok());
  std::string bad(wire);
  bad[8] = '\x01';  // the root pointer now says "list", not "struct"
  ASSERT_FALSE(Codec<CapnpReader<schema::Ping>>::Decode(bad).ok());
  for (int i = 0; i < 4; ++i) {
    CapnpMessage<schema::Ping> fresh;
    EXPECT_EQ(fresh.reader().getSequence(), 0u);
    EXPECT_EQ(fresh.reader().getSentMicros(), 0u);
    EXPECT_EQ(fresh.reader().getPayload().size(), 0u);
    // Allocating a list in the first segment must find zeros there.
    fresh.builder().initPayload(5000);
    for (kj::byte b : fresh.builder().getPayload()) ASSERT_EQ(b, 0);
    std::string out;
    ASSERT_TRUE(Codec<CapnpMessage<schema::Ping>>::Encode(fresh, out).ok());
    EXPECT_EQ(out, ReferenceBytes(0, std::string(5000, '\0')));
  }
}

TEST(CapnpBlock, MessagesMayEndOnAnotherThread) {
  std::vector<CapnpMessage<schema::Ping>> messages;
  std::vector<CapnpReader<schema::Ping>> readers;
  for (int i = 0; i < 40; ++i) {
    messages.emplace_back().builder().setSequence(i);
    readers.push_back(*Codec<CapnpReader<schema::Ping>>::Decode(
        Encoded(i, std::string(i, 'x'))));
  }
  std::thread other([&] {
    // Destroyed here: the blocks join this thread's list (at most a few)
    // or are freed, and the list is freed when the thread ends (LSan).
    for (int i = 0; i < 40; ++i) {
      EXPECT_EQ(messages[i].reader().getSequence(), static_cast<uint64_t>(i));
      EXPECT_EQ(readers[i].get().getPayload().size(), static_cast<size_t>(i));
    }
    messages.clear();
    readers.clear();
    CapnpMessage<schema::Ping> built_here;  // from this thread's list
    built_here.builder().setSequence(3);
    EXPECT_EQ(Encoded(3, ""), ReferenceBytes(3, ""));
  });
  other.join();
}

#ifdef MOONPOOL_HAVE_ASAN_HOOKS
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};

void CountMalloc(const volatile void*, size_t) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  }
}
void IgnoreFree(const volatile void*) {}
#endif

TEST(CapnpBlock, SmallRoundTripAllocatesNothingOnceWarm) {
#ifndef MOONPOOL_HAVE_ASAN_HOOKS
  GTEST_SKIP() << "allocation counting needs the AddressSanitizer build";
#else
  static const bool installed =
      __sanitizer_install_malloc_and_free_hooks(CountMalloc, IgnoreFree) != 0;
  ASSERT_TRUE(installed);
  g_allocations = 0;
  g_counting = true;
  auto* probe = new std::string(100, 'x');
  asm volatile("" : : "g"(probe) : "memory");
  delete probe;
  g_counting = false;
  ASSERT_GT(g_allocations.load(), 0);

  const std::string payload(64, 'p');
  std::string wire;
  wire.reserve(4096);
  uint64_t sum = 0;
  // What the benchmark's echo does per request: a Ping built and encoded,
  // decoded on the other side, a Pong built from it, decoded again.
  auto round = [&](uint64_t i) {
    CapnpMessage<schema::Ping> ping;
    ping.builder().setSequence(i);
    ping.builder().setPayload(kj::arrayPtr(
        reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
    ASSERT_TRUE(Codec<CapnpMessage<schema::Ping>>::Encode(ping, wire).ok());
    absl::StatusOr<CapnpReader<schema::Ping>> in =
        Codec<CapnpReader<schema::Ping>>::Decode(wire);
    ASSERT_TRUE(in.ok());
    CapnpMessage<schema::Pong> pong;
    pong.builder().setSequence(in->get().getSequence());
    pong.builder().setPayload(in->get().getPayload());
    ASSERT_TRUE(Codec<CapnpMessage<schema::Pong>>::Encode(pong, wire).ok());
    absl::StatusOr<CapnpReader<schema::Pong>> out =
        Codec<CapnpReader<schema::Pong>>::Decode(wire);
    ASSERT_TRUE(out.ok());
    sum += out->get().getSequence();
  };
  for (uint64_t i = 0; i < 10; ++i) round(i);  // warm the thread's blocks
  g_allocations = 0;
  g_counting = true;
  for (uint64_t i = 0; i < 100; ++i) round(i);
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);
  EXPECT_GT(sum, 0u);
#endif
}

}  // namespace
}  // namespace moonpool::transport
