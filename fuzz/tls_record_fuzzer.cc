// libFuzzer target: a server-side driver::TlsStream fed arbitrary
// ciphertext, during the handshake (mode a) and after a genuine one (mode
// b). Contracts (tls_stream.h): a handshake ends OK or with a documented
// code, and nothing reaches the handler before it ends OK; the handler
// never receives a byte the client did not write (every client of the
// harness writes Pattern(), so delivered bytes are a prefix of it); a
// record that is changed, replayed or reordered is never delivered and ends
// reading with DataLoss / Unavailable / Unauthenticated; what the server
// writes and queues stays bounded by its input. Input layout and checks:
// fuzz/README.md, "tls_record_fuzzer".
#include <sanitizer/allocator_interface.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "fuzz_util.h"
#include "tls_harness.h"

namespace moonpool::fuzz {
namespace {

// What the server may write on its own, whatever it is fed: its handshake
// flight (two small Ed25519 certificates) and an alert or close_notify.
constexpr size_t kServerOutputBound = 16 * 1024;
constexpr size_t kSmallReadBuffer = 7;
constexpr size_t kLargeReadBuffer = 64 * 1024;
constexpr size_t kMaxPlaintext = 48 * 1024;
// Variant 3 stops listing records past this much.
constexpr size_t kMaxStream = 128 * 1024;
// The flood after the stream (mode b, bit 7), and how much more memory the
// server may hold at its end than before it: a reader that stopped, or
// whose reading ended, must not make the TlsStream buffer what keeps
// coming (the wrapped stream reads 64 KiB at a time).
constexpr size_t kFloodBytes = 2 * 1024 * 1024;
constexpr size_t kFloodChunk = 16 * 1024;
constexpr size_t kFloodGrowthBound = 512 * 1024;
// Ciphertext a record adds to its plaintext under TLS 1.3: the inner
// content type and the 16-byte AEAD tag (OpenSSL pads nothing).
constexpr size_t kRecordOverhead = 5 + 1 + 16;

bool Verbose() {
  static const bool verbose = std::getenv("MOONPOOL_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

// MOONPOOL_FUZZ_TLS_NO_FLOOD=1 skips the flood (README, "Findings": while a
// known unbounded buffering is open, to fuzz the rest).
bool FloodOff() {
  static const bool off = std::getenv("MOONPOOL_FUZZ_TLS_NO_FLOOD") != nullptr;
  return off;
}

size_t ChunkSize(uint8_t code, size_t remaining) {
  size_t n = 0;
  if (code == 0) {
    n = remaining;
  } else if (code <= 32) {
    n = code;
  } else {
    n = static_cast<size_t>(code - 32) * 128;
  }
  return std::min(n, remaining);
}

bool HandshakeCodeDocumented(absl::StatusCode c) {
  return c == absl::StatusCode::kOk ||
         c == absl::StatusCode::kUnauthenticated ||
         c == absl::StatusCode::kDeadlineExceeded ||
         c == absl::StatusCode::kUnavailable;
}

bool ReadEndCodeDocumented(absl::StatusCode c) {
  return c == absl::StatusCode::kOk || c == absl::StatusCode::kDataLoss ||
         c == absl::StatusCode::kUnavailable ||
         c == absl::StatusCode::kUnauthenticated;
}

// Checks that hold after every step, whatever the mode.
void CheckAlways(const TlsPair& pair, size_t fed) {
  const Collector& c = pair.collector;
  MOONPOOL_FUZZ_CHECK(pair.server_handshakes <= 1);
  if (pair.server_handshake.has_value()) {
    MOONPOOL_FUZZ_CHECK(HandshakeCodeDocumented(pair.server_handshake->code()));
  }
  // Nothing reaches the handler before the handshake ended OK.
  const bool open =
      pair.server_handshake.has_value() && pair.server_handshake->ok();
  if (!open) MOONPOOL_FUZZ_CHECK(c.calls == 0);
  MOONPOOL_FUZZ_CHECK(open == pair.server->handshake_done() ||
                      pair.server_stream->closed());
  // A failed handshake closed the wrapped stream.
  if (pair.server_handshake.has_value() && !pair.server_handshake->ok()) {
    MOONPOOL_FUZZ_CHECK(pair.server_stream->closed());
  }
  MOONPOOL_FUZZ_CHECK(c.contract_breaks == 0);
  MOONPOOL_FUZZ_CHECK(c.ends <= 1);
  if (c.end.has_value()) {
    MOONPOOL_FUZZ_CHECK(ReadEndCodeDocumented(c.end->code()));
  }
  // Never a byte the client did not write (no client writes anything but
  // Pattern(), and nobody else has its keys).
  MOONPOOL_FUZZ_CHECK(c.delivered.size() <= fed);
  MOONPOOL_FUZZ_CHECK(c.foreign_bytes == 0);
  // Memory: what the server wrote and queues is bounded by what it was fed.
  MOONPOOL_FUZZ_CHECK(pair.server_stream->total_written <=
                      kServerOutputBound + 2 * fed);
  MOONPOOL_FUZZ_CHECK(pair.server->queued_write_bytes() <=
                      kServerOutputBound + 2 * fed);
}

struct Run {
  const uint8_t* plan;  // 4 steps
  uint8_t end_mode;     // 0, 3: FIN; 1: reset; 2: none
  bool expire;          // advance past the handshake timeout at the end
  bool flood = false;   // then 2 MiB of record-like bytes, memory watched
};

// Feeds `stream` to the server along the plan, then ends it. Returns how
// many bytes the server took.
size_t Feed(TlsPair& pair, const std::string& stream, const Run& run) {
  size_t pos = 0;
  size_t step = 0;
  while (pos < stream.size() && !pair.server_stream->closed()) {
    const uint8_t s = run.plan[step++ % 4];
    const size_t n = ChunkSize(s >> 2, stream.size() - pos);
    const absl::Span<const char> chunk(stream.data() + pos, n);
    switch (s & 3) {
      case 0:  // a read, then the loop's turn
        pos += pair.server_stream->Deliver(chunk);
        RunReady(pair.server_loop);
        break;
      case 1:  // a read, the loop's turn later
        pos += pair.server_stream->Deliver(chunk);
        break;
      case 2:  // a read, then three seconds pass (a slow peer)
        pos += pair.server_stream->Deliver(chunk);
        pair.server_loop.RunUntil([] { return false; },
                                  pair.server_loop.Now() + absl::Seconds(3));
        break;
      case 3: {  // the handler pauses reading across the read: during
                 // the handshake the bytes are still read, after it they
                 // wait for the handler to resume
        pair.server->StopReading();
        const size_t taken = pair.server_stream->Deliver(chunk);
        pos += taken;
        RunReady(pair.server_loop);
        if (pair.server_stream->closed()) break;
        MOONPOOL_FUZZ_CHECK(pair.server->StartReading().ok());
        RunReady(pair.server_loop);
        if (taken == 0) pos += pair.server_stream->Deliver(chunk);
        RunReady(pair.server_loop);
        break;
      }
    }
    CheckAlways(pair, pos);
    // The handler reads again after every step; a stream that still takes
    // nothing (its reading ended) is fed no more.
    if (!pair.server_stream->can_read() && !pair.server_stream->closed()) {
      if (!pair.server->StartReading().ok()) break;
      RunReady(pair.server_loop);
      if (!pair.server_stream->can_read()) break;
    }
  }
  RunReady(pair.server_loop);
  if (run.flood && !FloodOff()) {
    // Bytes of a record header (application data, 0x1717 bytes long) over
    // and over: whatever the server makes of them, its memory stays put.
    const std::string chunk(kFloodChunk, '\x17');
    const size_t before = __sanitizer_get_current_allocated_bytes();
    size_t flooded = 0;
    while (flooded < kFloodBytes && pair.server_stream->can_read()) {
      const size_t n = pair.server_stream->Deliver(chunk);
      if (n == 0) break;
      flooded += n;
      RunReady(pair.server_loop);
    }
    const size_t after = __sanitizer_get_current_allocated_bytes();
    if (Verbose()) {
      std::fprintf(stderr, "flood: %zu bytes taken, allocated %zu -> %zu\n",
                   flooded, before, after);
    }
    MOONPOOL_FUZZ_CHECK(after <= before + kFloodGrowthBound);
    CheckAlways(pair, pos + flooded);
  }
  if (run.end_mode == 1) {
    pair.server_stream->End(absl::UnavailableError("connection reset"));
  } else if (run.end_mode != 2) {
    pair.server_stream->End(absl::OkStatus());
  }
  RunReady(pair.server_loop);
  if (run.expire) {
    pair.server_loop.RunUntil([] { return false; },
                              pair.server_loop.Now() + absl::Seconds(11));
  }
  CheckAlways(pair, pos);
  // The handshake timer makes waiting forever impossible.
  if (run.expire) MOONPOOL_FUZZ_CHECK(pair.server_handshake.has_value());
  return pos;
}

// Mode a: the input is the client's side of the connection.
void HandshakePath(const uint8_t* data, size_t size) {
  const uint8_t flags = data[0];
  const Run run{data + 1, static_cast<uint8_t>((flags >> 4) & 3),
                (flags & 0x80) != 0};
  TlsPair pair(/*mutual=*/(flags & 2) != 0, /*with_client=*/false,
               (flags & 0x40) != 0 ? kSmallReadBuffer : kLargeReadBuffer);
  const std::string stream(reinterpret_cast<const char*>(data) + 5, size - 5);
  Feed(pair, stream, run);
  if (Verbose()) {
    std::fprintf(stderr, "handshake: %s; read %zu bytes, end %s\n",
                 pair.server_handshake.has_value()
                     ? pair.server_handshake->ToString().c_str()
                     : "still waiting",
                 pair.collector.delivered.size(),
                 pair.collector.end.has_value()
                     ? pair.collector.end->ToString().c_str()
                     : "none");
  }
}

// Mode b: after a real handshake, the server reads the client's records,
// changed as the input says, or the input itself.
void RecordPath(const uint8_t* data, size_t size) {
  if (size < 8) return;
  const uint8_t flags = data[0];
  const int variant = (flags >> 1) & 3;
  const bool close_notify = (flags & 8) != 0;
  const Run run{data + 1, static_cast<uint8_t>((flags >> 4) & 3), false,
                (flags & 0x80) != 0};
  const size_t total =
      (static_cast<size_t>(data[5]) | (static_cast<size_t>(data[6]) << 8)) %
      (kMaxPlaintext + 1);
  const int writes = 1 + data[7] % 4;
  const std::string rest(reinterpret_cast<const char*>(data) + 8, size - 8);

  TlsPair pair(/*mutual=*/true, /*with_client=*/true,
               (flags & 0x40) != 0 ? kSmallReadBuffer : kLargeReadBuffer);
  pair.HandshakeBoth();
  const std::string records = pair.ClientWrites(total, writes, close_notify);
  const std::vector<std::string> split = SplitRecords(records);
  size_t whole = 0;
  for (const std::string& r : split) whole += r.size();
  MOONPOOL_FUZZ_CHECK(whole == records.size());  // the harness's own sanity

  std::string stream;
  // What the server must deliver (exactly) and whether reading must end
  // with an error, once the stream and its end are fed.
  std::string expect_exact;
  bool expect_exact_set = false;
  size_t exact_after = 0;  // bytes of `stream` the server must take first
  bool corrupted = false;
  size_t max_delivered = total;
  switch (variant) {
    case 0:  // the input alone, as records
      stream = rest;
      break;
    case 1:  // the client's records, then the input
      stream = records + rest;
      expect_exact = Pattern(total);
      expect_exact_set = true;
      exact_after = records.size();
      break;
    case 2: {  // the client's records with bits flipped (3 bytes a flip)
      stream = records;
      for (size_t i = 0; i + 3 <= rest.size() && !stream.empty(); i += 3) {
        const size_t at =
            ((static_cast<size_t>(static_cast<uint8_t>(rest[i])) << 8) |
             static_cast<uint8_t>(rest[i + 1])) %
            stream.size();
        stream[at] = static_cast<char>(stream[at] ^ (1 << (rest[i + 2] & 7)));
      }
      // No byte of a changed record, nor of any after it, is delivered.
      size_t first = 0;
      while (first < stream.size() && stream[first] == records[first]) ++first;
      if (first < stream.size()) {
        corrupted = true;
        size_t before = 0;
        size_t plain_before = 0;
        for (const std::string& r : split) {
          if (before + r.size() > first) break;
          before += r.size();
          plain_before += r.size() - kRecordOverhead;
        }
        max_delivered = plain_before;
      }
      break;
    }
    case 3: {  // the client's records in the order the input lists
      if (split.empty()) break;
      size_t in_order = 0;
      size_t plain_in_order = 0;
      bool still_in_order = true;
      bool closed_in_order = false;
      for (char b : rest) {
        // Bounded, so that an input of a few KiB cannot make a stream of
        // megabytes (16 KiB records listed over and over).
        if (stream.size() >= kMaxStream) break;
        const size_t k = static_cast<uint8_t>(b) % split.size();
        stream += split[k];
        if (still_in_order && k == in_order && !closed_in_order) {
          ++in_order;
          exact_after += split[k].size();
          // The last record is close_notify when the client shut down.
          if (close_notify && k + 1 == split.size()) {
            closed_in_order = true;
          } else {
            plain_in_order += split[k].size() - kRecordOverhead;
          }
        } else if (!closed_in_order) {
          still_in_order = false;
        }
      }
      corrupted = !still_in_order;
      expect_exact = Pattern(plain_in_order);
      expect_exact_set = true;
      break;
    }
  }
  const size_t taken = Feed(pair, stream, run);
  const Collector& c = pair.collector;
  MOONPOOL_FUZZ_CHECK(c.delivered.size() <= total);
  MOONPOOL_FUZZ_CHECK(c.delivered.size() <= max_delivered);
  const bool all_fed = taken == stream.size();
  if (expect_exact_set && taken >= exact_after &&
      pair.server->handshake_done()) {
    MOONPOOL_FUZZ_CHECK(c.delivered == expect_exact);
  }
  if (corrupted && c.end.has_value()) MOONPOOL_FUZZ_CHECK(!c.end->ok());
  if (corrupted && all_fed && run.end_mode != 2) {
    MOONPOOL_FUZZ_CHECK(c.end.has_value());
  }
  if (Verbose()) {
    std::fprintf(stderr,
                 "records: variant %d, %zu plaintext bytes in %zu records, "
                 "%zu fed; read %zu bytes, end %s\n",
                 variant, total, split.size(), stream.size(),
                 c.delivered.size(),
                 c.end.has_value() ? c.end->ToString().c_str() : "none");
  }
}

}  // namespace
}  // namespace moonpool::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  if ((data[0] & 1) == 0) {
    moonpool::fuzz::HandshakePath(data, size);
  } else {
    moonpool::fuzz::RecordPath(data, size);
  }
  return 0;
}
