// UvLoop's TCP: Listen, Connect, Streams over real loopback sockets
// (127.0.0.1, and [::1] where the machine has it). Each test pins down one
// promise of stream.h / listener.h / uv_loop.h: the data arrives whole and
// in order through partial reads and queued writes, callbacks come exactly
// once or never, errors carry the documented codes, and closing at awkward
// moments leaves nothing behind (the loop, declared first, is destroyed
// last and asserts that libuv closed clean; ASan checks the memory).
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moonpool/driver/uv_loop.h"

#if defined(__SANITIZE_ADDRESS__)
#define MOONPOOL_HAVE_ASAN_HOOKS 1
extern "C" int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void*, size_t),
    void (*free_hook)(const volatile void*));
#endif

namespace moonpool::driver {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kPatience = absl::Seconds(20);

// Records everything a Stream tells its handler; hooks let a test act.
class Recorder : public StreamHandler {
 public:
  explicit Recorder(size_t buffer_bytes = 64 * 1024) : buffer_(buffer_bytes) {}

  absl::Span<char> ReadBuffer(size_t suggested) override {
    last_suggested = suggested;
    return absl::MakeSpan(buffer_);
  }
  void OnRead(size_t n) override {
    ++reads;
    if (keep_data) received.append(buffer_.data(), n);
    bytes_read += n;
    if (on_read) on_read(absl::MakeConstSpan(buffer_.data(), n));
  }
  void OnReadEnd(absl::Status status) override {
    ++read_ends;
    end_status = status;
  }
  void OnWritten(size_t n) override {
    ++written_calls;
    written += n;
  }
  void OnWriteError(absl::Status status) override {
    ++write_errors;
    write_error = status;
  }

  std::function<void(absl::Span<const char>)> on_read;
  bool keep_data = true;
  std::string received;
  size_t bytes_read = 0;
  size_t last_suggested = 0;
  int reads = 0;
  int read_ends = 0;
  absl::Status end_status;
  int written_calls = 0;
  size_t written = 0;
  int write_errors = 0;
  absl::Status write_error;

 private:
  std::vector<char> buffer_;
};

struct ServerOptions {
  bool read = true;   // StartReading on each accepted stream
  bool echo = false;  // write back what is read
  size_t read_buffer = 64 * 1024;
  ListenOptions listen = {};
};

// A listener keeping every accepted stream, each with its own Recorder.
struct Server {
  using Options = ServerOptions;

  Server(Loop& loop, Address address, Options options_in)
      : options(options_in) {
    absl::StatusOr<std::unique_ptr<Listener>> l =
        loop.Listen(address, options.listen,
                    [this](absl::StatusOr<std::unique_ptr<Stream>> s) {
                      Accept(std::move(s));
                    });
    status = l.status();
    if (l.ok()) listener = *std::move(l);
  }
  Server(Loop& loop, Options options_in = {})
      : Server(loop, Address::Loopback(0), options_in) {}

  void Accept(absl::StatusOr<std::unique_ptr<Stream>> s) {
    if (!s.ok()) {
      ++accept_errors;
      return;
    }
    auto handler = std::make_unique<Recorder>(options.read_buffer);
    Stream* stream = s->get();
    if (options.echo) {
      handler->on_read = [stream](absl::Span<const char> bytes) {
        (void)stream->Write(bytes);
      };
    }
    stream->SetHandler(handler.get());
    if (options.read) {
      EXPECT_TRUE(stream->StartReading().ok());
    }
    handlers.push_back(std::move(handler));
    streams.push_back(*std::move(s));
  }

  const Address& address() const { return listener->address(); }

