// Writes the seed corpus of capnp_codec_fuzzer: messages of ping.capnp's Ping
// and Pong and of the wire's Frame, each behind the fuzzer's type byte
// (README.md, "capnp_codec_fuzzer"): valid ones, ones from a newer schema
// (more fields), and hostile ones (a pointer of the wrong kind, text without
// its NUL, deep nesting, a list of zero-sized structs, shared blobs). All are
// built with Cap'n Proto's builders, then serialised; none by hand.
//
// Usage: make_capnp_codec_seeds <output directory>

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>

#include "kj/array.h"
#include "moonpool/transport/ping.capnp.h"
#include "moonpool/wire/frame.capnp.h"
#include "seed_corpus.h"

namespace moonpool::transport {
namespace {

// The type byte, as capnp_codec_fuzzer.cc reads it.
enum Type : uint8_t { kPing = 0, kPong = 1, kFrame = 2 };

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "make_capnp_codec_seeds: %s\n", what.c_str());
  std::exit(1);
}

std::string Bytes(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const char> chars = words.asChars();
  return std::string(chars.begin(), chars.size());
}

// A corpus input is the type byte the fuzzer reads, then the message.
class Corpus : public fuzz::SeedCorpus {
 public:
  using SeedCorpus::SeedCorpus;
  void Write(const std::string& name, Type type, const std::string& message) {
    SeedCorpus::Write(name, std::string(1, static_cast<char>(type)) + message);
  }
  void Write(const std::string& name, Type type,
             capnp::MessageBuilder& message) {
    Write(name, type, Bytes(message));
  }
};

const kj::byte kPayload[] = {'p', 'a', 'y', 0, 1, 2, 0xff};

