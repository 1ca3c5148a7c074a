// CapnpReader<T> is a received Cap'n Proto message whose root is the struct
// T, decoded by Codec (codec.h): it owns a word-aligned copy of the bytes and
// the capnp::FlatArrayMessageReader over them, so get() stays valid for as
// long as the CapnpReader does, after the transport's receive buffer has
// moved on (and after the CapnpReader is moved: neither moves with it). The
// reader and a copy of up to 768 bytes live in a block reused through a
// bounded per-thread free list (internal/capnp_block.h), so decoding a small
// message allocates nothing in steady state; a larger copy has an array of
// its own.
//
//   absl::StatusOr<CapnpReader<schema::Pong>> pong = co_await
//       client.Request<CapnpReader<schema::Pong>>(addr, ping);
//   if (pong.ok()) Use(pong->get().getSequence());
//
// Decoding validates the whole message once, so reading fields of get() does
// not throw for a message Codec accepted, however often it is read; a
// malformed one is an InvalidArgument from Decode instead. Validation follows
// every pointer (totalSize()), then reads every field as T's schema types it
// (a pointer of the wrong kind, a Text without its NUL, a list of the wrong
// element size throw only there), each pass within capnp's default traversal
// and nesting limits. The reader kept for get() has no traversal limit: the
// limit is cumulative per reader, and a validated message read many times
// (a 1 MiB payload read 65 times) would otherwise start to throw. A message
// holding a capability pointer is refused: a payload carries no capability
// table, so reading or copying one would throw.
//
// What it is not: a builder (see CapnpMessage<T>, capnp_message.h). Movable,
// not copyable.
#ifndef MOONPOOL_TRANSPORT_CAPNP_READER_H_
#define MOONPOOL_TRANSPORT_CAPNP_READER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "capnp/dynamic.h"
#include "capnp/schema.h"
#include "capnp/serialize.h"
#include "kj/array.h"
#include "kj/exception.h"
#include "moonpool/transport/capnp_message.h"
#include "moonpool/transport/internal/capnp_block.h"

namespace moonpool::transport {

namespace internal {

// Reads `value` and everything under it the way generated accessors do:
// each pointer as the kind its field's type says, each Text up to its NUL,
// each list element of a pointer type. Throws (kj::Exception) what those
// accessors would throw. Lists of data (numbers, enums, void) are checked by
// getting them; their elements need no reading.
inline void ReadEveryField(const capnp::DynamicValue::Reader& value);

// A field held in the data section (void, bool, a number, an enum) reads as
// a value or its default whatever the bytes are: nothing to check, and
// skipping it saves building its DynamicValue.
inline bool HoldsPointerOrGroup(const capnp::StructSchema::Field& field) {
  const capnp::schema::Field::Reader proto = field.getProto();
  if (!proto.isSlot()) return true;  // a group: its fields may be pointers
  switch (proto.getSlot().getType().which()) {
    case capnp::schema::Type::TEXT:
    case capnp::schema::Type::DATA:
    case capnp::schema::Type::LIST:
    case capnp::schema::Type::STRUCT:
    case capnp::schema::Type::INTERFACE:
    case capnp::schema::Type::ANY_POINTER:
      return true;
    default:
      return false;
  }
}

// Which fields of a struct type ReadEveryField reads: derived from the
// schema once per type and thread, not field by field for every message
// (walking the schema cost more than the message it checks).
struct ReadPlan {
  capnp::StructSchema schema;
  std::vector<capnp::StructSchema::Field> fields;  // outside the union
  bool has_union = false;
  std::vector<bool> union_reads;  // by field index: a union member to read
};

inline const ReadPlan& ReadPlanFor(capnp::StructSchema schema) {
  // Few types per program: a linear search by identity. Plans are held by
  // pointer, so one stays put while a nested type's is added.
  thread_local std::vector<std::unique_ptr<ReadPlan>> plans;
  for (const std::unique_ptr<ReadPlan>& plan : plans) {
    if (plan->schema == schema) return *plan;
  }
  auto plan = std::make_unique<ReadPlan>();
  plan->schema = schema;
  for (capnp::StructSchema::Field field : schema.getNonUnionFields()) {
    if (HoldsPointerOrGroup(field)) plan->fields.push_back(field);
  }
  const capnp::StructSchema::FieldList all = schema.getFields();
  plan->union_reads.assign(all.size(), false);
  for (capnp::StructSchema::Field field : schema.getUnionFields()) {
    plan->has_union = true;
    plan->union_reads[field.getIndex()] = HoldsPointerOrGroup(field);
  }
  plans.push_back(std::move(plan));
  return *plans.back();
}

inline void ReadEveryField(const capnp::DynamicStruct::Reader& s) {
  const ReadPlan& plan = ReadPlanFor(s.getSchema());
  for (const capnp::StructSchema::Field& field : plan.fields) {
    ReadEveryField(s.get(field));
  }
  if (!plan.has_union) return;
  KJ_IF_MAYBE (field, s.which()) {
    if (plan.union_reads[field->getIndex()]) ReadEveryField(s.get(*field));
  }
}

inline void ReadEveryField(const capnp::DynamicValue::Reader& value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT:
      ReadEveryField(value.as<capnp::DynamicStruct>());
      break;
    case capnp::DynamicValue::LIST: {
      const capnp::DynamicList::Reader list = value.as<capnp::DynamicList>();
      switch (list.getSchema().whichElementType()) {
        case capnp::schema::Type::TEXT:
        case capnp::schema::Type::DATA:
        case capnp::schema::Type::LIST:
        case capnp::schema::Type::STRUCT:
          for (const capnp::DynamicValue::Reader element : list) {
            ReadEveryField(element);
          }
          break;
        default:
          break;
      }
      break;
    }
    default:
      // Text and Data were checked by getting them; the rest are values.
      break;
  }
}

}  // namespace internal