  Options options;
  absl::Status status;
  // Declared before the streams: handlers must outlive them.
  std::vector<std::unique_ptr<Recorder>> handlers;
  std::vector<std::unique_ptr<Stream>> streams;
  std::unique_ptr<Listener> listener;
  int accept_errors = 0;
};

// A connecting stream with its Recorder and the connect callback's record.
struct Client {
  Client(Loop& loop, const Address& address, size_t read_buffer = 64 * 1024)
      : handler(read_buffer) {
    absl::StatusOr<std::unique_ptr<Stream>> s =
        loop.Connect(address, [this](absl::Status st) {
          ++connect_calls;
          connect_status = st;
        });
    status = s.status();
    if (s.ok()) {
      stream = *std::move(s);
      stream->SetHandler(&handler);
    }
  }

  Recorder handler;
  std::unique_ptr<Stream> stream;
  absl::Status status;
  int connect_calls = 0;
  absl::Status connect_status;
};

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Writes all of `data`, returning what Write reported as taken at once.
size_t WriteAll(Stream& stream, absl::string_view data) {
  absl::StatusOr<size_t> taken =
      stream.Write(absl::MakeConstSpan(data.data(), data.size()));
  EXPECT_TRUE(taken.ok()) << taken.status();
  return taken.ok() ? *taken : 0;
}

// A port nobody listens on: bind one, close it, let the close complete.
Address UnusedPort(UvLoop& loop) {
  Address address;
  {
    Server probe(loop);
    EXPECT_TRUE(probe.status.ok()) << probe.status;
    address = probe.address();
  }
  loop.RunUntil([] { return false; }, loop.Now());
  return address;
}

bool HaveIpv6Loopback(UvLoop& loop) {
  absl::StatusOr<std::unique_ptr<Listener>> l =
      loop.Listen(*Address::Parse("[::1]:0"), {},
                  [](absl::StatusOr<std::unique_ptr<Stream>>) {});
  return l.ok();
}

TEST(UvStream, ListenOnPortZeroReportsTheBoundPort) {
  UvLoop loop;
  Server server(loop);
  ASSERT_TRUE(server.status.ok()) << server.status;
  EXPECT_NE(server.address().port(), 0);
  EXPECT_EQ(server.address().HostString(), "127.0.0.1");
}

TEST(UvStream, ConnectAcceptsAndBothEndsKnowTheirAddresses) {
  UvLoop loop;
  Server server(loop);
  Client client(loop, server.address());
  ASSERT_TRUE(client.status.ok()) << client.status;
  EXPECT_EQ(client.connect_calls, 0) << "never inside Connect";
  ASSERT_TRUE(loop.RunUntil(
      [&] { return client.connect_calls == 1 && server.streams.size() == 1; },
      loop.Now() + kPatience));
  EXPECT_TRUE(client.connect_status.ok()) << client.connect_status;
  EXPECT_EQ(client.stream->peer_address(), server.address());
  EXPECT_EQ(server.streams[0]->peer_address(), client.stream->local_address());
  EXPECT_EQ(server.streams[0]->local_address(), server.address());
  EXPECT_NE(client.stream->local_address().port(), 0);
}

TEST(UvStream, EchoesOneMebibyteThroughPartialReadsAndQueuedWrites) {
  UvLoop loop;
  // Small server reads force many partial reads; the echo's writes queue
  // when the client is slower than the server.
  Server server(loop, {.echo = true, .read_buffer = 4096});
  Client client(loop, server.address(), 16 * 1024);
  const std::string message = RandomBytes(1 << 20, 1);
  ASSERT_TRUE(client.stream->StartReading().ok());
  const size_t taken = WriteAll(*client.stream, message);
  ASSERT_TRUE(loop.RunUntil(
      [&] { return client.handler.received.size() >= message.size(); },
      loop.Now() + kPatience));
  EXPECT_TRUE(client.handler.received == message) << "bytes differ";
  EXPECT_EQ(client.handler.last_suggested, 64u * 1024);
  EXPECT_GT(server.handlers[0]->reads, 1 << 20 >> 12) << "partial reads";
  EXPECT_EQ(taken + client.handler.written, message.size())
      << "taken at once + OnWritten = everything written";
  EXPECT_EQ(client.stream->queued_write_bytes(), 0u);
  EXPECT_EQ(client.handler.write_errors, 0);
  EXPECT_EQ(server.handlers[0]->write_errors, 0);
}

TEST(UvStream, WritesCoalesceWhileThePeerDoesNotRead) {
  UvLoop loop;
  Server server(loop, {.read = false});
  Client client(loop, server.address());
  client.handler.keep_data = false;
  ASSERT_TRUE(loop.RunUntil(
      [&] { return client.connect_calls == 1 && server.streams.size() == 1; },
      loop.Now() + kPatience));

  // Fill the socket buffers until the kernel stops taking bytes.
  std::string sent;
  size_t taken_at_once = 0;
  const std::string block = RandomBytes(64 * 1024, 2);
  while (client.stream->queued_write_bytes() == 0) {
    taken_at_once += WriteAll(*client.stream, block);
    sent += block;
    ASSERT_LT(sent.size(), size_t{256} << 20) << "the kernel never pushed back";
  }
  // Now many small writes: none taken at once, each adds to the queue.
  const int kSmallWrites = 500;
  for (int i = 0; i < kSmallWrites; ++i) {
    const std::string piece = "<" + std::to_string(i) + ">";
    const size_t before = client.stream->queued_write_bytes();
    EXPECT_EQ(WriteAll(*client.stream, piece), 0u);
    EXPECT_EQ(client.stream->queued_write_bytes(), before + piece.size());
    sent += piece;
  }
  // Let the loop try to send while the peer still reads nothing.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(20));
  EXPECT_GT(client.stream->queued_write_bytes(), 0u);

  // The peer reads: everything arrives, in order.
  Recorder& peer = *server.handlers[0];
  ASSERT_TRUE(server.streams[0]->StartReading().ok());
  ASSERT_TRUE(loop.RunUntil([&] { return peer.received.size() >= sent.size(); },
                            loop.Now() + kPatience));
  EXPECT_TRUE(peer.received == sent) << "bytes differ or out of order";
  ASSERT_TRUE(
      loop.RunUntil([&] { return client.stream->queued_write_bytes() == 0; },
                    loop.Now() + kPatience));
  ASSERT_TRUE(loop.RunUntil(
      [&] { return taken_at_once + client.handler.written == sent.size(); },
      loop.Now() + kPatience));
  // Hundreds of queued writes left as a handful of gathered writes.
  EXPECT_LT(client.handler.written_calls, 10);
}

// Spans of `parts`, for WriteGathered.
std::vector<absl::Span<const char>> Pieces(
    const std::vector<std::string>& parts) {
  std::vector<absl::Span<const char>> pieces;
  for (const std::string& p : parts) pieces.push_back(absl::MakeConstSpan(p));
  return pieces;
}

TEST(UvStream, GatheredWriteSendsEveryPieceInOrder) {
  UvLoop loop;
  Server server(loop, {.echo = true});
  Client client(loop, server.address());
  ASSERT_TRUE(client.stream->StartReading().ok());
  ASSERT_TRUE(loop.RunUntil([&] { return client.connect_calls == 1; },
                            loop.Now() + kPatience));
  // A header, a large payload kept elsewhere, an empty piece, a trailer.
  const std::vector<std::string> parts = {"header", RandomBytes(1 << 20, 3), "",
                                          "trailer"};
  std::string all;
  for (const std::string& p : parts) all += p;
  absl::StatusOr<size_t> taken = client.stream->WriteGathered(Pieces(parts));
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_TRUE(loop.RunUntil(
      [&] { return client.handler.received.size() >= all.size(); },
      loop.Now() + kPatience));
  EXPECT_TRUE(client.handler.received == all) << "bytes differ";
  EXPECT_EQ(*taken + client.handler.written, all.size())
      << "taken at once + OnWritten = everything written";
}

TEST(UvStream, GatheredWriteQueuesWhatTheKernelDoesNotTake) {
  UvLoop loop;
  Server server(loop, {.read = false});
  Client client(loop, server.address());
  client.handler.keep_data = false;
  ASSERT_TRUE(loop.RunUntil(
      [&] { return client.connect_calls == 1 && server.streams.size() == 1; },
      loop.Now() + kPatience));
  // Gathered writes until the kernel stops taking whole ones.
  std::string sent;
  size_t taken_at_once = 0;
  const std::vector<std::string> parts = {"<frame>", RandomBytes(256 << 10, 4),
                                          "</frame>"};
  while (client.stream->queued_write_bytes() == 0) {
    absl::StatusOr<size_t> taken = client.stream->WriteGathered(Pieces(parts));
    ASSERT_TRUE(taken.ok()) << taken.status();
    taken_at_once += *taken;
    for (const std::string& p : parts) sent += p;
    ASSERT_LT(sent.size(), size_t{256} << 20) << "the kernel never pushed back";
  }
  // Behind queued bytes nothing is taken at once: all of it queues.
  const size_t before = client.stream->queued_write_bytes();
  absl::StatusOr<size_t> taken = client.stream->WriteGathered(Pieces(parts));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(*taken, 0u);
  for (const std::string& p : parts) sent += p;
  EXPECT_EQ(client.stream->queued_write_bytes(),
            before + parts[0].size() + parts[1].size() + parts[2].size());

  // The peer reads: everything arrives, in order.
  Recorder& peer = *server.handlers[0];
  ASSERT_TRUE(server.streams[0]->StartReading().ok());
  ASSERT_TRUE(loop.RunUntil([&] { return peer.received.size() >= sent.size(); },
                            loop.Now() + kPatience));
  EXPECT_TRUE(peer.received == sent) << "bytes differ or out of order";
  ASSERT_TRUE(loop.RunUntil(
      [&] { return taken_at_once + client.handler.written == sent.size(); },
      loop.Now() + kPatience));
}

// A Stream with only Write: the default WriteGathered must keep the order
// and report what was taken at once.
class TakesAtMost final : public Stream {
 public:
  explicit TakesAtMost(size_t budget) : budget_(budget) {}
  void SetHandler(StreamHandler*) override {}
  absl::Status StartReading() override { return absl::OkStatus(); }
  void StopReading() override {}
  absl::StatusOr<size_t> Write(absl::Span<const char> bytes) override {
    // Nothing is taken once something is queued: order is kept.
    const size_t taken = queued_.empty() ? std::min(budget_, bytes.size()) : 0;
    budget_ -= taken;
    written_.append(bytes.data(), taken);
    queued_.append(bytes.data() + taken, bytes.size() - taken);
    return taken;
  }
  size_t queued_write_bytes() const override { return queued_.size(); }
  void Shutdown() override {}
  void Close() override {}
  const Address& local_address() const override { return address_; }
  const Address& peer_address() const override { return address_; }

