// What tls_record_fuzzer and its seed generator share: the in-process PKI
// (moonpool-chaos's SimCertificateAuthority, from a fixed seed), an
// in-memory driver::Stream whose written bytes are captured and whose reads
// the harness pushes, a handler that collects what a TlsStream delivers,
// and a genuine client/server handshake between two TlsStreams over two
// such streams. Not a library: only fuzz/ includes it.
//
// Determinism: the server's TlsStream runs on a SimLoop of seed
// kServerLoopSeed and the client's on another of kClientLoopSeed, so the
// server's OpenSSL randomness (its hello random, key share) depends only on
// the bytes it is fed. A client transcript recorded by the generator is
// therefore replayed by the fuzzer against a server that answers exactly as
// it did when recorded, and the handshake completes again.
//
// Ownership: a TlsStream owns its MemoryStream; the harness keeps a raw
// pointer to it, valid while the TlsStream lives.
#ifndef MOONPOOL_FUZZ_TLS_HARNESS_H_
#define MOONPOOL_FUZZ_TLS_HARNESS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "moonpool/chaos/sim_certificates.h"
#include "moonpool/chaos/sim_loop.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/stream.h"
#include "moonpool/driver/tls_context.h"
#include "moonpool/driver/tls_stream.h"

namespace moonpool::fuzz {

inline constexpr uint64_t kPkiSeed = 17;
inline constexpr uint64_t kServerLoopSeed = 1;
inline constexpr uint64_t kClientLoopSeed = 2;
inline constexpr char kServerName[] = "server0.sim";

// The plaintext every client of the harness writes: byte i of it is
// PatternByte(i), so "what the client sent" is known even to a replay.
inline char PatternByte(size_t i) {
  return static_cast<char>((i * 131 + (i >> 8) * 7 + 11) & 0xff);
}
inline std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = PatternByte(i);
  return s;
}

[[noreturn]] inline void HarnessFail(const char* what,
                                     const absl::Status& status) {
  std::fprintf(stderr, "tls harness: %s: %s\n", what,
               status.ToString().c_str());
  std::abort();
}

// The contexts, made once per process: a mutual-TLS server (requires a
// client certificate), a server that only verifies one when offered, a
// client presenting its certificate and one presenting none.
struct Pki {
  std::shared_ptr<const driver::TlsContext> server_mutual;
  std::shared_ptr<const driver::TlsContext> server_optional;
  std::shared_ptr<const driver::TlsContext> client_with_cert;
  std::shared_ptr<const driver::TlsContext> client_without_cert;
};

inline const Pki& GetPki() {
  static const Pki* pki = [] {
    absl::StatusOr<chaos::SimCertificateAuthority> ca =
        chaos::SimCertificateAuthority::Create(kPkiSeed);
    if (!ca.ok()) HarnessFail("CA", ca.status());
    absl::StatusOr<chaos::SimCertificate> server =
        ca->Issue({.common_name = kServerName, .dns_names = {kServerName}});
    if (!server.ok()) HarnessFail("server certificate", server.status());
    absl::StatusOr<chaos::SimCertificate> client =
        ca->Issue({.common_name = "client-0",
                   .uris = {"spiffe://moonpool.sim/client-0"}});
    if (!client.ok()) HarnessFail("client certificate", client.status());
    auto make =
        [](absl::StatusOr<std::shared_ptr<const driver::TlsContext>> c) {
          if (!c.ok()) HarnessFail("context", c.status());
          return *c;
        };
    auto* p = new Pki;
    p->server_mutual =
        make(driver::TlsContext::CreateServer(ca->ServerConfig(*server, true)));
    p->server_optional = make(
        driver::TlsContext::CreateServer(ca->ServerConfig(*server, false)));
    p->client_with_cert =
        make(driver::TlsContext::CreateClient(ca->ClientConfig(&*client)));
    p->client_without_cert =
        make(driver::TlsContext::CreateClient(ca->ClientConfig(nullptr)));
    return p;
  }();
  return *pki;
}

