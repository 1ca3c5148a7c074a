#include "wire_test_util.h"

#include <xxhash.h>

#include <bit>
#include <cstring>
#include <random>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "moonpool/wire/byte_buffer.h"

namespace moonpool::wire::testing {
namespace {

std::string Bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

FrameSet EveryKind() {
  FrameSet set;
  set.frames.push_back(Hello{kHelloMagic, kProtocolVersion1,
                             set.Keep("client-1"), 0x1234567890abcdef});
  set.frames.push_back(Hello{kHelloMagic, kProtocolVersion1, {}, 1});
  set.frames.push_back(EnvelopeView{CorrelationId(1),
                                    EnvelopeKind::kRequest,
                                    Endpoint(7),
                                    set.Keep("ping"),
                                    absl::Milliseconds(250),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(EnvelopeView{CorrelationId(2),
                                    EnvelopeKind::kRequest,
                                    kDefaultEndpoint,
                                    {},
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(EnvelopeView{CorrelationId(1),
                                    EnvelopeKind::kReply,
                                    Endpoint(7),
                                    set.Keep(std::string("po\0ng", 5)),
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(EnvelopeView{CorrelationId(3),
                                    EnvelopeKind::kError,
                                    Endpoint(7),
                                    {},
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kNotFound,
                                    set.Keep("no such key")});
  set.frames.push_back(EnvelopeView{CorrelationId(),
                                    EnvelopeKind::kOneWay,
                                    Endpoint(9),
                                    set.Keep("note"),
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(Ping{0});
  set.frames.push_back(Ping{~uint64_t{0}});
  set.frames.push_back(Pong{42});
  set.frames.push_back(Goodbye{CorrelationId(17), set.Keep("shutting down")});
  set.frames.push_back(Goodbye{CorrelationId(), {}});
  // Version 2 (after the version 1 kinds, whose positions tests rely on).
  set.frames.push_back(Hello{kHelloMagic, kProtocolVersion1,
                             set.Keep("client-v2"), 2, kProtocolVersion2});
  set.frames.push_back(Cancel{CorrelationId(5)});
  set.frames.push_back(Cancel{CorrelationId(~uint64_t{0})});
  // Reply streams (version 2): a request with credit, an item, an empty end,
  // an error ending a stream, and credit frames.
  set.frames.push_back(EnvelopeView{CorrelationId(6),
                                    EnvelopeKind::kRequest,
                                    Endpoint(7),
                                    set.Keep("scan a..z"),
                                    absl::Seconds(2),
                                    absl::StatusCode::kOk,
                                    {},
                                    /*stream_credit=*/65536});
  set.frames.push_back(EnvelopeView{CorrelationId(6),
                                    EnvelopeKind::kStreamItem,
                                    Endpoint(7),
                                    set.Keep(std::string("it\0em", 5)),
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(EnvelopeView{CorrelationId(6),
                                    EnvelopeKind::kStreamEnd,
                                    Endpoint(7),
                                    {},
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(EnvelopeView{CorrelationId(8),
                                    EnvelopeKind::kStreamEnd,
                                    kDefaultEndpoint,
                                    set.Keep("last"),
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {}});
  set.frames.push_back(EnvelopeView{CorrelationId(9),
                                    EnvelopeKind::kRequest,
                                    kDefaultEndpoint,
                                    {},
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {},
                                    /*stream_credit=*/~uint64_t{0}});
  set.frames.push_back(Credit{CorrelationId(6), 4096});
  set.frames.push_back(Credit{CorrelationId(~uint64_t{0}), ~uint64_t{0}});
  set.frames.push_back(Credit{CorrelationId(), 0});
  // Exactly-once (version 2): the flag with a settled mark, the settled mark
  // alone on a plain request, and both at their largest.
  set.frames.push_back(EnvelopeView{CorrelationId(10),
                                    EnvelopeKind::kRequest,
                                    Endpoint(7),
                                    set.Keep("put k v"),
                                    absl::Seconds(3),
                                    absl::StatusCode::kOk,
                                    {},
                                    /*stream_credit=*/0,
                                    /*exactly_once=*/true,
                                    /*answered_below=*/CorrelationId(4)});
  set.frames.push_back(EnvelopeView{CorrelationId(11),
                                    EnvelopeKind::kRequest,
                                    kDefaultEndpoint,
                                    set.Keep("get k"),
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {},
                                    /*stream_credit=*/0,
                                    /*exactly_once=*/false,
                                    /*answered_below=*/CorrelationId(10)});
  set.frames.push_back(EnvelopeView{CorrelationId(~uint64_t{0}),
                                    EnvelopeKind::kRequest,
                                    kDefaultEndpoint,
                                    {},
                                    absl::ZeroDuration(),
                                    absl::StatusCode::kOk,
                                    {},
                                    /*stream_credit=*/0,
                                    /*exactly_once=*/true,
                                    /*answered_below=*/
                                    CorrelationId(~uint64_t{0})});
  return set;
}

FrameSet RandomFrames(uint64_t seed, int count, size_t max_payload) {
  std::mt19937_64 rng(seed);
  FrameSet set;
  for (int i = 0; i < count; ++i) {
    switch (rng() % 7) {
      case 0:
        set.frames.push_back(Hello{kHelloMagic,
                                   static_cast<uint32_t>(rng() % 3),
                                   set.Keep(Bytes(rng, rng() % 20)), rng(),
                                   static_cast<uint32_t>(rng() % 3)});
        break;
      case 1: {
        EnvelopeView e;
        e.correlation_id = CorrelationId(rng());
        e.kind = static_cast<EnvelopeKind>(
            rng() % (static_cast<int>(kLastEnvelopeKind) + 1));
        e.endpoint = Endpoint(rng() % 3);
        e.payload = set.Keep(Bytes(rng, rng() % (max_payload + 1)));
        e.timeout =
            absl::Microseconds(static_cast<int64_t>(rng() % 10'000'000));
        if (e.kind == EnvelopeKind::kError) {
          e.error_code = static_cast<absl::StatusCode>(1 + rng() % 16);
          e.error_message = set.Keep(Bytes(rng, rng() % 40));
        }
        if (e.kind == EnvelopeKind::kRequest && rng() % 2 == 0) {
          e.stream_credit = rng() >> (rng() % 64);
        }
        if (e.kind == EnvelopeKind::kRequest && rng() % 2 == 0) {
          e.exactly_once = rng() % 2 == 0;
          e.answered_below = CorrelationId(rng() >> (rng() % 64));
        }
        set.frames.push_back(e);
        break;
      }
      case 2:
        set.frames.push_back(Ping{rng()});
        break;
      case 3:
        set.frames.push_back(Pong{rng()});
        break;
      case 4:
        set.frames.push_back(
            Goodbye{CorrelationId(rng()), set.Keep(Bytes(rng, rng() % 30))});
        break;
      case 5:
        set.frames.push_back(Cancel{CorrelationId(rng())});
        break;
      default:
        set.frames.push_back(
            Credit{CorrelationId(rng()), rng() >> (rng() % 64)});
    }
  }
  return set;
}

std::string EncodeAll(absl::Span<const FrameValue> frames,
                      EncoderOptions options) {
  FrameEncoder encoder(options);
  ByteBuffer out;
  for (const FrameValue& f : frames) {
    absl::Status s = encoder.Encode(f, out);
    EXPECT_TRUE(s.ok()) << s;
  }
  return std::string(out.Readable().data(), out.size());
}

std::string EncodeOne(const FrameValue& frame, EncoderOptions options) {
  return EncodeAll(absl::MakeConstSpan(&frame, 1), options);
}

std::string FrameAround(const std::string& body) {
  static_assert(std::endian::native == std::endian::little);
  std::string frame(16, '\0');
  const uint32_t length = static_cast<uint32_t>(body.size());
  const uint64_t checksum = XXH3_64bits(body.data(), body.size());
  std::memcpy(frame.data(), &length, 4);
  std::memcpy(frame.data() + 4, &checksum, 8);
  const uint32_t check = static_cast<uint32_t>(XXH3_64bits(frame.data(), 12));
  std::memcpy(frame.data() + 12, &check, 4);
  return frame + body;
}

}  // namespace moonpool::wire::testing