  std::string all() const { return written_ + queued_; }

 private:
  size_t budget_;
  std::string written_;
  std::string queued_;
  Address address_ = Address::Loopback(0);
};

TEST(Stream, DefaultGatheredWriteWritesThePiecesInOrderThroughWrite) {
  TakesAtMost stream(/*budget=*/10);
  const std::vector<std::string> parts = {"0123", "456789abc", "def"};
  absl::StatusOr<size_t> taken = stream.WriteGathered(Pieces(parts));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(*taken, 10u);
  EXPECT_EQ(stream.queued_write_bytes(), 6u);
  EXPECT_EQ(stream.all(), "0123456789abcdef");
}

TEST(UvStream, WritesBeforeTheConnectCompletesAreSentAfterIt) {
  UvLoop loop;
  Server server(loop, {.echo = true});
  Client client(loop, server.address());
  ASSERT_TRUE(client.stream->StartReading().ok());
  EXPECT_EQ(WriteAll(*client.stream, "hello"), 0u);
  EXPECT_EQ(WriteAll(*client.stream, " world"), 0u);
  EXPECT_EQ(client.stream->queued_write_bytes(), 11u);
  ASSERT_TRUE(
      loop.RunUntil([&] { return client.handler.received == "hello world"; },
                    loop.Now() + kPatience));
  EXPECT_EQ(client.connect_calls, 1);
  EXPECT_EQ(client.handler.written, 11u);
}

TEST(UvStream, ConnectRefusedIsUnavailableAndCallsBackOnce) {
  UvLoop loop;
  const Address nobody = UnusedPort(loop);
  Client client(loop, nobody);
  ASSERT_TRUE(client.status.ok()) << "refused is reported by the callback";
  EXPECT_EQ(WriteAll(*client.stream, "queued"), 0u);
  ASSERT_TRUE(client.stream->StartReading().ok());
  ASSERT_TRUE(loop.RunUntil([&] { return client.connect_calls > 0; },
                            loop.Now() + kPatience));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(20));
  EXPECT_EQ(client.connect_calls, 1);
  EXPECT_EQ(client.connect_status.code(), absl::StatusCode::kUnavailable)
      << client.connect_status;
  EXPECT_THAT(client.connect_status.message(), HasSubstr("refused"));
  EXPECT_THAT(client.connect_status.message(), HasSubstr(nobody.ToString()));
  // The connect callback was the only news; the stream stays failed.
  EXPECT_EQ(client.handler.read_ends, 0);
  EXPECT_EQ(client.handler.write_errors, 0);
  EXPECT_EQ(client.stream->queued_write_bytes(), 0u);
  absl::StatusOr<size_t> w = client.stream->Write(absl::MakeConstSpan("x", 1));
  EXPECT_EQ(w.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.stream->StartReading().code(),
            absl::StatusCode::kUnavailable);
}