void WriteValid(Corpus& corpus) {
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Ping>();
    corpus.Write("ping_empty", kPing, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto p = m.initRoot<schema::Ping>();
    p.setSequence(7);
    p.setSentMicros(123456789);
    p.setPayload(kj::arrayPtr(kPayload, sizeof(kPayload)));
    corpus.Write("ping", kPing, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto p = m.initRoot<schema::Pong>();
    p.setSequence(7);
    p.initPayload(200);
    corpus.Write("pong_200_bytes", kPong, m);
  }
  {
    // Several segments, joined by far pointers.
    capnp::MallocMessageBuilder m(1, capnp::AllocationStrategy::FIXED_SIZE);
    auto p = m.initRoot<schema::Pong>();
    p.setSequence(9);
    p.setPayload(kj::arrayPtr(kPayload, sizeof(kPayload)));
    corpus.Write("pong_multi_segment", kPong, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto h = m.initRoot<wire::schema::Frame>().initHello();
    h.setMagic(0x4D4F4F4E504F4F4C);
    h.setProtocolVersion(1);
    h.setPeerName("client-1");
    h.setIncarnation(1);
    corpus.Write("frame_hello", kFrame, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<wire::schema::Frame>().initEnvelope();
    e.setCorrelationId(3);
    e.setKind(wire::schema::Envelope::Kind::ERROR);
    e.setPayload(kj::arrayPtr(kPayload, sizeof(kPayload)));
    e.setErrorMessage("not found");
    e.setErrorCode(5);
    corpus.Write("frame_envelope", kFrame, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto g = m.initRoot<wire::schema::Frame>().initGoodbye();
    g.setLastCorrelationId(41);
    g.setReason("draining");
    corpus.Write("frame_goodbye", kFrame, m);
  }
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<wire::schema::Frame>().setPing(42);
    corpus.Write("frame_ping", kFrame, m);
  }
  {
    // Version 2: a request asking for a reply stream, an item, the credit
    // granted back, a cancel.
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<wire::schema::Frame>().initEnvelope();
    e.setCorrelationId(4);
    e.setKind(wire::schema::Envelope::Kind::REQUEST);
    e.setEndpoint(0x1234);
    e.setPayload(kj::arrayPtr(kPayload, sizeof(kPayload)));
    e.setTimeoutMicros(2000000);
    e.setStreamCredit(65536);
    corpus.Write("frame_envelope_stream_request", kFrame, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<wire::schema::Frame>().initEnvelope();
    e.setCorrelationId(4);
    e.setKind(wire::schema::Envelope::Kind::STREAM_ITEM);
    e.setPayload(kj::arrayPtr(kPayload, sizeof(kPayload)));
    corpus.Write("frame_envelope_stream_item", kFrame, m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto c = m.initRoot<wire::schema::Frame>().initCredit();
    c.setCorrelationId(4);
    c.setBytes(32768);
    corpus.Write("frame_credit", kFrame, m);
  }
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<wire::schema::Frame>().setCancel(4);
    corpus.Write("frame_cancel", kFrame, m);
  }
}

// A root struct with Ping's sections (2 data words, 1 pointer) and `extra`
// more pointers: a Ping from a newer schema.
capnp::AnyStruct::Builder NewerPing(capnp::MessageBuilder& m, int extra) {
  auto root = m.getRoot<capnp::AnyPointer>().initAsAnyStruct(2, 1 + extra);
  return root;
}

void WriteHostile(Corpus& corpus) {
  {
    // A Frame read as a Ping: Ping's payload pointer is a struct pointer.
    capnp::MallocMessageBuilder m;
    m.initRoot<wire::schema::Frame>().initGoodbye().setReason("x");
    corpus.Write("ping_payload_is_a_struct", kPing, m);
  }
  {
    // A newer Ping: an unknown pointer field holding a list.
    capnp::MallocMessageBuilder m;
    auto root = NewerPing(m, 1);
    root.getPointerSection()[1].initAs<capnp::List<uint32_t>>(5);
    corpus.Write("ping_newer_schema", kPing, m);
  }
  {
    // A chain of structs under an unknown pointer, deeper than capnp's
    // nesting limit (64).
    capnp::MallocMessageBuilder m;
    auto s = NewerPing(m, 1);
    capnp::AnyPointer::Builder next = s.getPointerSection()[1];
    for (int depth = 0; depth < 70; ++depth) {
      next = next.initAsAnyStruct(0, 1).getPointerSection()[0];
    }
    corpus.Write("ping_nested_too_deep", kPing, m);
  }
  {
    // Zero-sized structs cost no bytes; capnp charges them to the traversal
    // limit as if they did.
    capnp::MallocMessageBuilder m;
    auto s = NewerPing(m, 1);
    s.getPointerSection()[1].initAsListOfAnyStruct(0, 0, 1000);
    corpus.Write("ping_zero_sized_structs", kPing, m);
  }
  {
    // The peer name's NUL replaced: text without its terminator.
    capnp::MallocMessageBuilder m;
    auto h = m.initRoot<wire::schema::Frame>().initHello();
    h.setPeerName("abcdefg");  // 7 bytes and the NUL: exactly one word
    std::string bytes = Bytes(m);
    const size_t at = bytes.find(std::string("abcdefg\0", 8));
    if (at == std::string::npos) Die("peer name not found");
    bytes[at + 7] = 'h';
    corpus.Write("frame_text_not_terminated", kFrame, bytes);
  }
  {
    // A Pong with payload, then trailing words after the message.
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Pong>().setSequence(1);
    corpus.Write("pong_trailing_words", kPong,
                 Bytes(m) + std::string(16, '\0'));
  }
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Ping>().setSequence(1);
    std::string bytes = Bytes(m);
    corpus.Write("ping_partial_word", kPing, bytes.substr(0, bytes.size() - 3));
    // The segment table claims more words than there are.
    bytes[4] = 100;
    corpus.Write("ping_segment_too_long", kPing, bytes);
  }
}

}  // namespace
}  // namespace moonpool::transport

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  moonpool::transport::Corpus corpus(argv[1]);
  moonpool::transport::WriteValid(corpus);
  moonpool::transport::WriteHostile(corpus);
  corpus.Report();
  return 0;
}
