// Writes the seed corpus of protocol_connection_fuzzer: client sessions a
// server-role Connection should serve, each behind the fuzzer's control
// bytes (README.md, "protocol_connection_fuzzer"), under different driver
// plans; and sessions that break one rule each. Frames come from
// FrameEncoder, never from hand-written bytes.
//
// Usage: make_protocol_connection_seeds <output directory>

#include <algorithm>
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
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/envelope_kind.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"
#include "seed_corpus.h"

namespace moonpool::wire {
namespace {

// The control bytes, as protocol_connection_fuzzer.cc reads them.
enum Option : uint8_t {
  kHelloFirst = 1,    // the fuzzer receives a valid client Hello first
  kFixChecksums = 2,  // and rewrites the stream's checksums
};
enum Limit : uint8_t {
  kFrame1MiB = 0,
  kFrame64KiB = 1,
  kFrame4KiB = 2,
  kFrame512 = 3
};
enum OutputLimit : uint8_t {
  kOut32MiB = 0,
  kOut64KiB = 1,
  kOut4KiB = 2,
  kOut1KiB = 3
};
enum Pongs : uint8_t { kPongs64 = 0, kPongs4 = 1, kPongs1 = 2, kPongs0 = 3 };
// Byte 1, bits 5-6: the server's protocol versions.
enum Versions : uint8_t { kServer1to2 = 0, kServer1only = 1, kServer2only = 2 };
enum Kind : uint8_t {
  kReceive = 0,
  kReceiveInPlace = 1,
  kAdvance = 2,  // arg: index into the fuzzer's steps (8: 1000 ms, 13: 4000)
  kEvents = 3,
  kWrite = 4,  // arg/31 of the pending output
  kAnswerLater = 5,
  kCommand = 6,  // arg & 3: 0-1 request, 2 one-way (arg & 4: cancel one of
                 // the server's requests, arg >> 3 picks which; arg & 16:
                 // exactly-once, 18 a new request, 26 a resend), 3: by
                 // arg >> 2, 0 goodbye, 1-3 a stream request (credit
                 // 1, 300, 64 KiB), 4-5 grant credit (all, half), 6 check
                 // the stream calls' refusals, 7 a resend not above the
                 // last id sent
  kDrain = 7,    // arg: the answering policy (0 reply, 1 error, 2 later,
                 // 3 abandon), advancing per event
};

constexpr uint8_t Op(Kind kind, int arg) {
  return static_cast<uint8_t>(kind | (arg << 3));
}
// Chunk size codes: 0 the rest, 1..16 bytes, 17..31 (code - 16) * 64 bytes.
constexpr int kRest = 0;

struct Control {
  uint8_t options = kHelloFirst;
  Limit limit = kFrame1MiB;
  OutputLimit output = kOut32MiB;
  Pongs pongs = kPongs64;
  Versions versions = kServer1to2;
  // The generated client Hello offers 1..2 (a version 1 Hello otherwise).
  bool v2_hello = false;
  std::vector<uint8_t> ops = {Op(kReceive, kRest), Op(kDrain, 0),
                              Op(kWrite, 31)};

  std::string Serialize() const {
    if (ops.empty() || ops.size() > 32) Die("1..32 ops");
    std::string out;
    out.push_back(static_cast<char>(options | (limit << 2) | (output << 4) |
                                    (pongs << 6)));
    out.push_back(static_cast<char>((ops.size() - 1) | (versions << 5) |
                                    (v2_hello ? 0x80 : 0)));
    for (uint8_t op : ops) out.push_back(static_cast<char>(op));
    return out;
  }