TEST(UvStream, ConnectThatFailsUpFrontReturnsTheErrorAndNeverCallsBack) {
  UvLoop loop;
  // TCP to the broadcast address is refused by connect(2) itself.
  int calls = 0;
  absl::StatusOr<std::unique_ptr<Stream>> s = loop.Connect(
      Address::Ipv4({255, 255, 255, 255}, 80), [&](absl::Status) { ++calls; });
  if (s.ok()) {
    s->reset();
    GTEST_SKIP() << "this kernel defers the broadcast connect's error";
  }
  EXPECT_NE(s.status().code(), absl::StatusCode::kOk);
  EXPECT_THAT(s.status().message(), HasSubstr("255.255.255.255:80"));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(10));
  EXPECT_EQ(calls, 0);
}

TEST(UvStream, DestroyingAStreamWithAPendingConnectNeverCallsBack) {
  UvLoop loop;
  Server server(loop);
  auto witness = std::make_shared<int>(0);
  int calls = 0;
  absl::StatusOr<std::unique_ptr<Stream>> s =
      loop.Connect(server.address(), [&, witness](absl::Status) { ++calls; });
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(witness.use_count(), 2);
  s->reset();
  EXPECT_EQ(witness.use_count(), 1) << "the callback is destroyed by Close";
  loop.RunUntil([&] { return server.streams.size() == 1; },
                loop.Now() + kPatience);
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(10));
  EXPECT_EQ(calls, 0);
}