// A Stream in memory: Write appends to `written` (all taken at once, so
// nothing is ever queued); the harness pushes reads with Deliver and the end
// of stream with End, only while reading is on and the stream is open, as a
// socket would.
class MemoryStream final : public driver::Stream {
 public:
  void SetHandler(driver::StreamHandler* handler) override {
    handler_ = handler;
  }
  [[nodiscard]] absl::Status StartReading() override {
    if (closed_) return absl::FailedPreconditionError("closed");
    reading_ = true;
    return absl::OkStatus();
  }
  void StopReading() override { reading_ = false; }
  [[nodiscard]] absl::StatusOr<size_t> Write(
      absl::Span<const char> bytes) override {
    if (closed_ || shut_down_) return absl::FailedPreconditionError("closed");
    written.append(bytes.data(), bytes.size());
    total_written += bytes.size();
    return bytes.size();
  }
  size_t queued_write_bytes() const override { return 0; }
  void Shutdown() override { shut_down_ = true; }
  void Close() override {
    closed_ = true;
    reading_ = false;
  }
  const driver::Address& local_address() const override { return address_; }
  const driver::Address& peer_address() const override { return address_; }

  bool can_read() const {
    return !closed_ && !ended_ && reading_ && handler_ != nullptr;
  }
  bool closed() const { return closed_; }
  bool shut_down() const { return shut_down_; }

  // Pushes bytes from the front of `bytes` while reading is on, in reads of
  // at most what each ReadBuffer offers; returns how many were taken.
  size_t Deliver(absl::Span<const char> bytes) {
    size_t off = 0;
    while (off < bytes.size() && can_read()) {
      absl::Span<char> buf = handler_->ReadBuffer(bytes.size() - off);
      const size_t n = std::min(buf.size(), bytes.size() - off);
      std::memcpy(buf.data(), bytes.data() + off, n);
      off += n;
      handler_->OnRead(n);
    }
    return off;
  }
  // The end of stream (OK: the peer's FIN; else a reset), once.
  void End(absl::Status status) {
    if (!can_read()) return;
    ended_ = true;
    handler_->OnReadEnd(std::move(status));
  }

  std::string written;       // taken and not yet moved on by the harness
  size_t total_written = 0;  // all bytes ever written

 private:
  driver::StreamHandler* handler_ = nullptr;
  bool reading_ = false;
  bool closed_ = false;
  bool shut_down_ = false;
  bool ended_ = false;
  driver::Address address_ = driver::Address::Loopback(4500);
};

// What a TlsStream delivered to the handler above it.
class Collector final : public driver::StreamHandler {
 public:
  explicit Collector(size_t read_buffer_bytes) : buffer_(read_buffer_bytes) {}

  absl::Span<char> ReadBuffer(size_t) override {
    ++calls;
    return absl::MakeSpan(buffer_);
  }
  void OnRead(size_t n) override {
    ++calls;
    if (end.has_value() || n == 0 || n > buffer_.size()) ++contract_breaks;
    // Checked here, once per byte: every client writes Pattern().
    for (size_t i = 0; i < std::min(n, buffer_.size()); ++i) {
      if (buffer_[i] != PatternByte(delivered.size() + i)) ++foreign_bytes;
    }
    delivered.append(buffer_.data(), std::min(n, buffer_.size()));
  }
  void OnReadEnd(absl::Status status) override {
    ++calls;
    ++ends;
    if (!end.has_value()) end = std::move(status);
  }
  void OnWritten(size_t n) override { written_reported += n; }
  void OnWriteError(absl::Status status) override {
    write_error = std::move(status);
  }

  std::string delivered;
  std::optional<absl::Status> end;
  int ends = 0;
  int calls = 0;
  // OnRead calls after the end, with n == 0, or past the buffer: each one
  // breaks the Stream contract.
  int contract_breaks = 0;
  // Delivered bytes that differ from Pattern() at their offset.
  size_t foreign_bytes = 0;
  size_t written_reported = 0;
  absl::Status write_error;

 private:
  std::vector<char> buffer_;
};

// Runs the work due now on `loop` (deferred deliveries, failures reported
// on a later turn), without moving its time.
inline void RunReady(chaos::SimLoop& loop) {
  loop.RunUntil([] { return false; }, loop.Now());
}

