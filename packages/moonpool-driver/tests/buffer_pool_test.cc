// BufferPool's bounds, and a Peer giving each request's payload string back
// to the pool it was given once the request's outcome is delivered.
#include "moonpool/driver/buffer_pool.h"

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/uv_loop.h"
#include "test_server.h"

namespace moonpool::driver {
namespace {

TEST(BufferPool, TakeGivesBackTheStorageOfAGivenString) {
  BufferPool pool;
  EXPECT_EQ(pool.Take().capacity(), std::string().capacity());
  std::string s(1000, 'x');
  const char* storage = s.data();
  pool.Give(std::move(s));
  EXPECT_EQ(pool.size(), 1u);
  std::string again = pool.Take();
  EXPECT_TRUE(again.empty());
  EXPECT_GE(again.capacity(), 1000u);
  EXPECT_EQ(again.data(), storage);
  EXPECT_EQ(pool.size(), 0u);
}

TEST(BufferPool, KeepsNoMoreThanItsBounds) {
  BufferPool pool({.max_buffers = 2, .max_buffer_bytes = 4096});
  pool.Give(std::string(5000, 'x'));  // too large: freed
  EXPECT_EQ(pool.size(), 0u);
  pool.Give(std::string("short"));  // inline storage: nothing to keep
  EXPECT_EQ(pool.size(), 0u);
  for (int i = 0; i < 3; ++i) pool.Give(std::string(100, 'x'));
  EXPECT_EQ(pool.size(), 2u);
}

TEST(BufferPool, APeerGivesEachPayloadBackWhenItsRequestEnds) {
  UvLoop loop(UvLoopOptions{.seed = 11});
  testing::TestServer server(loop, testing::TestServer::Mode::kEcho);
  BufferPool pool;
  PeerOptions options;
  options.buffers = &pool;
  Peer peer(loop, server.address(), options);
  constexpr int kRequests = 8;
  int done = 0;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(peer.Request(std::string(200, static_cast<char>('a' + i)), {},
                             [&done, i](absl::StatusOr<absl::string_view> r) {
                               ASSERT_TRUE(r.ok()) << r.status();
                               EXPECT_EQ(*r, std::string(200, static_cast<char>(
                                                                  'a' + i)));
                               ++done;
                             })
                    .ok());
  }
  ASSERT_TRUE(loop.RunUntil([&] { return done == kRequests; },
                            loop.Now() + absl::Seconds(5)));
  EXPECT_EQ(pool.size(), static_cast<size_t>(kRequests));
  // A cancelled request's payload comes back too.
  absl::StatusOr<PeerRequestId> id = peer.Request(
      std::string(300, 'z'), {}, [](absl::StatusOr<absl::string_view>) {});
  ASSERT_TRUE(id.ok());
  peer.Cancel(*id);
  EXPECT_EQ(pool.size(), static_cast<size_t>(kRequests) + 1);
  peer.Close();
}

}  // namespace
}  // namespace moonpool::driver