TEST(UvStream, CloseInsideAReadCallbackStopsEveryCallback) {
  UvLoop loop;
  Server server(loop, {.read = false});
  Client client(loop, server.address(), /*read_buffer=*/16);
  ASSERT_TRUE(loop.RunUntil([&] { return server.streams.size() == 1; },
                            loop.Now() + kPatience));
  // The client has a write queued (the server does not read) and more
  // bytes to read than one buffer holds.
  const std::string big = RandomBytes(8 << 20, 3);
  size_t taken = 0;
  while (client.stream->queued_write_bytes() == 0) {
    taken += WriteAll(*client.stream, big);
  }
  (void)taken;
  WriteAll(*server.streams[0], std::string(4096, 'x'));
  server.streams[0]->Shutdown();
  client.handler.on_read = [&](absl::Span<const char>) {
    client.stream->Close();
  };
  ASSERT_TRUE(client.stream->StartReading().ok());
  ASSERT_TRUE(loop.RunUntil([&] { return client.handler.reads > 0; },
                            loop.Now() + kPatience));
  // Let the server read so the client's cancelled write would complete.
  ASSERT_TRUE(server.streams[0]->StartReading().ok());
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(50));
  EXPECT_EQ(client.handler.reads, 1);
  EXPECT_EQ(client.handler.read_ends, 0);
  EXPECT_EQ(client.handler.written_calls, 0);
  EXPECT_EQ(client.handler.write_errors, 0);
  EXPECT_EQ(client.stream->queued_write_bytes(), 0u);
  EXPECT_EQ(client.stream->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client.stream->StartReading().code(),
            absl::StatusCode::kFailedPrecondition);
  // The server sees the close as the end of the stream (or a reset).
  ASSERT_TRUE(loop.RunUntil([&] { return server.handlers[0]->read_ends == 1; },
                            loop.Now() + kPatience));
}

