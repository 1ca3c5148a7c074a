// Writes the seed corpus of tls_record_fuzzer from real TLS 1.3 handshakes
// between the harness's client and server (tls_harness.h): recorded client
// transcripts for the handshake path (mode a), which the fuzzer's server
// answers exactly as when they were recorded, and the client's records,
// whole, flipped, replayed and reordered, for the record path (mode b).
//
//   build/fuzz/fuzz/make_tls_record_seeds fuzz/corpus/tls_record
#include <cstdint>
#include <cstdio>
#include <string>

#include "seed_corpus.h"
#include "tls_harness.h"

namespace moonpool::fuzz {
namespace {

// Plan steps: how (bits 0-1) and size code (bits 2-7), as the fuzzer reads
// them.
constexpr uint8_t kWhole = 0;               // the rest, then a turn
constexpr uint8_t kByteAtATime = 1 << 2;    // 1 byte, then a turn
constexpr uint8_t kSmallChunks = 13 << 2;   // 13 bytes, then a turn
constexpr uint8_t kSlow = (40 << 2) | 2;    // 1 KiB, then 3 s pass
constexpr uint8_t kPaused = (5 << 2) | 3;   // 5 bytes while paused
constexpr uint8_t kNoTurn = (33 << 2) | 1;  // 128 bytes, no turn

// Byte 0 of mode a: bit 1 mutual, bits 4-5 end, bit 6 small buffer, bit 7
// expire.
constexpr uint8_t kMutual = 2;
constexpr uint8_t kEndNone = 2 << 4;
constexpr uint8_t kEndReset = 1 << 4;
constexpr uint8_t kSmallBuffer = 0x40;
constexpr uint8_t kExpire = 0x80;
// Byte 0 of mode b, bit 7: 2 MiB more after the stream, memory watched.
constexpr uint8_t kFlood = 0x80;

std::string Plan(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return std::string{static_cast<char>(a), static_cast<char>(b),
                     static_cast<char>(c), static_cast<char>(d)};
}

std::string HandshakeInput(uint8_t flags, const std::string& plan,
                           const std::string& client_bytes) {
  return std::string(1, static_cast<char>(flags & ~1)) + plan + client_bytes;
}

// Byte 0 of mode b: bit 0 set, bits 1-2 variant, bit 3 close_notify,
// bits 4-5 end, bit 6 small buffer, bit 7 flood; then the plan, the plaintext
// size (16-bit LE), the number of writes - 1, the variant's bytes.
std::string RecordInput(int variant, bool close_notify, uint8_t more_flags,
                        const std::string& plan, uint16_t plaintext,
                        uint8_t writes, const std::string& rest) {
  const uint8_t flags = static_cast<uint8_t>(
      1 | (variant << 1) | (close_notify ? 8 : 0) | more_flags);
  return std::string(1, static_cast<char>(flags)) + plan +
         std::string{static_cast<char>(plaintext & 0xff),
                     static_cast<char>(plaintext >> 8),
                     static_cast<char>(writes - 1)} +
         rest;
}

// One handshake of the harness: the ClientHello, the client's whole
// handshake transcript and its records of Pattern(plaintext).
struct Recording {
  std::string client_hello;
  std::string transcript;
  std::string records;
};

Recording Record(bool mutual, size_t plaintext, int writes, bool close_notify) {
  TlsPair pair(mutual, /*with_client=*/true, 64 * 1024);
  Recording r;
  r.client_hello = pair.client_stream->written;
  pair.HandshakeBoth();
  r.transcript = pair.client_transcript;
  r.records = pair.ClientWrites(plaintext, writes, close_notify);
  return r;
}

std::string Flips(std::initializer_list<std::pair<uint16_t, uint8_t>> flips) {
  std::string s;
  for (const auto& [at, bit] : flips) {
    s += static_cast<char>(at >> 8);
    s += static_cast<char>(at & 0xff);
    s += static_cast<char>(bit);
  }
  return s;
}

}  // namespace
}  // namespace moonpool::fuzz

