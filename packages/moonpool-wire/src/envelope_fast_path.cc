#include "envelope_fast_path.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"
#include "little_endian.h"
#include "moonpool/envelope/correlation_id.h"
#include "moonpool/envelope/endpoint.h"
#include "moonpool/envelope/envelope_kind.h"

namespace moonpool::wire::internal {
namespace {

// Cap'n Proto pointer words (encoding spec, "Structs" and "Lists"): bits 0-1
// the kind, bits 2-31 the signed offset in words from the end of the
// pointer to the target, then the kind's sizes.
constexpr uint64_t kStructPointerKind = 0;
constexpr uint64_t kListPointerKind = 1;
constexpr uint64_t kByteElements = 2;  // list element size code: 8 bits

constexpr uint64_t StructPointer(uint64_t offset_words, uint64_t data_words,
                                 uint64_t pointers) {
  return kStructPointerKind | (offset_words << 2) | (data_words << 32) |
         (pointers << 48);
}

// REQUIRES: offset_words < 2^29 and elements < 2^29 (a canonical blob
// always follows its pointer, so the offset is never negative).
constexpr uint64_t ByteListPointer(uint64_t offset_words, uint64_t elements) {
  return kListPointerKind | (offset_words << 2) | (kByteElements << 32) |
         (elements << 35);
}

// Both structs start right after the pointer that points at them.
constexpr uint64_t kRootPointer =
    StructPointer(0, kFrameDataWords, kFramePointers);
constexpr uint64_t kEnvelopePointer =
    StructPointer(0, kEnvelopeDataWords, kEnvelopePointers);

constexpr size_t kEnvelopePointerWord =
    kFrameStartWord + kFrameDataWords + kFrameEnvelopePointer;
constexpr size_t kPayloadPointerWord =
    kEnvelopeStartWord + kEnvelopeDataWords + kPayloadPointer;
constexpr size_t kErrorMessagePointerWord =
    kEnvelopeStartWord + kEnvelopeDataWords + kErrorMessagePointer;

constexpr size_t kMaxSegmentWords = size_t{1} << 29;

constexpr size_t Words(size_t bytes) {
  return (bytes + kWordBytes - 1) / kWordBytes;
}
constexpr size_t PayloadWords(size_t bytes) { return Words(bytes); }
// An empty text is a null pointer; any other has its NUL.
constexpr size_t TextWords(size_t bytes) {
  return bytes == 0 ? 0 : Words(bytes + 1);
}

// Writes `bytes` as a byte list at word `next` of `segment`, pointed to from
// word `pointer_word`, and returns the word after it. The last word is
// cleared first, so the copy plus it cover every byte: the padding (and a
// text's NUL, which lies in the last word) is zero.
size_t PutBlob(char* segment, size_t pointer_word, size_t next,
               absl::string_view bytes, size_t elements, size_t words) {
  StoreLittleEndian<uint64_t>(
      segment + pointer_word * kWordBytes,
      ByteListPointer(next - pointer_word - 1, elements));
  char* blob = segment + next * kWordBytes;
  StoreLittleEndian<uint64_t>(blob + (words - 1) * kWordBytes, 0);
  std::memcpy(blob, bytes.data(), bytes.size());
  return next + words;
}

// Reads the byte list that pointer word `pointer_word` of the segment
// describes, when it is canonical: null (empty), or a byte list starting
// exactly at word `*next` and ending inside the `segment_words`. Advances
// `*next` past it. `text` asks for at least one element, the last a NUL,
// which the view leaves out.
bool GetBlob(const char* segment, size_t segment_words, size_t pointer_word,
             bool text, size_t* next, absl::string_view* out) {
  const uint64_t pointer =
      LoadLittleEndian<uint64_t>(segment + pointer_word * kWordBytes);
  if (pointer == 0) {
    *out = absl::string_view();
    return true;
  }
  const uint64_t elements = pointer >> 35;
  const uint64_t words = Words(elements);
  // *next <= segment_words < 2^29, so the offset fits the pointer's field;
  // the exact comparison below checks the kind, the element size and the
  // offset at once.
  if (words > segment_words - *next) return false;
  if (pointer != ByteListPointer(*next - pointer_word - 1, elements)) {
    return false;
  }
  const char* blob = segment + *next * kWordBytes;
  if (text) {
    if (elements == 0 || blob[elements - 1] != '\0') return false;
    *out = absl::string_view(blob, elements - 1);
  } else {
    *out = absl::string_view(blob, elements);
  }
  *next += words;
  return true;
}

}  // namespace

size_t CanonicalEnvelopeBodyBytes(size_t payload_bytes, size_t message_bytes) {
  return kWordBytes + (kBlobsStartWord + PayloadWords(payload_bytes) +
                       TextWords(message_bytes)) *
                          kWordBytes;
}

void WriteCanonicalEnvelope(const EnvelopeView& e, char* body) {
  const size_t payload_words = PayloadWords(e.payload.size());
  const size_t text_words = TextWords(e.error_message.size());
  const size_t segment_words = kBlobsStartWord + payload_words + text_words;
  StoreLittleEndian<uint32_t>(body, 0);  // segment count - 1
  StoreLittleEndian<uint32_t>(body + 4, static_cast<uint32_t>(segment_words));

  char* segment = body + kWordBytes;
  // The structs: zero, then the fields that are set (a field equal to its
  // default is zero on the wire, as Cap'n Proto writes it).
  std::memset(segment, 0, kBlobsStartWord * kWordBytes);
  StoreLittleEndian<uint64_t>(segment, kRootPointer);
  char* frame = segment + kFrameStartWord * kWordBytes;
  StoreLittleEndian<uint16_t>(frame + kFrameWhichByte,
                              static_cast<uint16_t>(schema::Frame::ENVELOPE));
  StoreLittleEndian<uint64_t>(segment + kEnvelopePointerWord * kWordBytes,
                              kEnvelopePointer);
  char* envelope = segment + kEnvelopeStartWord * kWordBytes;
  StoreLittleEndian<uint64_t>(envelope + kCorrelationIdByte,
                              e.correlation_id.value());
  StoreLittleEndian<uint16_t>(envelope + kKindByte,
                              static_cast<uint16_t>(e.kind));
  if (e.exactly_once) envelope[kExactlyOnceByte] |= 1 << kExactlyOnceBit;
  StoreLittleEndian<uint32_t>(envelope + kErrorCodeByte,
                              static_cast<uint32_t>(e.error_code));
  StoreLittleEndian<uint64_t>(envelope + kEndpointByte, e.endpoint.value());
  StoreLittleEndian<uint64_t>(envelope + kTimeoutMicrosByte,
                              TimeoutMicros(e.timeout));
  StoreLittleEndian<uint64_t>(envelope + kAnsweredBelowByte,
                              e.answered_below.value());
  StoreLittleEndian<uint64_t>(envelope + kStreamCreditByte, e.stream_credit);

  // The blobs, in the order the builder allocates them.
  size_t next = kBlobsStartWord;
  if (payload_words > 0) {
    next = PutBlob(segment, kPayloadPointerWord, next, e.payload,
                   e.payload.size(), payload_words);
  }
  if (text_words > 0) {
    next = PutBlob(segment, kErrorMessagePointerWord, next, e.error_message,
                   e.error_message.size() + 1, text_words);
  }
}

bool ReadCanonicalEnvelope(absl::Span<const char> body, EnvelopeView& out) {
  // The segment table: one segment, filling the body exactly. (A body is a
  // whole number of words, checked before it gets here.)
  const size_t body_words = body.size() / kWordBytes;
  if (body_words < 1 + kBlobsStartWord) return false;
  if (LoadLittleEndian<uint32_t>(body.data()) != 0) return false;
  const size_t segment_words = body_words - 1;
  // Offsets and sizes of a canonical segment fit a pointer's fields only
  // below this (a frame body of at most 4 GiB always is).
  if (segment_words >= kMaxSegmentWords) return false;
  if (LoadLittleEndian<uint32_t>(body.data() + 4) != segment_words) {
    return false;
  }
  const char* segment = body.data() + kWordBytes;

  // Root, Frame (its union on envelope) and Envelope, each where the
  // builder puts it and of exactly this schema's sizes.
  if (LoadLittleEndian<uint64_t>(segment) != kRootPointer) return false;
  const char* frame = segment + kFrameStartWord * kWordBytes;
  if (LoadLittleEndian<uint16_t>(frame + kFrameWhichByte) !=
      static_cast<uint16_t>(schema::Frame::ENVELOPE)) {
    return false;
  }
  if (LoadLittleEndian<uint64_t>(segment + kEnvelopePointerWord * kWordBytes) !=
      kEnvelopePointer) {
    return false;
  }
  const char* envelope = segment + kEnvelopeStartWord * kWordBytes;
  const uint16_t kind = LoadLittleEndian<uint16_t>(envelope + kKindByte);
  // An unknown kind is an error the general reader words.
  if (kind > static_cast<uint16_t>(kLastEnvelopeKind)) return false;

  // The blobs: payload then message, back to back, ending the segment.
  size_t next = kBlobsStartWord;
  absl::string_view payload;
  absl::string_view message;
  if (!GetBlob(segment, segment_words, kPayloadPointerWord, /*text=*/false,
               &next, &payload) ||
      !GetBlob(segment, segment_words, kErrorMessagePointerWord,
               /*text=*/true, &next, &message) ||
      next != segment_words) {
    return false;
  }

  out = EnvelopeView{
      CorrelationId(LoadLittleEndian<uint64_t>(envelope + kCorrelationIdByte)),
      static_cast<EnvelopeKind>(kind),
      Endpoint(LoadLittleEndian<uint64_t>(envelope + kEndpointByte)),
      payload,
      TimeoutFromMicros(
          LoadLittleEndian<uint64_t>(envelope + kTimeoutMicrosByte)),
      StatusCodeFromWire(LoadLittleEndian<uint32_t>(envelope + kErrorCodeByte)),
      message,
      LoadLittleEndian<uint64_t>(envelope + kStreamCreditByte),
      (envelope[kExactlyOnceByte] >> kExactlyOnceBit & 1) != 0,
      CorrelationId(LoadLittleEndian<uint64_t>(envelope + kAnsweredBelowByte))};
  return true;
}

}  // namespace moonpool::wire::internal