TEST(UvStream, DestroyingAStreamInsideItsReadCallbackIsSafe) {
  UvLoop loop;
  Server server(loop);
  Client client(loop, server.address());
  ASSERT_TRUE(loop.RunUntil([&] { return server.streams.size() == 1; },
                            loop.Now() + kPatience));
  client.handler.on_read = [&](absl::Span<const char>) {
    client.stream.reset();
  };
  ASSERT_TRUE(client.stream->StartReading().ok());
  WriteAll(*server.streams[0], "bye");
  ASSERT_TRUE(loop.RunUntil([&] { return client.stream == nullptr; },
                            loop.Now() + kPatience));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(10));
  EXPECT_EQ(client.handler.reads, 1);
  EXPECT_EQ(client.handler.read_ends, 0);
}

TEST(UvStream, ShutdownGivesThePeerEndOfStreamAndKeepsReading) {
  UvLoop loop;
  Server server(loop);
  Client client(loop, server.address());
  ASSERT_TRUE(client.stream->StartReading().ok());
  WriteAll(*client.stream, "last words");
  client.stream->Shutdown();
  EXPECT_EQ(client.stream->Write(absl::MakeConstSpan("x", 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(loop.RunUntil(
      [&] {
        return !server.handlers.empty() && server.handlers[0]->read_ends == 1;
      },
      loop.Now() + kPatience));
  Recorder& peer = *server.handlers[0];
  EXPECT_EQ(peer.received, "last words");
  EXPECT_TRUE(peer.end_status.ok()) << peer.end_status;
  // Half close: the server can still answer, and the client still reads.
  WriteAll(*server.streams[0], "reply");
  ASSERT_TRUE(loop.RunUntil([&] { return client.handler.received == "reply"; },
                            loop.Now() + kPatience));
  EXPECT_EQ(client.handler.read_ends, 0);
}

TEST(UvStream, ShutdownWaitsForQueuedWrites) {
  UvLoop loop;
  Server server(loop, {.read = false});
  Client client(loop, server.address());
  ASSERT_TRUE(loop.RunUntil([&] { return server.streams.size() == 1; },
                            loop.Now() + kPatience));
  client.handler.keep_data = false;
  std::string sent;
  const std::string block = RandomBytes(256 * 1024, 4);
  while (client.stream->queued_write_bytes() == 0) {
    WriteAll(*client.stream, block);
    sent += block;
  }
  WriteAll(*client.stream, "tail");  // lands in the second buffer
  sent += "tail";
  client.stream->Shutdown();
  ASSERT_TRUE(server.streams[0]->StartReading().ok());
  Recorder& peer = *server.handlers[0];
  ASSERT_TRUE(loop.RunUntil([&] { return peer.read_ends == 1; },
                            loop.Now() + kPatience));
  EXPECT_TRUE(peer.end_status.ok()) << peer.end_status;
  EXPECT_EQ(peer.received.size(), sent.size());
  EXPECT_TRUE(peer.received == sent);
}

TEST(UvStream, PeerResetEndsReadingWithUnavailable) {
  UvLoop loop;
  Server server(loop, {.read = false});
  Client client(loop, server.address());
  ASSERT_TRUE(client.stream->StartReading().ok());
  WriteAll(*client.stream, "unread bytes make the close a reset");
  ASSERT_TRUE(loop.RunUntil(
      [&] {
        return server.streams.size() == 1 &&
               client.stream->queued_write_bytes() == 0;
      },
      loop.Now() + kPatience));
  // Let the bytes reach the server's receive buffer, then close unread.
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(10));
  server.streams.clear();
  ASSERT_TRUE(loop.RunUntil([&] { return client.handler.read_ends == 1; },
                            loop.Now() + kPatience));
  EXPECT_EQ(client.handler.end_status.code(), absl::StatusCode::kUnavailable)
      << client.handler.end_status;
  // Writing now fails too, either at once or through OnWriteError.
  absl::StatusOr<size_t> w = client.stream->Write(absl::MakeConstSpan("x", 1));
  if (w.ok()) {
    ASSERT_TRUE(loop.RunUntil([&] { return client.handler.write_errors == 1; },
                              loop.Now() + kPatience));
    EXPECT_EQ(client.handler.write_error.code(),
              absl::StatusCode::kUnavailable);
  } else {
    EXPECT_EQ(w.status().code(), absl::StatusCode::kUnavailable) << w.status();
  }
}

TEST(UvStream, ListenOnAnAddressInUseIsAlreadyExists) {
  UvLoop loop;
  Server first(loop);
  ASSERT_TRUE(first.status.ok());
  Server second(loop, first.address(), {});
  EXPECT_EQ(second.status.code(), absl::StatusCode::kAlreadyExists)
      << second.status;
  EXPECT_THAT(second.status.message(), HasSubstr("in use"));
  EXPECT_THAT(second.status.message(), HasSubstr(first.address().ToString()));
}

TEST(UvStream, ListenOnAnAddressThisHostLacksIsInvalidArgument) {
  UvLoop loop;
  // TEST-NET-1 (RFC 5737) is never a local address.
  Server server(loop, Address::Ipv4({192, 0, 2, 1}, 0), {});
  EXPECT_EQ(server.status.code(), absl::StatusCode::kInvalidArgument)
      << server.status;
}

TEST(UvStream, ReusePortLetsTwoListenersShareAPort) {
  UvLoop loop;
  Server first(loop, {.listen = {.reuse_port = true}});
  ASSERT_TRUE(first.status.ok()) << first.status;
  Server second(loop, first.address(), {.listen = {.reuse_port = true}});
  ASSERT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(second.address(), first.address());
  // Connections are spread by the kernel; each lands on one of them.
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<Client>(loop, first.address()));
  }
  ASSERT_TRUE(loop.RunUntil(
      [&] { return first.streams.size() + second.streams.size() == 8; },
      loop.Now() + kPatience));
}

