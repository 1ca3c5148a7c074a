// Writes the seed corpus of frame_decoder_fuzzer: valid frames of every kind,
// streams of several frames, and broken streams, each behind the fuzzer's
// control bytes (README.md, "Input layout"). Frames come from FrameEncoder;
// the broken ones are encoder output with one thing changed.
//
// Usage: make_seed_corpus <output directory>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/envelope_kind.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"
#include "seed_corpus.h"

namespace moonpool::wire {
namespace {

// The control bytes, as frame_decoder_fuzzer.cc reads them.
enum Checksums : uint8_t { kAsIs = 0, kFixUp = 1 };
enum Limit : uint8_t { kOneMiB = 0, k4KiB = 2, k512 = 3 };
enum Retained : uint8_t {
  kRetainDefault = 0,
  kRetainNone = 1,
  kRetain4KiB = 3
};
enum Mode : uint8_t {
  kFeed = 0,
  kExact = 1,
  kAllTheRoom = 2,
  kPartialRead = 3
};

// Size codes: 0 the rest of the stream, 1..32 bytes, 33..63 (code-32)*128.
constexpr uint8_t kRest = 0;
constexpr uint8_t Bytes(int n) { return static_cast<uint8_t>(n); }
constexpr uint8_t Blocks128(int n) { return static_cast<uint8_t>(32 + n); }

struct Control {
  Checksums checksums = kAsIs;
  Limit limit = kOneMiB;
  Retained retained = kRetainDefault;
  // Four (mode, size code) steps, cycled.
  std::pair<Mode, uint8_t> plan[4] = {
      {kFeed, kRest}, {kFeed, kRest}, {kFeed, kRest}, {kFeed, kRest}};