  [[noreturn]] static void Die(const std::string& what) {
    std::fprintf(stderr, "make_protocol_connection_seeds: %s\n", what.c_str());
    std::exit(1);
  }
};

Control Plan(std::initializer_list<uint8_t> ops,
             uint8_t options = kHelloFirst) {
  Control c;
  c.ops = ops;
  c.options = options;
  return c;
}

std::string Encode(std::initializer_list<FrameValue> frames) {
  FrameEncoder encoder;
  ByteBuffer out;
  for (const FrameValue& frame : frames) {
    if (absl::Status s = encoder.Encode(frame, out); !s.ok()) {
      Control::Die(s.ToString());
    }
  }
  absl::Span<const char> bytes = out.Readable();
  return std::string(bytes.data(), bytes.size());
}

EnvelopeView Request(uint64_t id, absl::string_view payload = "ping?",
                     absl::Duration timeout = absl::Milliseconds(250)) {
  return EnvelopeView{
      CorrelationId(id), EnvelopeKind::kRequest, Endpoint(7), payload,
      timeout,           absl::StatusCode::kOk,  ""};
}
// Version 2 reply streams: the client's stream request, and the client's
// answers to the server's own stream requests.
EnvelopeView StreamRequest(uint64_t id, uint64_t credit,
                           absl::string_view payload = "scan") {
  return EnvelopeView{
      CorrelationId(id),        EnvelopeKind::kRequest, Endpoint(7), payload,
      absl::Milliseconds(4000), absl::StatusCode::kOk,  "",          credit};
}
// Version 2 exactly-once: a request asking the server to keep its outcome
// (or not), and saying every id below `below` is settled (0: nothing said).
EnvelopeView OnceRequest(uint64_t id, bool exactly_once, uint64_t below,
                         absl::string_view payload = "inc") {
  EnvelopeView e = Request(id, payload, absl::Milliseconds(1000));
  e.exactly_once = exactly_once;
  e.answered_below = CorrelationId(below);
  return e;
}
EnvelopeView Item(uint64_t id, absl::string_view payload) {
  return EnvelopeView{CorrelationId(id),
                      EnvelopeKind::kStreamItem,
                      kDefaultEndpoint,
                      payload,
                      absl::ZeroDuration(),
                      absl::StatusCode::kOk,
                      ""};
}
EnvelopeView End(uint64_t id, absl::string_view payload = "") {
  return EnvelopeView{CorrelationId(id),
                      EnvelopeKind::kStreamEnd,
                      kDefaultEndpoint,
                      payload,
                      absl::ZeroDuration(),
                      absl::StatusCode::kOk,
                      ""};
}
EnvelopeView Reply(uint64_t id) {
  return EnvelopeView{CorrelationId(id),
                      EnvelopeKind::kReply,
                      kDefaultEndpoint,
                      "pong!",
                      absl::ZeroDuration(),
                      absl::StatusCode::kOk,
                      ""};
}
EnvelopeView OneWay() {
  return EnvelopeView{
      CorrelationId(),      EnvelopeKind::kOneWay, Endpoint(3), "note",
      absl::ZeroDuration(), absl::StatusCode::kOk, ""};
}
Hello ClientHello() {
  return Hello{kHelloMagic, kProtocolVersion1, "client-1", 0x5eed0001};
}
Control V2(Control c, Versions versions = kServer1to2) {
  c.v2_hello = true;
  c.versions = versions;
  return c;
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

void WriteSessions(Corpus& corpus) {
  const std::string session =
      Encode({Request(1), Ping{1}, Request(2, "two"), OneWay(), Pong{1},
              Request(3, "", absl::ZeroDuration()), Reply(99),
              Goodbye{CorrelationId(), "bye"}});
  corpus.Write("session_whole", Control(), session);
  corpus.Write("session_one_byte_at_a_time",
               Plan({Op(kReceive, 1), Op(kEvents, 0), Op(kReceiveInPlace, 1),
                     Op(kWrite, 7), Op(kDrain, 1)}),
               session);
  corpus.Write("session_answers_later",
               Plan({Op(kReceive, 17), Op(kDrain, 2), Op(kAdvance, 4),
                     Op(kAnswerLater, 0), Op(kWrite, 15), Op(kAnswerLater, 9),
                     Op(kAnswerLater, 18), Op(kWrite, 31)}),
               session);
  corpus.Write("session_abandons",
               Plan({Op(kReceive, 9), Op(kDrain, 3), Op(kWrite, 31)}), session);
  // The Hello in the stream itself, split from what follows.
  corpus.Write("session_raw_hello",
               Plan({Op(kReceiveInPlace, 5), Op(kReceive, 13), Op(kDrain, 0),
                     Op(kWrite, 31)},
                    0),
               Encode({ClientHello()}) + session);
  // The server sends requests and one-way messages of its own, and the
  // client answers one; the deadline of the other passes.
  corpus.Write("server_sends_requests",
               Plan({Op(kDrain, 0), Op(kCommand, 0), Op(kCommand, 2),
                     Op(kWrite, 31), Op(kReceive, 17), Op(kDrain, 0),
                     Op(kCommand, 1), Op(kAdvance, 10), Op(kDrain, 0)}),
               Encode({Reply(1), Ping{2}, Request(1)}));
  corpus.Write("server_says_goodbye",
               Plan({Op(kReceive, 18), Op(kEvents, 2), Op(kCommand, 3),
                     Op(kDrain, 0), Op(kWrite, 31), Op(kAnswerLater, 0)}),
               Encode({Request(1), Request(2), Request(3), Request(4)}));
  // Keepalive: silence past the interval (a ping), then past the timeout.
  corpus.Write(
      "keepalive_ping_then_timeout",
      Plan({Op(kReceive, kRest), Op(kDrain, 0), Op(kAdvance, 9), Op(kDrain, 0),
            Op(kWrite, 31), Op(kAdvance, 14), Op(kDrain, 0)}),
      Encode({Request(1)}));
  // Large payloads near small limits, and an output bound that fills up.
  Control small = Plan({Op(kReceive, 20), Op(kDrain, 0), Op(kWrite, 3)});
  small.limit = kFrame4KiB;
  small.output = kOut4KiB;
  corpus.Write("large_payloads_small_bounds", small,
               Encode({Request(1, std::string(1500, 'a')),
                       Request(2, std::string(1500, 'b')),
                       Request(3, std::string(1500, 'c')),
                       Request(4, std::string(4000, 'd'))}));
  // Pings faster than the output is written.
  Control flood = Plan({Op(kReceive, kRest), Op(kDrain, 0)});
  flood.pongs = kPongs4;
  corpus.Write("ping_flood", flood,
               Encode({Ping{1}, Ping{2}, Ping{3}, Ping{4}, Ping{5}, Ping{6}}));
  // In fix-up mode the fuzzer writes the checksums itself: zeros here.
  std::string unsummed = session;
  for (size_t pos = 0; pos < unsummed.size();) {
    size_t length = 0;
    for (int i = 3; i >= 0; --i) {
      length = (length << 8) | static_cast<uint8_t>(unsummed[pos + i]);
    }
    std::memset(unsummed.data() + pos + 4, 0, 12);
    pos += kFrameHeaderBytes + length;
  }
  corpus.Write("session_checksums_fixed_up",
               Plan({Op(kReceive, 21), Op(kDrain, 0), Op(kWrite, 31)},
                    kHelloFirst | kFixChecksums),
               unsummed);
}

// Version 2: negotiation under every server range, and cancels.
void WriteVersionTwo(Corpus& corpus) {
  // Requests left for later, so that the cancels find them unanswered; a
  // duplicate cancel, one for an unknown id, one for an answered id.
  const std::string cancels =
      Encode({Request(1), Request(2), Cancel{CorrelationId(1)},
              Cancel{CorrelationId(1)}, Cancel{CorrelationId(99)},
              Request(3, "three"), Cancel{CorrelationId(3)}});
  const Control later =
      Plan({Op(kReceive, kRest), Op(kDrain, 2), Op(kWrite, 31),
            Op(kAnswerLater, 0), Op(kAnswerLater, 1), Op(kDrain, 1)});
  corpus.Write("v2_cancels_unanswered", V2(later), cancels);
  corpus.Write("v2_cancels_abandoned",
               V2(Plan({Op(kReceive, 21), Op(kDrain, 3), Op(kEvents, 1),
                        Op(kWrite, 31)})),
               cancels);
  // The same frames on a version 1 connection: the cancels do nothing.
  corpus.Write("v1_connection_ignores_cancels", later, cancels);
  corpus.Write("v1_server_v2_client", V2(later, kServer1only), cancels);
  // A version 2 only server refuses a version 1 client.
  Control v2_only = later;
  v2_only.versions = kServer2only;
  corpus.Write("v2_only_server_v1_client", v2_only, cancels);
  corpus.Write("v2_only_server_v2_client", V2(later, kServer2only), cancels);
  // A cancel crossing the reply (answered at once).
  corpus.Write("v2_cancel_crosses_reply",
               V2(Plan({Op(kReceive, kRest), Op(kDrain, 0), Op(kWrite, 31)})),
               Encode({Request(1), Cancel{CorrelationId(1)}}));
  // The server gives up on its own request; the client's late reply is
  // dropped. arg 6: a cancel, of the first pending request.
  corpus.Write(
      "v2_server_cancels_its_request",
      V2(Plan({Op(kDrain, 0), Op(kCommand, 0), Op(kCommand, 6), Op(kWrite, 31),
               Op(kReceive, kRest), Op(kDrain, 0), Op(kCommand, 14)})),
      Encode({Reply(1), Ping{2}}));
  corpus.Write("v1_server_cancels_its_request",
               Plan({Op(kDrain, 0), Op(kCommand, 0), Op(kCommand, 6),
                     Op(kWrite, 31), Op(kReceive, kRest), Op(kDrain, 0)}),
               Encode({Reply(1)}));
  // The Hello in the stream: a version range, and a cancel before it.
  const Control raw =
      Plan({Op(kReceive, kRest), Op(kDrain, 2), Op(kWrite, 31)}, 0);
  corpus.Write("v2_raw_hello_range", raw,
               Encode({Hello{kHelloMagic, 1, "ranged", 9, 2}, Request(1),
                       Cancel{CorrelationId(1)}}));
  corpus.Write("v2_raw_hello_v2_only", raw,
               Encode({Hello{kHelloMagic, 2, "v2only", 9, 2}, Request(1)}));
  corpus.Write("cancel_before_hello", raw,
               Encode({Cancel{CorrelationId(1)}, ClientHello()}));
}

// Receive ops for exactly `n` bytes (a multiple of 8): 64-byte blocks,
// then up to 16 bytes at a time.
std::vector<uint8_t> ReceiveExactly(size_t n) {
  std::vector<uint8_t> ops;
  while (n >= 64) {
    const size_t blocks = std::min<size_t>(n / 64, 15);
    ops.push_back(Op(kReceive, static_cast<int>(16 + blocks)));
    n -= blocks * 64;
  }
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, 16);
    ops.push_back(Op(kReceive, static_cast<int>(chunk)));
    n -= chunk;
  }
  return ops;
}

// A session in steps: the client's frames, each batch received exactly (the
// connection decodes a frame only when its events are pulled, so a batch's
// frames are read by the next drain, and nothing later is), and the
// driver's ops in between. The fuzzer stops running ops once the stream is
// used up, so a script ends with a batch. Starts after the fuzzer's
// generated client Hello (kHelloFirst), received exactly too.
class Script {
 public:
  explicit Script(bool v2) : control_(v2 ? V2(Control()) : Control()) {
    control_.ops.clear();
    Receive(Encode({Hello{kHelloMagic, kProtocolVersion1, "fuzz-client",
                          0x5eed0001, v2 ? kProtocolVersion2 : 0}})
                .size());
  }
  Script& Frames(std::initializer_list<FrameValue> frames) {
    const std::string bytes = Encode(frames);
    stream_ += bytes;
    Receive(bytes.size());
    return *this;
  }
  Script& Ops(std::initializer_list<uint8_t> ops) {
    control_.ops.insert(control_.ops.end(), ops.begin(), ops.end());
    return *this;
  }
  void WriteTo(Corpus& corpus, const std::string& name) {
    corpus.Write(name, control_, stream_);
  }