TEST(UvStream, AcceptCallbackMayCloseTheListener) {
  UvLoop loop;
  std::unique_ptr<Listener> listener;
  std::vector<std::unique_ptr<Stream>> accepted;
  absl::StatusOr<std::unique_ptr<Listener>> l = loop.Listen(
      Address::Loopback(0), {}, [&](absl::StatusOr<std::unique_ptr<Stream>> s) {
        ASSERT_TRUE(s.ok());
        accepted.push_back(*std::move(s));
        listener.reset();
      });
  ASSERT_TRUE(l.ok());
  listener = *std::move(l);
  const Address address = listener->address();
  Client a(loop, address);
  Client b(loop, address);
  ASSERT_TRUE(loop.RunUntil(
      [&] { return a.connect_calls == 1 && b.connect_calls == 1; },
      loop.Now() + kPatience));
  loop.RunUntil([] { return false; }, loop.Now() + absl::Milliseconds(20));
  EXPECT_EQ(accepted.size(), 1u) << "no accept after the listener closed";
  EXPECT_EQ(listener, nullptr);
}

TEST(UvStream, Ipv6LoopbackRoundTrip) {
  UvLoop loop;
  if (!HaveIpv6Loopback(loop)) {
    GTEST_SKIP() << "this machine has no IPv6 loopback ([::1] cannot be "
                    "bound)";
  }
  Server server(loop, *Address::Parse("[::1]:0"), {.echo = true});
  ASSERT_TRUE(server.status.ok()) << server.status;
  EXPECT_EQ(server.address().family(), Address::Family::kIpv6);
  EXPECT_EQ(server.address().HostString(), "::1");
  Client client(loop, server.address());
  ASSERT_TRUE(client.stream->StartReading().ok());
  WriteAll(*client.stream, "over v6");
  ASSERT_TRUE(
      loop.RunUntil([&] { return client.handler.received == "over v6"; },
                    loop.Now() + kPatience));
  EXPECT_EQ(client.stream->local_address().family(), Address::Family::kIpv6);
  EXPECT_EQ(server.streams[0]->peer_address(), client.stream->local_address());
}