  std::string Serialize() const {
    std::string out;
    out.push_back(
        static_cast<char>(checksums | (limit << 2) | (retained << 4)));
    for (const auto& [mode, size] : plan) {
      out.push_back(static_cast<char>(mode | (size << 2)));
    }
    return out;
  }
};

Control Whole(Mode mode = kFeed) {
  Control c;
  for (auto& step : c.plan) step = {mode, kRest};
  return c;
}

Control Split(std::pair<Mode, uint8_t> a, std::pair<Mode, uint8_t> b,
              std::pair<Mode, uint8_t> c, std::pair<Mode, uint8_t> d) {
  Control control;
  control.plan[0] = a;
  control.plan[1] = b;
  control.plan[2] = c;
  control.plan[3] = d;
  return control;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "make_seed_corpus: %s\n", what.c_str());
  std::exit(1);
}

std::string Encode(std::initializer_list<FrameValue> frames) {
  FrameEncoder encoder;
  ByteBuffer out;
  for (const FrameValue& frame : frames) {
    if (absl::Status s = encoder.Encode(frame, out); !s.ok()) {
      Die(s.ToString());
    }
  }
  absl::Span<const char> bytes = out.Readable();
  return std::string(bytes.data(), bytes.size());
}

// A frame around `body`, with a correct header.
std::string Frame(const std::string& body) {
  std::string frame(kFrameHeaderBytes, '\0');
  WriteFrameHeader(absl::Span<const char>(body.data(), body.size()),
                   frame.data());
  return frame + body;
}

std::string BodyOf(const std::string& frame) {
  return frame.substr(kFrameHeaderBytes);
}

std::string BodyOf(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  return std::string(reinterpret_cast<const char*>(words.begin()),
                     words.size() * sizeof(capnp::word));
}

uint64_t Word(const std::string& body, size_t index) {
  uint64_t w = 0;
  for (int i = 7; i >= 0; --i) {
    w = (w << 8) | static_cast<uint8_t>(body[index * 8 + i]);
  }
  return w;
}

void SetWord(std::string& body, size_t index, uint64_t w) {
  for (int i = 0; i < 8; ++i)
    body[index * 8 + i] = static_cast<char>(w >> (8 * i));
}

// The word index in `body` of the struct or list a pointer at word `at`
// points to (single-segment body: word 0 is the segment table).
size_t Target(const std::string& body, size_t at) {
  const auto offset = static_cast<int32_t>(Word(body, at) & 0xffffffff) >> 2;
  return at + 1 + offset;
}

// Hello, one of each envelope kind, ping, pong, goodbye.
EnvelopeView Request() {
  return EnvelopeView{
      CorrelationId(1),        EnvelopeKind::kRequest, Endpoint(7), "ping?",
      absl::Milliseconds(250), absl::StatusCode::kOk,  ""};
}
EnvelopeView Reply() {
  return EnvelopeView{CorrelationId(1),
                      EnvelopeKind::kReply,
                      kDefaultEndpoint,
                      "pong!",
                      absl::ZeroDuration(),
                      absl::StatusCode::kOk,
                      ""};
}
EnvelopeView Error() {
  return EnvelopeView{CorrelationId(2),           EnvelopeKind::kError,
                      kDefaultEndpoint,           "",
                      absl::ZeroDuration(),       absl::StatusCode::kNotFound,
                      "no handler for endpoint 9"};
}
EnvelopeView OneWay() {
  return EnvelopeView{CorrelationId(),
                      EnvelopeKind::kOneWay,
                      Endpoint(3),
                      absl::string_view("\x00\x01\x02\xff", 4),
                      absl::ZeroDuration(),
                      absl::StatusCode::kOk,
                      ""};
}
// Version 2 reply streams: a request with credit, its items, its end.
EnvelopeView StreamRequest() {
  return EnvelopeView{
      CorrelationId(3),       EnvelopeKind::kRequest, Endpoint(7), "scan a..z",
      absl::Seconds(2),       absl::StatusCode::kOk,  "",
      /*stream_credit=*/65536};
}
EnvelopeView StreamItem(absl::string_view payload) {
  return EnvelopeView{
      CorrelationId(3),     EnvelopeKind::kStreamItem, Endpoint(7), payload,
      absl::ZeroDuration(), absl::StatusCode::kOk,     ""};
}
EnvelopeView StreamEnd(absl::string_view payload = "") {
  return EnvelopeView{
      CorrelationId(3),     EnvelopeKind::kStreamEnd, Endpoint(7), payload,
      absl::ZeroDuration(), absl::StatusCode::kOk,    ""};
}
// Version 2 exactly-once: a request asking the server to keep its outcome
// and saying which ids are settled (0: nothing said).
EnvelopeView ExactlyOnceRequest(uint64_t id, bool exactly_once,
                                uint64_t answered_below) {
  EnvelopeView e{
      CorrelationId(id),       EnvelopeKind::kRequest, Endpoint(7), "put k v",
      absl::Milliseconds(500), absl::StatusCode::kOk,  ""};
  e.exactly_once = exactly_once;
  e.answered_below = CorrelationId(answered_below);
  return e;
}
Hello ClientHello() {
  return Hello{kHelloMagic, kProtocolVersion1, "client-1", 0x5eed0001};
}
Hello ServerHello() {
  return Hello{kHelloMagic, kProtocolVersion1, "server", 0x5eed0002};
}
// Version 2: a client offering 1..2, and a server's answer choosing 2.
Hello ClientHelloV2() {
  return Hello{kHelloMagic, kProtocolVersion1, "client-2", 0x5eed0003,
               kProtocolVersion2};
}
Hello ServerHelloV2() {
  return Hello{kHelloMagic, kProtocolVersion2, "server", 0x5eed0002,
               kProtocolVersion2};
}

// A corpus input is the control prefix the fuzzer reads, then the stream.
class Corpus : public fuzz::SeedCorpus {
 public:
  using SeedCorpus::SeedCorpus;
  void Write(const std::string& name, const Control& control,
             const std::string& stream) {
    SeedCorpus::Write(name, control.Serialize() + stream);
  }
};

void WriteValidFrames(Corpus& corpus) {
  corpus.Write("hello", Whole(), Encode({ClientHello()}));
  corpus.Write("hello_empty_name", Whole(kExact),
               Encode({Hello{kHelloMagic, kProtocolVersion1, "", 1}}));
  corpus.Write("hello_wrong_version", Whole(),
               Encode({Hello{kHelloMagic, 3, "future", 7}}));
  corpus.Write("hello_v2", Whole(), Encode({ClientHelloV2()}));
  corpus.Write("hello_v2_server", Whole(kExact), Encode({ServerHelloV2()}));
  corpus.Write("cancel", Whole(), Encode({Cancel{CorrelationId(7)}}));
  corpus.Write("cancel_max_id", Whole(kAllTheRoom),
               Encode({Cancel{CorrelationId(~uint64_t{0})}}));
  corpus.Write("envelope_stream_request", Whole(), Encode({StreamRequest()}));
  corpus.Write("envelope_stream_request_max_credit", Whole(kExact),
               Encode({EnvelopeView{CorrelationId(4), EnvelopeKind::kRequest,
                                    kDefaultEndpoint, "", absl::ZeroDuration(),
                                    absl::StatusCode::kOk, "", ~uint64_t{0}}}));
  corpus.Write("envelope_exactly_once_request", Whole(),
               Encode({ExactlyOnceRequest(5, true, 3)}));
  corpus.Write("envelope_exactly_once_max", Whole(kExact),
               Encode({ExactlyOnceRequest(~uint64_t{0}, true, ~uint64_t{0})}));
  corpus.Write("envelope_answered_below_only", Whole(kAllTheRoom),
               Encode({ExactlyOnceRequest(6, false, 6)}));
  corpus.Write("envelope_stream_item", Whole(kPartialRead),
               Encode({StreamItem("k=v")}));
  corpus.Write("envelope_stream_end", Whole(), Encode({StreamEnd()}));
  corpus.Write("envelope_stream_end_last_item", Whole(kAllTheRoom),
               Encode({StreamEnd("last")}));
  corpus.Write("credit", Whole(), Encode({Credit{CorrelationId(3), 4096}}));
  corpus.Write("credit_max", Whole(kExact),
               Encode({Credit{CorrelationId(~uint64_t{0}), ~uint64_t{0}}}));
  corpus.Write("envelope_request", Whole(), Encode({Request()}));
  corpus.Write("envelope_request_no_deadline", Whole(kAllTheRoom),
               Encode({EnvelopeView{
                   CorrelationId(5), EnvelopeKind::kRequest, kDefaultEndpoint,
                   "x", absl::InfiniteDuration(), absl::StatusCode::kOk, ""}}));
  corpus.Write("envelope_reply", Whole(kPartialRead), Encode({Reply()}));
  corpus.Write("envelope_error", Whole(), Encode({Error()}));
  corpus.Write("envelope_one_way", Whole(kExact), Encode({OneWay()}));
  corpus.Write("ping", Whole(), Encode({Ping{42}}));
  corpus.Write("pong", Whole(), Encode({Pong{42}}));
  corpus.Write("goodbye", Whole(),
               Encode({Goodbye{CorrelationId(41), "draining"}}));
  corpus.Write("goodbye_empty", Whole(kAllTheRoom),
               Encode({Goodbye{CorrelationId(), ""}}));
  // A multi-segment message (with far pointers) is valid too.
  capnp::MallocMessageBuilder message(1, capnp::AllocationStrategy::FIXED_SIZE);
  auto envelope = message.initRoot<schema::Frame>().initEnvelope();
  envelope.setCorrelationId(3);
  envelope.setKind(schema::Envelope::Kind::REPLY);
  envelope.initPayload(24);
  envelope.setErrorMessage("segments");
  corpus.Write("envelope_multi_segment", Whole(), Frame(BodyOf(message)));
}

void WriteStreams(Corpus& corpus) {
  const std::string session =
      Encode({ClientHello(), Request(), Ping{1}, Reply(), Error(), OneWay(),
              Pong{1}, Goodbye{CorrelationId(2), "bye"}});
  corpus.Write("stream_one_byte_at_a_time",
               Split({kFeed, Bytes(1)}, {kFeed, Bytes(1)}, {kExact, Bytes(1)},
                     {kAllTheRoom, Bytes(1)}),
               session);
  corpus.Write("stream_mixed_splits",
               Split({kFeed, Bytes(3)}, {kExact, Bytes(17)},
                     {kAllTheRoom, Bytes(32)}, {kPartialRead, Bytes(5)}),
               session);
  corpus.Write("stream_across_frames",
               Split({kPartialRead, Blocks128(1)}, {kFeed, Bytes(29)},
                     {kExact, Blocks128(2)}, {kAllTheRoom, Bytes(8)}),
               session);
  corpus.Write("stream_server_side", Whole(kPartialRead),
               Encode({ServerHello(), Reply(), Reply(), Ping{9}, Pong{7}}));
  // Version 2: a request given up on, both directions of the handshake.
  corpus.Write("stream_v2_cancel",
               Split({kFeed, Bytes(7)}, {kExact, Bytes(24)},
                     {kAllTheRoom, Bytes(3)}, {kPartialRead, Bytes(19)}),
               Encode({ClientHelloV2(), ServerHelloV2(), Request(),
                       Cancel{CorrelationId(1)}, Reply(),
                       Cancel{CorrelationId(1)}, Ping{3}}));
  // Version 2 exactly-once: requests with the flag and the settled mark,
  // their replies, and a resend of the first after a new handshake.
  corpus.Write(
      "stream_v2_exactly_once",
      Split({kFeed, Bytes(13)}, {kExact, Bytes(32)}, {kAllTheRoom, Bytes(9)},
            {kPartialRead, Bytes(21)}),
      Encode({ClientHelloV2(), ServerHelloV2(), ExactlyOnceRequest(1, true, 0),
              ExactlyOnceRequest(2, false, 1), ExactlyOnceRequest(3, true, 1),
              Reply(), ClientHelloV2(), ExactlyOnceRequest(3, true, 2),
              Ping{4}}));
  // Version 2 reply streams: a stream with credit granted back and its end,
  // one ended by an error, and a cancel crossing the items.
  corpus.Write(
      "stream_v2_reply_stream",
      Split({kFeed, Bytes(11)}, {kExact, Bytes(40)}, {kAllTheRoom, Bytes(5)},
            {kPartialRead, Blocks128(1)}),
      Encode({ClientHelloV2(), ServerHelloV2(), StreamRequest(),
              StreamItem("a=1"), StreamItem(""), Credit{CorrelationId(3), 3},
              StreamItem(std::string(200, 'b')), Credit{CorrelationId(3), 200},
              StreamEnd(),
              EnvelopeView{CorrelationId(5), EnvelopeKind::kError, Endpoint(7),
                           "", absl::ZeroDuration(),
                           absl::StatusCode::kDeadlineExceeded, "too slow"},
              StreamItem("late"), Cancel{CorrelationId(3)}, StreamItem("late"),
              StreamEnd("z")}));
  // A larger body, read into place in 4 KiB reads, and the buffer given back
  // (retained_bytes 0) once it is drained.
  std::string big(16 << 10, 'p');
  Control reads = Whole(kPartialRead);
  reads.retained = kRetainNone;
  for (auto& step : reads.plan) step = {kPartialRead, Blocks128(31)};
  corpus.Write("stream_large_payload", reads,
               Encode({EnvelopeView{CorrelationId(9), EnvelopeKind::kReply,
                                    kDefaultEndpoint, big, absl::ZeroDuration(),
                                    absl::StatusCode::kOk, ""},
                       Ping{2}}));
  // Frames near and above a small limit.
  Control small = Split({kFeed, Blocks128(2)}, {kExact, Bytes(7)},
                        {kAllTheRoom, Blocks128(1)}, {kPartialRead, Bytes(31)});
  small.limit = k512;
  small.retained = kRetain4KiB;
  corpus.Write(
      "stream_small_limit", small,
      Encode({Request(),
              EnvelopeView{CorrelationId(2), EnvelopeKind::kRequest,
                           kDefaultEndpoint, std::string(400, 'a'),
                           absl::ZeroDuration(), absl::StatusCode::kOk, ""},
              EnvelopeView{CorrelationId(3), EnvelopeKind::kRequest,
                           kDefaultEndpoint, std::string(600, 'b'),
                           absl::ZeroDuration(), absl::StatusCode::kOk, ""}}));
  Control limit4k = Whole(kExact);
  limit4k.limit = k4KiB;
  corpus.Write(
      "stream_limit_4k", limit4k,
      Encode({EnvelopeView{CorrelationId(4), EnvelopeKind::kOneWay,
                           kDefaultEndpoint, std::string(3000, 'c'),
                           absl::ZeroDuration(), absl::StatusCode::kOk, ""},
              Pong{3}}));
  // In fix-up mode the fuzzer writes the checksums itself: zeros here.
  std::string unsummed = Encode({ClientHello(), Request(), Ping{5}});
  for (size_t pos = 0; pos < unsummed.size();) {
    size_t length = 0;
    for (int i = 3; i >= 0; --i) {
      length = (length << 8) | static_cast<uint8_t>(unsummed[pos + i]);
    }
    std::memset(unsummed.data() + pos + 4, 0, 12);
    pos += kFrameHeaderBytes + length;
  }
  Control fix = Split({kFeed, Bytes(13)}, {kExact, Bytes(32)},
                      {kAllTheRoom, Bytes(2)}, {kPartialRead, kRest});
  fix.checksums = kFixUp;
  corpus.Write("stream_checksums_fixed_up", fix, unsummed);
}

void WriteBroken(Corpus& corpus) {
  const std::string ping = Encode({Ping{77}});
  const std::string hello = Encode({ClientHello()});

  std::string bad_header_check = hello;
  bad_header_check[13] ^= 0x10;
  corpus.Write("broken_header_check", Whole(), bad_header_check);

  std::string bad_body = hello + ping;
  bad_body[kFrameHeaderBytes + 20] ^= 0x01;
  corpus.Write("broken_body_checksum",
               Split({kFeed, Bytes(5)}, {kExact, Bytes(9)},
                     {kAllTheRoom, Bytes(20)}, {kPartialRead, Bytes(1)}),
               bad_body);

  // Lengths the header check vouches for but the decoder must refuse.
  auto header_claiming = [](uint32_t length) {
    std::string h(kFrameHeaderBytes, '\0');
    std::string fake(8, '\0');
    WriteFrameHeader(absl::Span<const char>(fake.data(), fake.size()),
                     h.data());
    for (int i = 0; i < 4; ++i) h[i] = static_cast<char>(length >> (8 * i));
    return h;
  };
  Control fix = Whole();
  fix.checksums = kFixUp;  // recomputes the header check after the change
  corpus.Write("broken_length_zero", fix, ping + header_claiming(0));
  corpus.Write("broken_length_not_words", fix, ping + header_claiming(12));
  corpus.Write("broken_length_over_limit", fix,
               ping + header_claiming(2 << 20) + std::string(64, 'z'));
  // A legal length whose body never comes: Finish() says DataLoss.
  corpus.Write("broken_truncated_body", fix,
               header_claiming(1 << 20) + std::string(100, 'q'));
  corpus.Write("broken_truncated_header", Whole(), ping + hello.substr(0, 11));

  // Bodies with correct checksums that are not one valid Frame.
  std::string trailing = BodyOf(ping) + std::string(8, '\0');
  corpus.Write("broken_trailing_words", Whole(), Frame(trailing));

  std::string unknown_kind = BodyOf(ping);
  // Frame's union discriminant is the first 16 bits of its data section.
  const size_t frame_struct = Target(unknown_kind, 1);
  unknown_kind[frame_struct * 8] = 7;
  corpus.Write("broken_unknown_frame_kind", Whole(), Frame(unknown_kind));

  capnp::MallocMessageBuilder bad_enum;
  auto env = bad_enum.initRoot<schema::Frame>().initEnvelope();
  env.setCorrelationId(1);
  env.setKind(static_cast<schema::Envelope::Kind>(9));
  corpus.Write("broken_unknown_envelope_kind", Whole(),
               Frame(BodyOf(bad_enum)));

  std::string unterminated = BodyOf(Encode({Hello{kHelloMagic, 1, "abc", 1}}));
  const size_t text = unterminated.find(std::string("abc\0", 4));
  if (text == std::string::npos) Die("peer name not found");
  unterminated[text + 3] = 'x';
  corpus.Write("broken_text_not_terminated", Whole(), Frame(unterminated));

  std::string garbage;
  for (int i = 0; i < 64; ++i)
    garbage.push_back(static_cast<char>(i * 37 + 11));
  corpus.Write("broken_not_capnp", Whole(), ping + Frame(garbage));

  // Valid, but hostile: payload and error message share one blob, so the
  // value is larger than its body (the traversal limit bounds this).
  capnp::MallocMessageBuilder shared;
  auto e = shared.initRoot<schema::Frame>().initEnvelope();
  e.setKind(schema::Envelope::Kind::ERROR);
  e.setErrorCode(13);
  e.setPayload(
      capnp::Data::Reader(reinterpret_cast<const capnp::byte*>("shared\0"), 7));
  e.setErrorMessage("other");
  std::string body = BodyOf(shared);
  const size_t envelope_struct = Target(body, Target(body, 1) + 2);
  const uint64_t envelope_pointer = Word(body, Target(body, 1) + 2);
  const size_t data_words = (envelope_pointer >> 32) & 0xffff;
  const size_t payload_at = envelope_struct + data_words;
  const uint64_t payload_pointer = Word(body, payload_at);
  // The same list, seen from one word later: offset one less.
  const int32_t offset =
      static_cast<int32_t>(payload_pointer & 0xffffffff) >> 2;
  const uint64_t moved = (payload_pointer & ~uint64_t{0xfffffffc}) |
                         (static_cast<uint32_t>(offset - 1) << 2);
  SetWord(body, payload_at + 1, moved);
  corpus.Write("envelope_shared_blob", Whole(), Frame(body));
}

}  // namespace
}  // namespace moonpool::wire

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  moonpool::wire::Corpus corpus(argv[1]);
  moonpool::wire::WriteValidFrames(corpus);
  moonpool::wire::WriteStreams(corpus);
  moonpool::wire::WriteBroken(corpus);
  corpus.Report();
  return 0;
}