 private:
  void Receive(size_t n) {
    const std::vector<uint8_t> ops = ReceiveExactly(n);
    control_.ops.insert(control_.ops.end(), ops.begin(), ops.end());
  }

  Control control_;
  std::string stream_;
};

// Command args (kCommand): the server's own stream requests and credit.
constexpr int kStreamRequest1 = 3 | (1 << 2);      // credit 1, 250 ms
constexpr int kStreamRequest300 = 3 | (2 << 2);    // credit 300, 1001 ms
constexpr int kStreamRequest64KiB = 3 | (3 << 2);  // credit 64 KiB, none
constexpr int kGrantAll = 3 | (4 << 2);
constexpr int kGrantHalf = 3 | (5 << 2);
constexpr int kStreamRefusals = 3 | (6 << 2);
constexpr int kCancelFirst = 2 | 4;  // the first of the server's pending
// Exactly-once: the server's own new request (250 ms and 4001 ms deadlines
// alternate), a resend of an id an earlier connection took, a resend whose
// id is not above the last sent (refused; a plain resend when nothing was
// sent yet).
constexpr int kExactlyOnce = 2 | 16;
constexpr int kResend = 2 | 16 | 8;
constexpr int kResendNotAbove = 3 | (7 << 2);
// kAnswerLater args for a stream request: an item of arg * 37 bytes
// (arg < 8), SendReply with a last item (24), SendStreamEnd (25).
constexpr int kLaterItem37 = 1;
constexpr int kLaterItem259 = 7;
constexpr int kLaterReply = 24;
constexpr int kLaterEnd = 25;
// kDrain args: the answering policy of the first event pulled.
constexpr int kReplyNow = 0;
constexpr int kLater = 2;

// Version 2 reply streams, both ways: the client asks the server for
// streams (the server writes items within the credit the client grants
// back), and the server asks the client (items, grants, cancels crossing
// items, ends, deadlines); and the client breaking the stream rules.
void WriteStreams(Corpus& corpus) {
  // The client's stream, credit 100: items while writable (37 + 259 bytes,
  // then refused), the client's credit, an item and the end; a credit that
  // crossed the end.
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames({StreamRequest(1, 100)})
      .Ops({Op(kDrain, kLater), Op(kAnswerLater, kLaterItem37),
            Op(kAnswerLater, kLaterItem259), Op(kAnswerLater, kLaterItem37),
            Op(kWrite, 31)})
      .Frames({Credit{CorrelationId(1), 37}, Credit{CorrelationId(1), 259}})
      .Ops({Op(kDrain, kReplyNow), Op(kAnswerLater, kLaterItem37),
            Op(kAnswerLater, kLaterEnd), Op(kWrite, 31)})
      .Frames({Credit{CorrelationId(1), 37}, Goodbye{CorrelationId(), "bye"}})
      .WriteTo(corpus, "v2_stream_server_writes_within_credit");
  // The client cancels its stream while the server writes: an item after
  // the cancel, then the end as a plain reply with a last item.
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames({StreamRequest(1, 65536, "big")})
      .Ops({Op(kDrain, kLater), Op(kAnswerLater, kLaterItem259)})
      .Frames({Cancel{CorrelationId(1)}})
      .Ops({Op(kDrain, kReplyNow), Op(kAnswerLater, kLaterItem37),
            Op(kAnswerLater, kLaterReply), Op(kWrite, 31)})
      .Frames({Ping{1}})
      .WriteTo(corpus, "v2_stream_cancelled_while_written");
  // Answered at once: a plain reply (a stream of one), an error reply.
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames({StreamRequest(1, 10), StreamRequest(2, 1)})
      .Ops({Op(kDrain, kReplyNow), Op(kWrite, 31)})
      .Frames({Credit{CorrelationId(1), 1}, Ping{1}})
      .WriteTo(corpus, "v2_stream_answered_at_once");
  // On a version 1 connection the credit is not read: a plain request (the
  // stream calls refuse it), and the client's credit frame is ignored.
  Script(false)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames({StreamRequest(1, 100), Credit{CorrelationId(1), 5}})
      .Ops({Op(kDrain, kLater), Op(kCommand, kStreamRefusals),
            Op(kAnswerLater, 0), Op(kWrite, 31)})
      .Frames({Ping{1}})
      .WriteTo(corpus, "v1_stream_request_is_unary");
  // The server's own streams (credit 300 and 64 KiB): an item that arrived
  // before the request (dropped), items within the credit, the server
  // granting half and all back, the ends, an item after the end (dropped).
  Script(true)
      .Frames({Item(1, "early")})
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kStreamRequest300),
            Op(kCommand, kStreamRequest64KiB), Op(kWrite, 31)})
      .Frames({Item(1, "a"), Item(1, std::string(150, 'b')), Item(2, "x"),
               Item(1, std::string(200, 'c'))})
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kGrantHalf),
            Op(kCommand, kGrantAll), Op(kCommand, kStreamRefusals),
            Op(kWrite, 31)})
      .Frames(
          {Item(1, "d"), Item(2, ""), End(2, "last"), End(1), Item(1, "late")})
      .Ops({Op(kDrain, kReplyNow), Op(kWrite, 31)})
      .Frames({Goodbye{CorrelationId(), "bye"}})
      .WriteTo(corpus, "v2_server_stream_items_and_grants");
  // The server cancels one stream while its items are on the way (they are
  // dropped); the deadline ends the other (credit 1, 250 ms).
  Script(true)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kStreamRequest300),
            Op(kCommand, kStreamRequest1), Op(kWrite, 31)})
      .Frames({Item(1, "one"), Item(2, "z")})
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kCancelFirst), Op(kAdvance, 6),
            Op(kDrain, kReplyNow), Op(kWrite, 31)})
      .Frames({Item(1, "two"), Item(2, "zz"), End(1), Ping{1}})
      .WriteTo(corpus, "v2_server_cancels_stream_crossing_items");
  // The client sends past its credit (1 byte: the second item overruns):
  // closed with ResourceExhausted.
  Script(true)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kStreamRequest1),
            Op(kWrite, 31)})
      .Frames({Item(1, "aa"), Item(1, "bb"), End(1)})
      .WriteTo(corpus, "v2_server_stream_credit_overrun");
  // Broken stream rules (InvalidArgument): an item for a unary request,
  // credit beyond what was sent, credit for a unary request, stream kinds
  // on a version 1 connection.
  Script(true)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, 0)})
      .Frames({Item(1, "not a stream")})
      .WriteTo(corpus, "v2_item_for_unary_request");
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames({StreamRequest(1, 100)})
      .Ops({Op(kDrain, kLater), Op(kAnswerLater, kLaterItem37)})
      .Frames({Credit{CorrelationId(1), 38}})
      .WriteTo(corpus, "v2_credit_beyond_outstanding");
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames({Request(1)})
      .Ops({Op(kDrain, kLater)})
      .Frames({Credit{CorrelationId(1), 1}})
      .WriteTo(corpus, "v2_credit_for_unary_request");
  Script(false)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kStreamRequest300)})
      .Frames({Item(1, "v1 has no streams"), End(1)})
      .WriteTo(corpus, "v1_stream_item_from_peer");
}