TEST(UvStream, LoopDestructorWithPendingPostsAfterTheListenerIsDestroyed) {
  auto loop = std::make_unique<UvLoop>();
  auto server = std::make_unique<Server>(*loop);
  auto client = std::make_unique<Client>(*loop, server->address());
  ASSERT_TRUE(loop->RunUntil(
      [&] { return server->streams.size() == 1 && client->connect_calls == 1; },
      loop->Now() + kPatience));
  WriteAll(*client->stream, "in flight at the end");
  client.reset();
  server->listener.reset();  // the listener first, then the streams
  server.reset();
  bool ran = false;
  loop->Post([&] { ran = true; });
  loop->Post([&] { ran = true; });
  loop.reset();  // close callbacks pending, posts unrun: must close clean
  EXPECT_FALSE(ran);
}

// Allocation counting through the sanitizer's malloc hooks (ASan builds
// only); the count is switched on for the stretch being measured.
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

TEST(UvStream, HotPathsDoNotAllocate) {
#ifndef MOONPOOL_HAVE_ASAN_HOOKS
  GTEST_SKIP() << "allocation counting needs the AddressSanitizer build";
#else
  static const bool installed =
      __sanitizer_install_malloc_and_free_hooks(CountMalloc, IgnoreFree) != 0;
  ASSERT_TRUE(installed);
  // Calibrate: the counter does see an allocation.
  g_allocations = 0;
  g_counting = true;
  auto* probe = new std::string(100, 'x');
  asm volatile("" : : "g"(probe) : "memory");
  delete probe;
  g_counting = false;
  ASSERT_GT(g_allocations.load(), 0);

  UvLoop loop;
  Server server(loop, {.echo = true});
  Client client(loop, server.address());
  client.handler.keep_data = false;
  ASSERT_TRUE(client.stream->StartReading().ok());
  ASSERT_TRUE(loop.RunUntil(
      [&] { return server.streams.size() == 1 && client.connect_calls == 1; },
      loop.Now() + kPatience));
  server.handlers[0]->keep_data = false;

  // Ping-pong: each round writes 64 bytes (taken at once), reads the echo,
  // and re-arms a timer.
  const std::string ping(64, 'p');
  int timer_fires = 0;
  auto timer = loop.CreateTimer([&] { ++timer_fires; });
  size_t expected = 0;
  auto round = [&] {
    expected += ping.size();
    (void)client.stream->Write(absl::MakeConstSpan(ping.data(), ping.size()));
    timer->Start(loop.Now() + absl::Seconds(1));
    loop.RunUntil([&] { return client.handler.bytes_read >= expected; },
                  loop.Now() + kPatience);
  };
  for (int i = 0; i < 20; ++i) round();  // warm up every buffer
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 200; ++i) round();
  g_counting = false;
  EXPECT_EQ(client.handler.bytes_read, expected);
  EXPECT_EQ(g_allocations.load(), 0)
      << "allocations in 200 rounds of write + read + timer re-arm";
  EXPECT_EQ(client.stream->queued_write_bytes(), 0u);
#endif
}

}  // namespace
}  // namespace moonpool::driver
