// Helpers for the chaos tests: a StreamHandler that records what happens to
// a stream, and a connected pair of streams on a SimLoop.
#ifndef MOONPOOL_CHAOS_TESTS_SIM_TEST_UTIL_H_
#define MOONPOOL_CHAOS_TESTS_SIM_TEST_UTIL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/listener.h"
#include "moonpool/driver/stream.h"

namespace moonpool::chaos::testing {

// Records what happens to a stream, and fails the test on a callback the
// Stream contract rules out (a read after the end, anything twice).
// on_end and on_write_error, when set, run inside those callbacks.
class Recorder : public driver::StreamHandler {
 public:
  explicit Recorder(size_t read_size = 4096) : buf_(read_size) {}
  absl::Span<char> ReadBuffer(size_t) override { return absl::MakeSpan(buf_); }
  void OnRead(size_t n) override {
    EXPECT_GT(n, 0u);
    EXPECT_FALSE(end.has_value()) << "OnRead after OnReadEnd";
    data.append(buf_.data(), n);
    ++reads;
  }
  void OnReadEnd(absl::Status status) override {
    EXPECT_FALSE(end.has_value()) << "OnReadEnd twice";
    end = std::move(status);
    if (on_end) on_end();
  }
  void OnWritten(size_t n) override {
    EXPECT_FALSE(write_error.has_value()) << "OnWritten after OnWriteError";
    written += n;
  }
  void OnWriteError(absl::Status status) override {
    EXPECT_FALSE(write_error.has_value()) << "OnWriteError twice";
    write_error = std::move(status);
    if (on_write_error) on_write_error();
  }

  std::string data;
  int reads = 0;
  std::optional<absl::Status> end;
  size_t written = 0;
  std::optional<absl::Status> write_error;
  std::function<void()> on_end;
  std::function<void()> on_write_error;

 private:
  std::vector<char> buf_;
};

// A client stream connected to a listener; both ends with a Recorder.
struct Pair {
  std::unique_ptr<driver::Listener> listener;
  std::unique_ptr<driver::Stream> client;
  std::unique_ptr<driver::Stream> server;
  Recorder client_rec;
  Recorder server_rec;
  std::optional<absl::Status> connected;
};

// Makes the pair, a client stream on host `from` connected to a listener
// on host `to`, both reading unless `start_reading` is false, and runs
// `sim` until it is connected and accepted.
inline std::unique_ptr<Pair> Connect(SimLoop& sim, SimHost& from, SimHost& to,
                                     bool start_reading = true,
                                     size_t read_size = 4096) {
  auto p = std::make_unique<Pair>();
  p->client_rec = Recorder(read_size);
  p->server_rec = Recorder(read_size);
  Pair* raw = p.get();
  auto l = to.Listen(
      to.Addr(4500), {},
      [raw, start_reading](absl::StatusOr<std::unique_ptr<driver::Stream>> s) {
        ASSERT_TRUE(s.ok()) << s.status();
        raw->server = std::move(*s);
        raw->server->SetHandler(&raw->server_rec);
        if (start_reading) {
          EXPECT_TRUE(raw->server->StartReading().ok());
        }
      });
  EXPECT_TRUE(l.ok()) << l.status();
  p->listener = std::move(*l);
  auto c = from.Connect(to.Addr(4500),
                        [raw](absl::Status s) { raw->connected = s; });
  EXPECT_TRUE(c.ok()) << c.status();
  p->client = std::move(*c);
  p->client->SetHandler(&p->client_rec);
  if (start_reading) {
    EXPECT_TRUE(p->client->StartReading().ok());
  }
  sim.RunUntil([&] { return raw->connected.has_value() && raw->server; },
               sim.Now() + absl::Seconds(10));
  return p;
}

// Bytes 0, 1, ..., 250, 0, ... offset by `salt`: every shift shows.
inline std::string Pattern(size_t n, int salt = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i + salt) % 251);
  return s;
}

// Writes all of `data`, in `chunk`-sized calls, as the driver does: returns
// bytes taken at once (the rest were queued by the stream).
inline size_t WriteAll(driver::Stream& s, const std::string& data,
                       size_t chunk) {
  size_t taken = 0;
  for (size_t off = 0; off < data.size(); off += chunk) {
    absl::StatusOr<size_t> n =
        s.Write(absl::MakeConstSpan(data).subspan(off, chunk));
    EXPECT_TRUE(n.ok()) << n.status();
    if (n.ok()) taken += *n;
  }
  return taken;
}

}  // namespace moonpool::chaos::testing

#endif  // MOONPOOL_CHAOS_TESTS_SIM_TEST_UTIL_H_
