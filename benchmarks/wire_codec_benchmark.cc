// wire_codec_benchmark: the cost of moonpool-wire's frame codec for one
// request Envelope, beside the bare Cap'n Proto baseline in the same binary.
//
//   BM_Moonpool_{Encode,Decode,RoundTrip}/<payload bytes>
//       FrameEncoder into a reused ByteBuffer (header, segment table, body
//       built in place, XXH3 checksum); FrameDecoder fed the whole frame
//       through PrepareAppend/CommitAppend, then Next() (header check,
//       checksum, full Cap'n Proto validation, EnvelopeView in place).
//       Envelopes are written and read by moonpool-wire's envelope fast
//       path (checked: the decoder counts them as such).
//   BM_Moonpool_DecodeGeneral/<payload bytes>
//       The same, for a valid body the fast path declines (one unused word
//       after the blobs): Cap'n Proto's general reader, with its checks.
//   BM_CapnpBaseline_{Encode,Decode,RoundTrip}/<payload bytes>
//       The same Envelope with nothing around it: MallocMessageBuilder +
//       messageToFlatArray, and FlatArrayMessageReader reading every field.
//       No header, no checksum, no validation walk, no buffer reuse: what a
//       plain Cap'n Proto user writes.
//
// Payloads are 64 B, 1 KiB, 64 KiB and 1 MiB. Every benchmark reports
// items_per_second (frames), bytes_per_second (payload bytes only) and
// allocs_per_frame: heap allocations (operator new, and the malloc family on
// glibc) by the benchmark thread inside the timed loop, divided by the
// iterations. Each benchmark warms its buffers up before it counts, so the
// moonpool figures are steady state. main() keeps glibc from handing freed
// blocks back to the kernel (see ConfigureMalloc), so that the baseline's
// per-frame allocations are not measured as page faults. See README.md
// beside this file.
#include <benchmark/benchmark.h>
#include <capnp/common.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "alloc_counter.h"
#include "kj/array.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/envelope.h"
#include "moonpool/envelope/envelope_kind.h"
#include "moonpool/envelope/envelope_view.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame.capnp.h"
#include "moonpool/wire/frame.h"
#include "moonpool/wire/frame_decoder.h"
#include "moonpool/wire/frame_encoder.h"
#include "moonpool/wire/frame_header.h"

