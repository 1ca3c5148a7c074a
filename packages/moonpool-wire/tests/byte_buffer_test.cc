#include "moonpool/wire/byte_buffer.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace moonpool::wire {
namespace {

std::string ReadableString(const ByteBuffer& b) {
  return std::string(b.Readable().data(), b.size());
}

uintptr_t Mod8(const char* p) { return reinterpret_cast<uintptr_t>(p) % 8; }

TEST(ByteBuffer, AppendsAndConsumesInOrder) {
  ByteBuffer b;
  EXPECT_TRUE(b.empty());
  b.Append(std::string("hello "));
  b.Append(std::string("world"));
  EXPECT_EQ(ReadableString(b), "hello world");
  b.Consume(6);
  EXPECT_EQ(ReadableString(b), "world");
  b.Consume(5);
  EXPECT_TRUE(b.empty());
}

TEST(ByteBuffer, StorageStartsWordAligned) {
  ByteBuffer b;
  absl::Span<char> room = b.PrepareAppend(1);
  EXPECT_EQ(Mod8(room.data()), 0u);
}

TEST(ByteBuffer, KeepsEachByteOffsetModuloEightWhenItMovesOrGrows) {
  ByteBuffer b;
  std::string data(1000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i);
  b.Append(data);
  for (size_t consumed : {3, 5, 8, 13, 100}) {
    const uintptr_t before = Mod8(b.Readable().data());
    b.Consume(consumed);
    const uintptr_t after_consume = Mod8(b.Readable().data());
    EXPECT_EQ(after_consume, (before + consumed) % 8);
    // Ask for more room than is left at the back: forces a move or growth.
    b.PrepareAppend(b.capacity());
    EXPECT_EQ(Mod8(b.Readable().data()), after_consume);
  }
  EXPECT_EQ(ReadableString(b), data.substr(3 + 5 + 8 + 13 + 100));
}

TEST(ByteBuffer, ReusesStorageOnceDrained) {
  ByteBuffer b;
  b.Append(std::string(4096, 'a'));
  const size_t capacity = b.capacity();
  for (int i = 0; i < 100; ++i) {
    b.Consume(b.size());
    b.Append(std::string(4096, 'b'));
  }
  EXPECT_EQ(b.capacity(), capacity);
}

TEST(ByteBuffer, PrepareAppendCommitsOnlyWhatWasWritten) {
  ByteBuffer b;
  absl::Span<char> room = b.PrepareAppend(10);
  ASSERT_GE(room.size(), 10u);
  room[0] = 'a';
  room[1] = 'b';
  b.CommitAppend(2);
  EXPECT_EQ(ReadableString(b), "ab");
}

TEST(ByteBuffer, ReleaseFreesStorage) {
  ByteBuffer b;
  b.Append(std::string(100, 'a'));
  b.Consume(100);
  b.Release();
  EXPECT_EQ(b.capacity(), 0u);
  b.Append(std::string("x"));
  EXPECT_EQ(ReadableString(b), "x");
}

}  // namespace
}  // namespace moonpool::wire