// Version 2 exactly-once, both ways: the client's requests with the flag
// and the settled mark (read on version 2, cleared on version 1), and the
// server's own exactly-once requests, resends with a chosen id and a
// refused one, answered, past their deadline, or lost with the connection.
void WriteExactlyOnce(Corpus& corpus) {
  const std::initializer_list<FrameValue> client = {
      OnceRequest(1, true, 0),
      OnceRequest(2, true, 1),
      OnceRequest(3, false, 3, "get"),
      OnceRequest(4, true, ~uint64_t{0}),
  };
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames(client)
      .Ops({Op(kDrain, kReplyNow), Op(kWrite, 31)})
      .Frames({Ping{1}})
      .WriteTo(corpus, "v2_exactly_once_client_requests");
  // Answered later, error, abandoned: the policies cycle over the four.
  Script(true)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames(client)
      .Ops({Op(kDrain, 1), Op(kAnswerLater, 0), Op(kWrite, 31)})
      .Frames({Goodbye{CorrelationId(), "bye"}})
      .WriteTo(corpus, "v2_exactly_once_client_requests_mixed_answers");
  // A version 1 Hello: the same bits mean nothing.
  Script(false)
      .Ops({Op(kDrain, kReplyNow)})
      .Frames(client)
      .Ops({Op(kDrain, kReplyNow), Op(kWrite, 31)})
      .Frames({Ping{1}})
      .WriteTo(corpus, "v1_exactly_once_bits_cleared");
  // A version 2 client and a version 1 server.
  corpus.Write("v1_server_exactly_once_bits_cleared",
               V2(Plan({Op(kReceive, kRest), Op(kDrain, 0), Op(kWrite, 31)}),
                  kServer1only),
               Encode(client));
  // The server's own: a new exactly-once request (id 1), a resend of id 2
  // (taken by an "earlier connection"), a resend of id 2 again (refused),
  // another new one (id 3); the client answers 1 and 2, and 3 waits past
  // its deadline and the keepalive timeout.
  Script(true)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kExactlyOnce),
            Op(kCommand, kResend), Op(kCommand, kResendNotAbove),
            Op(kCommand, kExactlyOnce), Op(kWrite, 31)})
      .Frames({Reply(1), Reply(2)})
      .Ops({Op(kDrain, kReplyNow), Op(kAdvance, 15), Op(kDrain, kReplyNow),
            Op(kWrite, 31)})
      .Frames({Ping{1}})
      .WriteTo(corpus, "v2_server_exactly_once_and_resends");
  // Lost with the connection (the peer's close at the end): maybe
  // delivered, with the flag; a plain resend before anything was sent.
  Script(true)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kResendNotAbove),
            Op(kCommand, kExactlyOnce), Op(kCommand, 0), Op(kCommand, kResend),
            Op(kWrite, 31)})
      .Frames({Reply(1)})
      .WriteTo(corpus, "v2_server_exactly_once_lost_with_connection");
  // The same on a version 1 connection: sent as plain requests.
  Script(false)
      .Ops({Op(kDrain, kReplyNow), Op(kCommand, kExactlyOnce),
            Op(kCommand, kResend), Op(kCommand, kResendNotAbove),
            Op(kWrite, 31)})
      .Frames({Reply(1)})
      .WriteTo(corpus, "v1_server_exactly_once_sent_plain");
  // Before the handshake (the Hello in the stream, received exactly):
  // refused, then sent.
  const std::string hello = Encode({Hello{kHelloMagic, 1, "ranged", 9, 2}});
  Control before = V2(Plan({Op(kCommand, kExactlyOnce), Op(kCommand, kResend)},
                           /*options=*/0));
  for (uint8_t op : ReceiveExactly(hello.size())) before.ops.push_back(op);
  before.ops.insert(
      before.ops.end(),
      {Op(kDrain, kReplyNow), Op(kCommand, kExactlyOnce), Op(kCommand, kResend),
       Op(kWrite, 31), Op(kReceive, kRest)});
  corpus.Write("exactly_once_before_hello", before,
               hello + Encode({OnceRequest(1, true, 0), Reply(1)}));
}