namespace internal {

inline capnp::FlatArrayMessageReader* ReaderIn(CapnpReaderBlock& block) {
  return std::launder(
      reinterpret_cast<capnp::FlatArrayMessageReader*>(block.object));
}

// Gives a block back whose object was never built.
struct CapnpEmptyBlockDeleter {
  void operator()(CapnpReaderBlock* block) const { GiveCapnpBlock(block); }
};

// Destroys the reader in a block and gives the block back.
struct CapnpReaderBlockDeleter {
  void operator()(CapnpReaderBlock* block) const {
    ReaderIn(*block)->~FlatArrayMessageReader();
    GiveCapnpBlock(block);
  }
};

}  // namespace internal

template <CapnpStruct T>
class CapnpReader {
 public:
  CapnpReader(CapnpReader&&) noexcept = default;
  CapnpReader& operator=(CapnpReader&&) noexcept = default;

  // Copies `bytes` (one flat unpacked message) and validates it.
  // InvalidArgument when it is not a whole number of words, or not a valid
  // message with a root of type T (the kj exception's text in the message).
  // `bytes` need not be aligned.
  [[nodiscard]] static absl::StatusOr<CapnpReader> Parse(
      absl::string_view bytes) {
    if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a Cap'n Proto message is a positive whole number of 8-byte "
          "words; got ",
          bytes.size(), " bytes"));
    }
    std::unique_ptr<internal::CapnpReaderBlock,
                    internal::CapnpEmptyBlockDeleter>
        block(internal::TakeCapnpBlock<internal::CapnpReaderBlock>());
    const size_t size_words = bytes.size() / sizeof(capnp::word);
    kj::Array<capnp::word> big;
    kj::ArrayPtr<capnp::word> words;
    if (size_words <= internal::kCapnpReaderWords) {
      words = kj::arrayPtr(block->words, size_words);
    } else {
      big = kj::heapArray<capnp::word>(size_words);
      words = big;
    }
    // Aligned for capnp whatever `bytes` was (capnp refuses unaligned
    // messages), and ours for as long as the CapnpReader lives.
    std::memcpy(words.begin(), bytes.data(), bytes.size());
    bool built = false;
    absl::Status status;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   // Each check on its own reader, with the default limits.
                   // Follows every pointer once, fields unknown to T too.
                   capnp::FlatArrayMessageReader all(words);
                   // No capability table comes with a payload: a capability
                   // pointer is invalid, and copying it would throw.
                   KJ_REQUIRE(all.getRoot<T>().totalSize().capCount == 0,
                              "capability pointers are not supported");
                   // Reads every field as T's accessors will.
                   capnp::FlatArrayMessageReader typed(words);
                   internal::ReadEveryField(typed.getRoot<capnp::DynamicStruct>(
                       capnp::Schema::from<T>()));
                   capnp::ReaderOptions unlimited;
                   unlimited.traversalLimitInWords = UINT64_MAX;
                   new (block->object)
                       capnp::FlatArrayMessageReader(words, unlimited);
                   built = true;
                 })) {
      // kj's description may hold NUL bytes (it quotes what it checked).
      const kj::StringPtr d = e->getDescription();
      status = absl::InvalidArgumentError(absl::StrCat(
          "malformed Cap'n Proto message: ",
          absl::CHexEscape(absl::string_view(d.begin(), d.size()))));
    }
    if (!built) return status;
    return CapnpReader(BlockPtr(block.release()), std::move(big), words);
  }

  // The root. Valid as long as this CapnpReader (or the one it moved to).
  typename T::Reader get() const {
    return internal::ReaderIn(*block_)->template getRoot<T>();
  }

  // The message bytes as received (whole words).
  absl::string_view bytes() const {
    return absl::string_view(reinterpret_cast<const char*>(words_.begin()),
                             words_.size() * sizeof(capnp::word));
  }

 private:
  using BlockPtr = std::unique_ptr<internal::CapnpReaderBlock,
                                   internal::CapnpReaderBlockDeleter>;

  CapnpReader(BlockPtr block, kj::Array<capnp::word> big,
              kj::ArrayPtr<const capnp::word> words)
      : block_(std::move(block)), big_(std::move(big)), words_(words) {}

  BlockPtr block_;  // holds the reader over words_, and words_ when small
  kj::Array<capnp::word> big_;  // words_ when larger than a block holds
  kj::ArrayPtr<const capnp::word> words_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_CAPNP_READER_H_