namespace moonpool::wire {
namespace {

constexpr uint64_t kCorrelationId = 0x0123456789;
constexpr Endpoint kEndpoint(7);
constexpr absl::Duration kTimeout = absl::Milliseconds(2500);
// Frames run before counting starts: enough for every buffer to reach its
// working size and for malloc to settle its thresholds.
constexpr int kWarmupFrames = 16;

// Deterministic, incompressible-looking bytes (a 64-bit LCG).
std::string MakePayload(size_t size) {
  std::string payload(size, '\0');
  uint64_t state = 0x9E3779B97F4A7C15;
  for (char& c : payload) {
    state = state * 6364136223846793005 + 1442695040888963407;
    c = static_cast<char>(state >> 56);
  }
  return payload;
}

Envelope MakeRequest(size_t payload_bytes) {
  return Envelope::Request(CorrelationId(kCorrelationId), kEndpoint,
                           MakePayload(payload_bytes), kTimeout);
}

// Keeps every field of a decoded envelope alive, so that no read is elided.
void Consume(const EnvelopeView& e) {
  benchmark::DoNotOptimize(e.correlation_id);
  benchmark::DoNotOptimize(e.kind);
  benchmark::DoNotOptimize(e.endpoint);
  benchmark::DoNotOptimize(e.timeout);
  benchmark::DoNotOptimize(e.error_code);
  benchmark::DoNotOptimize(e.error_message.data());
  benchmark::DoNotOptimize(e.payload.data());
  benchmark::DoNotOptimize(e.payload.size());
}

void ReportPerFrame(benchmark::State& state, size_t payload_bytes,
                    const bench::AllocationScope& allocs) {
  // Read first: recording counters allocates (map nodes, their names).
  const auto allocations = static_cast<double>(allocs.allocations());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(payload_bytes));
  state.counters["allocs_per_frame"] =
      benchmark::Counter(allocations, benchmark::Counter::kAvgIterations);
}

void Fail(benchmark::State& state, const absl::Status& status) {
  state.SkipWithError(status.ToString().c_str());
}

absl::Status NotAnEnvelope() {
  return absl::InternalError("decoded frame is not an envelope");
}

// ---------------------------------------------------------------------------
// moonpool-wire

// One frame through the decoder the way a socket read delivers it: received
// straight into the decoder's buffer, then taken out with Next().
absl::Status FeedAndDecode(FrameDecoder& decoder,
                           absl::Span<const char> frame) {
  absl::Span<char> room = decoder.PrepareAppend(frame.size());
  std::memcpy(room.data(), frame.data(), frame.size());
  decoder.CommitAppend(frame.size());
  absl::StatusOr<const FrameValue*> next = decoder.Next();
  if (ABSL_PREDICT_FALSE(!next.ok())) return next.status();
  if (ABSL_PREDICT_FALSE(*next == nullptr)) {
    return absl::InternalError("decoder wants more bytes after a whole frame");
  }
  const EnvelopeView* envelope = std::get_if<EnvelopeView>(*next);
  if (ABSL_PREDICT_FALSE(envelope == nullptr)) {
    return NotAnEnvelope();
  }
  Consume(*envelope);
  return absl::OkStatus();
}

void BM_Moonpool_Encode(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  const Envelope request = MakeRequest(payload_bytes);
  FrameEncoder encoder;
  ByteBuffer out;
  for (int i = 0; i < kWarmupFrames; ++i) {
    out.Clear();
    if (absl::Status s = encoder.EncodeEnvelope(request, out); !s.ok()) {
      return Fail(state, s);
    }
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    out.Clear();
    absl::Status status = encoder.EncodeEnvelope(request, out);
    if (ABSL_PREDICT_FALSE(!status.ok())) return Fail(state, status);
    benchmark::DoNotOptimize(out.Readable().data());
    benchmark::ClobberMemory();
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

void BM_Moonpool_Decode(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  FrameEncoder encoder;
  ByteBuffer frame;
  if (absl::Status s =
          encoder.EncodeEnvelope(MakeRequest(payload_bytes), frame);
      !s.ok()) {
    return Fail(state, s);
  }
  const absl::Span<const char> bytes = frame.Readable();
  FrameDecoder decoder;
  for (int i = 0; i < kWarmupFrames; ++i) {
    if (absl::Status s = FeedAndDecode(decoder, bytes); !s.ok()) {
      return Fail(state, s);
    }
  }
  // Its own envelopes take moonpool-wire's fast path.
  if (decoder.frames_decoded_fast() != decoder.frames_decoded()) {
    return Fail(state, absl::InternalError("the fast path was not taken"));
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    absl::Status status = FeedAndDecode(decoder, bytes);
    if (ABSL_PREDICT_FALSE(!status.ok())) return Fail(state, status);
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

// The same envelope with one unused word after its blobs (the segment table
// counts it): valid Cap'n Proto that the envelope fast path declines, so
// every frame goes through Cap'n Proto's general reader, as a frame from
// another implementation might. Beside BM_Moonpool_Decode, the fast path's
// gain on the same bytes.
void BM_Moonpool_DecodeGeneral(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  FrameEncoder encoder;
  ByteBuffer canonical;
  if (absl::Status s =
          encoder.EncodeEnvelope(MakeRequest(payload_bytes), canonical);
      !s.ok()) {
    return Fail(state, s);
  }
  std::string body(canonical.Readable().data() + kFrameHeaderBytes,
                   canonical.Readable().size() - kFrameHeaderBytes);
  const auto segment_words = static_cast<uint32_t>(body.size() / 8);
  std::memcpy(body.data() + 4, &segment_words, 4);  // little-endian hosts
  body.append(8, '\0');
  std::string frame(kFrameHeaderBytes, '\0');
  WriteFrameHeader(body, frame.data());
  frame += body;
  FrameDecoder decoder;
  for (int i = 0; i < kWarmupFrames; ++i) {
    if (absl::Status s = FeedAndDecode(decoder, frame); !s.ok()) {
      return Fail(state, s);
    }
  }
  if (decoder.frames_decoded_fast() != 0) {
    return Fail(state, absl::InternalError("the fast path took the frame"));
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    absl::Status status = FeedAndDecode(decoder, frame);
    if (ABSL_PREDICT_FALSE(!status.ok())) return Fail(state, status);
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

void BM_Moonpool_RoundTrip(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  const Envelope request = MakeRequest(payload_bytes);
  FrameEncoder encoder;
  ByteBuffer out;
  FrameDecoder decoder;
  auto round_trip = [&]() -> absl::Status {
    out.Clear();
    if (absl::Status s = encoder.EncodeEnvelope(request, out);
        ABSL_PREDICT_FALSE(!s.ok())) {
      return s;
    }
    return FeedAndDecode(decoder, out.Readable());
  };
  for (int i = 0; i < kWarmupFrames; ++i) {
    if (absl::Status s = round_trip(); !s.ok()) return Fail(state, s);
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    absl::Status status = round_trip();
    if (ABSL_PREDICT_FALSE(!status.ok())) return Fail(state, status);
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

// ---------------------------------------------------------------------------
// Bare Cap'n Proto baseline: the same message, built and read the plain way.

absl::string_view ViewOf(capnp::Data::Reader data) {
  return absl::string_view(reinterpret_cast<const char*>(data.begin()),
                           data.size());
}

absl::string_view ViewOf(capnp::Text::Reader text) {
  return absl::string_view(text.cStr(), text.size());
}

// Sets the envelope fields as FrameEncoder does (error fields left at their
// defaults, as a request has them).
kj::Array<capnp::word> BaselineEncode(const Envelope& e) {
  capnp::MallocMessageBuilder builder;
  schema::Envelope::Builder b =
      builder.initRoot<schema::Frame>().initEnvelope();
  b.setCorrelationId(e.correlation_id.value());
  b.setKind(static_cast<schema::Envelope::Kind>(e.kind));
  b.setEndpoint(e.endpoint.value());
  b.setTimeoutMicros(
      static_cast<uint64_t>(absl::ToInt64Microseconds(e.timeout)));
  b.setErrorCode(static_cast<uint32_t>(e.error_code));
  capnp::Data::Builder payload = b.initPayload(e.payload.size());
  std::memcpy(payload.begin(), e.payload.data(), e.payload.size());
  return capnp::messageToFlatArray(builder);
}

// Reads every field into an EnvelopeView, as FrameDecoder does, but without
// its checks. False when the message is not an envelope.
bool BaselineDecode(kj::ArrayPtr<const capnp::word> words) {
  capnp::FlatArrayMessageReader reader(words);
  schema::Frame::Reader root = reader.getRoot<schema::Frame>();
  if (ABSL_PREDICT_FALSE(root.which() != schema::Frame::ENVELOPE)) {
    return false;
  }
  schema::Envelope::Reader e = root.getEnvelope();
  Consume(EnvelopeView{
      CorrelationId(e.getCorrelationId()),
      static_cast<EnvelopeKind>(e.getKind()), Endpoint(e.getEndpoint()),
      ViewOf(e.getPayload()),
      absl::Microseconds(static_cast<int64_t>(e.getTimeoutMicros())),
      static_cast<absl::StatusCode>(e.getErrorCode()),
      ViewOf(e.getErrorMessage())});
  return true;
}

void BM_CapnpBaseline_Encode(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  const Envelope request = MakeRequest(payload_bytes);
  for (int i = 0; i < kWarmupFrames; ++i) {
    benchmark::DoNotOptimize(BaselineEncode(request).begin());
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    kj::Array<capnp::word> flat = BaselineEncode(request);
    benchmark::DoNotOptimize(flat.begin());
    benchmark::ClobberMemory();
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

void BM_CapnpBaseline_Decode(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  const kj::Array<capnp::word> flat =
      BaselineEncode(MakeRequest(payload_bytes));
  for (int i = 0; i < kWarmupFrames; ++i) {
    if (!BaselineDecode(flat)) return Fail(state, NotAnEnvelope());
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    if (ABSL_PREDICT_FALSE(!BaselineDecode(flat))) {
      return Fail(state, NotAnEnvelope());
    }
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

void BM_CapnpBaseline_RoundTrip(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  const Envelope request = MakeRequest(payload_bytes);
  for (int i = 0; i < kWarmupFrames; ++i) {
    if (!BaselineDecode(BaselineEncode(request))) {
      return Fail(state, NotAnEnvelope());
    }
  }

  bench::AllocationScope allocs;
  for (auto _ : state) {
    kj::Array<capnp::word> flat = BaselineEncode(request);
    if (ABSL_PREDICT_FALSE(!BaselineDecode(flat))) {
      return Fail(state, NotAnEnvelope());
    }
  }
  ReportPerFrame(state, payload_bytes, allocs);
}

void PayloadSizes(benchmark::internal::Benchmark* b) {
  for (int64_t bytes :
       {int64_t{64}, int64_t{1} << 10, int64_t{64} << 10, int64_t{1} << 20}) {
    b->Arg(bytes);
  }
}

// Registered in pairs so that each moonpool figure sits next to its baseline.
BENCHMARK(BM_Moonpool_Encode)->Apply(PayloadSizes);
BENCHMARK(BM_CapnpBaseline_Encode)->Apply(PayloadSizes);
BENCHMARK(BM_Moonpool_Decode)->Apply(PayloadSizes);
BENCHMARK(BM_CapnpBaseline_Decode)->Apply(PayloadSizes);
BENCHMARK(BM_Moonpool_DecodeGeneral)->Apply(PayloadSizes);
BENCHMARK(BM_Moonpool_RoundTrip)->Apply(PayloadSizes);
BENCHMARK(BM_CapnpBaseline_RoundTrip)->Apply(PayloadSizes);

// A counter that silently counts nothing would report a false zero, so prove
// it sees both an operator new and (where interposed) a malloc first.
bool AllocCounterWorks() {
  const uint64_t before = bench::ThreadAllocations();
  int* p = new int(1);
  benchmark::DoNotOptimize(p);
  delete p;
  uint64_t expected = 1;
  if (bench::CountsMallocCalls()) {
    void* m = std::malloc(16);
    benchmark::DoNotOptimize(m);
    std::free(m);
    ++expected;
  }
  return bench::ThreadAllocations() - before == expected;
}

// glibc gives blocks above its mmap threshold back to the kernel on free,
// and trims the heap top, so a baseline that allocates and frees a 1 MiB
// segment per frame would mostly measure page faults (tens of thousands a
// second on a VM) rather than Cap'n Proto. Fixed thresholds keep freed memory
// in the process, as a long-running server's allocator would; moonpool's
// codec allocates nothing per frame, so this only helps the baseline.
// MOONPOOL_BENCH_MALLOC=default keeps glibc's own policy. Returns what was
// chosen, for the benchmark context.
std::string ConfigureMalloc() {
#if defined(__GLIBC__)
  const char* choice = std::getenv("MOONPOOL_BENCH_MALLOC");
  if (choice != nullptr && std::string_view(choice) == "default") {
    return "glibc defaults (MOONPOOL_BENCH_MALLOC=default)";
  }
  if (mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 &&
      mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1) {
    return "glibc, mmap_threshold=32MiB trim_threshold=256MiB (keeps freed "
           "memory; MOONPOOL_BENCH_MALLOC=default to disable)";
  }
  return "glibc defaults (mallopt failed)";
#else
  return "platform default";
#endif
}

}  // namespace
}  // namespace moonpool::wire

int main(int argc, char** argv) {
  if (!moonpool::wire::AllocCounterWorks()) {
    std::fprintf(stderr,
                 "wire_codec_benchmark: the allocation counter is not linked "
                 "in; allocs_per_frame would read 0\n");
    return 1;
  }
  benchmark::AddCustomContext("malloc", moonpool::wire::ConfigureMalloc());
  benchmark::AddCustomContext(
      "alloc_counter", moonpool::bench::CountsMallocCalls()
                           ? "operator new + malloc family, benchmark thread"
                           : "operator new only, benchmark thread");
  benchmark::AddCustomContext(
      "capnp_version",
      absl::StrCat(CAPNP_VERSION_MAJOR, ".", CAPNP_VERSION_MINOR, ".",
                   CAPNP_VERSION_MICRO));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