void WriteBroken(Corpus& corpus) {
  const Control raw =
      Plan({Op(kReceive, kRest), Op(kDrain, 0), Op(kWrite, 31)}, 0);
  corpus.Write("hello_wrong_magic", raw,
               Encode({Hello{1, kProtocolVersion1, "x", 1}, Request(1)}));
  corpus.Write("hello_wrong_version", raw,
               Encode({Hello{kHelloMagic, 3, "future", 7}, Request(1)}));
  corpus.Write("hello_incarnation_zero", raw,
               Encode({Hello{kHelloMagic, kProtocolVersion1, "zero", 0}}));
  corpus.Write("request_before_hello", raw, Encode({Request(1)}));
  corpus.Write("second_hello", Control(), Encode({ClientHello()}));
  corpus.Write("request_ids_go_back", Control(),
               Encode({Request(5), Request(4)}));
  corpus.Write("request_id_zero", Control(), Encode({Request(0)}));
  corpus.Write("requests_after_goodbye_sent",
               Plan({Op(kReceive, 17), Op(kDrain, 2), Op(kCommand, 3),
                     Op(kReceive, kRest), Op(kDrain, 0), Op(kAnswerLater, 0)}),
               Encode({Request(1), Request(2), Request(3)}));
  // The last frame's header_check (header bytes 12..15).
  std::string bad_header = Encode({Request(1), Ping{1}});
  bad_header[bad_header.size() - Encode({Ping{1}}).size() + 13] ^= 0x10;
  corpus.Write("corrupt_header_check", Control(), bad_header);
  std::string bad_body = Encode({Request(1), Ping{1}});
  bad_body[kFrameHeaderBytes + 20] ^= 0x01;
  corpus.Write("corrupt_body_checksum", Control(), bad_body);
  Control limit = Control();
  limit.limit = kFrame512;
  corpus.Write("frame_over_limit", limit,
               Encode({Request(1, std::string(600, 'x'))}));
  corpus.Write("truncated_frame", Control(),
               Encode({Request(1), Request(2)}).substr(0, 70));
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
  moonpool::wire::WriteSessions(corpus);
  moonpool::wire::WriteVersionTwo(corpus);
  moonpool::wire::WriteStreams(corpus);
  moonpool::wire::WriteExactlyOnce(corpus);
  moonpool::wire::WriteBroken(corpus);
  corpus.Report();
  return 0;
}