int main(int argc, char** argv) {
  using namespace moonpool::fuzz;  // NOLINT: a generator's main
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  SeedCorpus corpus(argv[1]);
  const std::string whole = Plan(kWhole, kWhole, kWhole, kWhole);

  // ---- Mode a: the handshake path.
  const Recording mutual = Record(true, 100, 1, true);
  const Recording anonymous = Record(false, 100, 1, false);
  corpus.Write("a_client_hello_waits",
               HandshakeInput(kMutual | kEndNone, whole, mutual.client_hello));
  corpus.Write(
      "a_client_hello_then_timeout",
      HandshakeInput(kMutual | kEndNone | kExpire, whole, mutual.client_hello));
  corpus.Write("a_client_hello_then_fin",
               HandshakeInput(kMutual, whole, mutual.client_hello));
  corpus.Write(
      "a_mutual_transcript_records_close_notify",
      HandshakeInput(kMutual, whole, mutual.transcript + mutual.records));
  corpus.Write("a_mutual_transcript_byte_at_a_time",
               HandshakeInput(
                   kMutual | kEndReset,
                   Plan(kByteAtATime, kByteAtATime, kByteAtATime, kByteAtATime),
                   mutual.transcript + mutual.records));
  corpus.Write("a_mutual_transcript_mixed_plan",
               HandshakeInput(kMutual | kSmallBuffer,
                              Plan(kSmallChunks, kSlow, kPaused, kNoTurn),
                              mutual.transcript + mutual.records));
  corpus.Write(
      "a_anonymous_transcript_records_truncated",
      HandshakeInput(0, whole, anonymous.transcript + anonymous.records));
  corpus.Write("a_anonymous_client_to_mutual_server",
               HandshakeInput(kMutual, whole, anonymous.transcript));
  corpus.Write("a_mutual_transcript_cut_short",
               HandshakeInput(
                   kMutual, whole,
                   mutual.transcript.substr(0, mutual.transcript.size() - 20)));
  corpus.Write("a_half_client_hello_then_reset",
               HandshakeInput(kMutual | kEndReset, whole,
                              mutual.client_hello.substr(
                                  0, mutual.client_hello.size() / 2)));
  corpus.Write(
      "a_not_tls",
      HandshakeInput(kMutual, whole, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  corpus.Write(
      "a_moonpool_hello_not_tls",
      HandshakeInput(kMutual, whole, std::string("\x40\0\0\0moonpool", 12)));

  // ---- Mode b: the record path after a real handshake.
  corpus.Write("b_input_as_records",
               RecordInput(0, false, 0, whole, 100, 1,
                           std::string("\x17\x03\x03\x00\x20", 5) +
                               std::string(32, '\x5a')));
  corpus.Write("b_records_whole", RecordInput(1, false, 0, whole, 100, 1, ""));
  corpus.Write("b_records_close_notify",
               RecordInput(1, true, 0, whole, 100, 1, ""));
  corpus.Write(
      "b_records_large_in_three_writes",
      RecordInput(1, true, kSmallBuffer,
                  Plan(kSmallChunks, kSlow, kPaused, kNoTurn), 40000, 3, ""));
  corpus.Write("b_records_then_garbage",
               RecordInput(1, false, 0, whole, 300, 2,
                           std::string("\x17\x03\x03\x00\x11", 5) +
                               std::string(17, '\x01')));
  corpus.Write("b_records_then_reset",
               RecordInput(1, false, kEndReset, whole, 300, 2, ""));
  corpus.Write("b_close_notify_then_flood",
               RecordInput(1, true, kFlood, whole, 100, 1, ""));
  corpus.Write("b_records_then_flood",
               RecordInput(1, false, kFlood, whole, 100, 1, ""));
  corpus.Write("b_flip_in_body",
               RecordInput(2, true, 0, whole, 100, 1, Flips({{40, 3}})));
  corpus.Write("b_flip_in_header",
               RecordInput(2, false, 0, whole, 100, 1, Flips({{3, 0}})));
  corpus.Write("b_flip_in_tag_of_second_record",
               RecordInput(2, false, 0, whole, 200, 2, Flips({{220, 7}})));
  corpus.Write("b_flip_in_close_notify",
               RecordInput(2, true, 0, whole, 100, 1, Flips({{130, 1}})));
  corpus.Write("b_records_in_order",
               RecordInput(3, true, 0, whole, 300, 3,
                           std::string("\x00\x01\x02\x03", 4)));
  corpus.Write(
      "b_record_replayed",
      RecordInput(3, false, 0, whole, 300, 3, std::string("\x00\x00\x01", 3)));
  corpus.Write(
      "b_records_reordered",
      RecordInput(3, false, 0, whole, 300, 3, std::string("\x01\x00\x02", 3)));
  corpus.Write("b_record_skipped", RecordInput(3, true, 0, whole, 300, 3,
                                               std::string("\x00\x02\x03", 3)));
  corpus.Report();
  return 0;
}