// A server TlsStream (reading into `collector` from the start) and, with
// `with_client`, a client one, over two MemoryStreams, each on its own
// SimLoop; HandshakeBoth moves the bytes between them until both are done.
// `mutual`: the server requires a client certificate and the client has
// one; else neither.
struct TlsPair {
  TlsPair(bool mutual, bool with_client, size_t read_buffer_bytes)
      : server_loop(chaos::SimLoopOptions{.seed = kServerLoopSeed}),
        client_loop(chaos::SimLoopOptions{.seed = kClientLoopSeed}),
        collector(read_buffer_bytes) {
    const Pki& pki = GetPki();
    auto server_raw = std::make_unique<MemoryStream>();
    auto client_raw = std::make_unique<MemoryStream>();
    server_stream = server_raw.get();
    client_stream = client_raw.get();
    absl::StatusOr<std::unique_ptr<driver::TlsStream>> s =
        driver::TlsStream::Accept(
            server_loop, std::move(server_raw),
            mutual ? pki.server_mutual : pki.server_optional,
            [this](absl::Status st) {
              ++server_handshakes;
              server_handshake = std::move(st);
            });
    if (!s.ok()) HarnessFail("Accept", s.status());
    server = std::move(*s);
    server->SetHandler(&collector);
    if (absl::Status st = server->StartReading(); !st.ok()) {
      HarnessFail("StartReading", st);
    }
    if (!with_client) return;
    absl::StatusOr<std::unique_ptr<driver::TlsStream>> c =
        driver::TlsStream::Connect(
            client_loop, std::move(client_raw),
            mutual ? pki.client_with_cert : pki.client_without_cert,
            kServerName,
            [this](absl::Status st) { client_handshake = std::move(st); });
    if (!c.ok()) HarnessFail("Connect", c.status());
    client = std::move(*c);
  }
  ~TlsPair() {
    // Streams before their loops.
    client.reset();
    server.reset();
  }

  // Moves bytes both ways until both handshakes ended; the client bytes the
  // server took are appended to `client_transcript`. Aborts unless both
  // succeeded: under fixed seeds this is the same handshake every time.
  void HandshakeBoth() {
    for (int round = 0; round < 16; ++round) {
      RunReady(client_loop);
      std::string to_server = std::move(client_stream->written);
      client_stream->written.clear();
      client_transcript += to_server;
      if (server_stream->Deliver(to_server) != to_server.size()) {
        HarnessFail("server refused handshake bytes", absl::OkStatus());
      }
      RunReady(server_loop);
      std::string to_client = std::move(server_stream->written);
      server_stream->written.clear();
      client_stream->Deliver(to_client);
      RunReady(client_loop);
      if (server_handshake.has_value() && client_handshake.has_value()) break;
    }
    if (!server_handshake.has_value() || !server_handshake->ok()) {
      HarnessFail("server handshake",
                  server_handshake.value_or(absl::UnknownError("none")));
    }
    if (!client_handshake.has_value() || !client_handshake->ok()) {
      HarnessFail("client handshake",
                  client_handshake.value_or(absl::UnknownError("none")));
    }
    // The client's Finished reached the server; nothing of the handshake
    // is left unsent.
    if (!client_stream->written.empty()) {
      HarnessFail("client bytes left after the handshake", absl::OkStatus());
    }
  }

  // The client writes Pattern(total) in `writes` calls (then close_notify
  // when `shutdown`); returns its ciphertext, taken from its stream.
  std::string ClientWrites(size_t total, int writes, bool shutdown) {
    const std::string plain = Pattern(total);
    size_t off = 0;
    for (int i = 0; i < writes; ++i) {
      const size_t n =
          i + 1 == writes ? total - off : (total / static_cast<size_t>(writes));
      absl::StatusOr<size_t> w =
          client->Write(absl::MakeConstSpan(plain.data() + off, n));
      if (!w.ok()) HarnessFail("client Write", w.status());
      off += n;
    }
    if (shutdown) client->Shutdown();
    RunReady(client_loop);
    std::string out = std::move(client_stream->written);
    client_stream->written.clear();
    return out;
  }

  chaos::SimLoop server_loop;
  chaos::SimLoop client_loop;
  MemoryStream* server_stream = nullptr;
  MemoryStream* client_stream = nullptr;
  std::unique_ptr<driver::TlsStream> server;
  std::unique_ptr<driver::TlsStream> client;
  Collector collector;  // what the server's TlsStream delivers
  std::optional<absl::Status> server_handshake;
  std::optional<absl::Status> client_handshake;
  int server_handshakes = 0;
  std::string client_transcript;
};

// The TLS records in `stream` (5-byte header: type, version, 16-bit
// length), cut at their boundaries; a partial tail is left out.
inline std::vector<std::string> SplitRecords(const std::string& stream) {
  std::vector<std::string> records;
  size_t pos = 0;
  while (stream.size() - pos >= 5) {
    const size_t len = (static_cast<uint8_t>(stream[pos + 3]) << 8) |
                       static_cast<uint8_t>(stream[pos + 4]);
    if (stream.size() - pos - 5 < len) break;
    records.push_back(stream.substr(pos, 5 + len));
    pos += 5 + len;
  }
  return records;
}

}  // namespace moonpool::fuzz

#endif  // MOONPOOL_FUZZ_TLS_HARNESS_H_
