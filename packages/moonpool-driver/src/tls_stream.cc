// TlsStream: OpenSSL over memory, through a BIO of ours (TransportBio):
// OpenSSL reads ciphertext from the buffer the wrapped Stream read into, and
// what it writes is collected and goes to the wrapped Stream's Write after
// each OpenSSL call. The handler above sees plaintext.
//
// Write accounting. The Stream contract counts the caller's bytes (Write's
// return value plus OnWritten add up to every byte written), but the wrapped
// stream counts ciphertext. Each Write's ciphertext is one segment
// {ciphertext bytes not yet written, plaintext bytes it carries}; when the
// wrapped stream has taken a segment's last byte, its plaintext is counted
// as written. Handshake, alert and close_notify output are segments that
// carry no plaintext.
//
// Reentrancy. A handler may destroy the TlsStream from inside any callback;
// every place that calls out holds a Guard and returns at once when it says
// the stream is gone.
#include "moonpool/driver/tls_stream.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "moonpool/driver/timer.h"
#include "tls_errors.h"
#include "tls_random.h"

namespace moonpool::driver {
namespace {

constexpr absl::string_view kAlpn = "moonpool";
// Plaintext handed to the handler per OnRead, at most: one TLS record is
// 16 KiB, so this takes several records per call.
constexpr size_t kReadChunk = 64 * 1024;
// Ciphertext asked of the wrapped stream per read.
constexpr size_t kCipherReadChunk = 64 * 1024;

// Whether OpenSSL's reason is about a certificate (ours refused by the peer,
// or the peer's by us): those are Unauthenticated, the rest Unavailable.
bool IsCertificateReason(int reason) {
  switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

std::string AsnString(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string IpString(const ASN1_OCTET_STRING* ip) {
  const int n = ASN1_STRING_length(ip);
  char text[INET6_ADDRSTRLEN] = {};
  if ((n != 4 && n != 16) ||
      inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                sizeof(text)) == nullptr) {
    return "";
  }
  return text;
}

std::shared_ptr<const PeerIdentity> IdentityOf(X509* cert) {
  auto id = std::make_shared<PeerIdentity>();
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
                       XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    if (n > 0) id->subject.assign(data, static_cast<size_t>(n));
    BIO_free(bio);
  }
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
      switch (g->type) {
        case GEN_DNS:
          id->dns_names.push_back(AsnString(g->d.dNSName));
          break;
        case GEN_IPADD:
          id->ip_addresses.push_back(IpString(g->d.iPAddress));
          break;
        case GEN_URI:
          id->uris.push_back(AsnString(g->d.uniformResourceIdentifier));
          break;
        case GEN_EMAIL:
          id->emails.push_back(AsnString(g->d.rfc822Name));
          break;
        default:
          break;
      }
    }
    GENERAL_NAMES_free(names);
  }
  return id;
}

}  // namespace

class TlsStream::Impl final : public StreamHandler {
 public:
  Impl(Loop& loop, std::unique_ptr<Stream> transport,
       std::shared_ptr<const TlsContext> context, HandshakeCallback done)
      : loop_(loop),
        transport_(std::move(transport)),
        context_(std::move(context)),
        on_handshake_(std::move(done)),
        deterministic_(internal::LoopSuppliesTlsRandom(loop)) {}

  ~Impl() override {
    if (guard_ != nullptr) *guard_ = true;
    if (ssl_ != nullptr) SSL_free(ssl_);  // frees bio_
  }

  absl::Status Start(bool server, absl::string_view server_name);

  // ---- Stream, for TlsStream ----
  void SetHandler(StreamHandler* handler) { handler_ = handler; }
  absl::Status StartReading();
  void StopReading();
  absl::StatusOr<size_t> Write(absl::Span<const char> bytes);
  size_t queued_write_bytes() const {
    return (transport_ != nullptr ? transport_->queued_write_bytes() : 0) +
           held_.size();
  }
  void Shutdown();
  void Close();
  const Address& local_address() const { return transport_->local_address(); }
  const Address& peer_address() const { return transport_->peer_address(); }
  std::shared_ptr<const PeerIdentity> peer_identity() const {
    return identity_;
  }
  bool handshake_done() const { return state_ == State::kOpen; }
  std::string cipher() const {
    if (state_ != State::kOpen) return "";
    const char* name = SSL_get_cipher_name(ssl_);
    return name != nullptr ? name : "";
  }

  // ---- StreamHandler, for the wrapped stream ----
  absl::Span<char> ReadBuffer(size_t) override;
  void OnRead(size_t n) override;
  void OnReadEnd(absl::Status status) override;
  void OnWritten(size_t n) override;
  void OnWriteError(absl::Status status) override;

 private:
  enum class State { kHandshaking, kOpen, kFailed, kClosed };

  // Set to true through `guard_` when the Impl is destroyed; nests.
  struct Guard {
    explicit Guard(Impl* owner) : impl(owner), outer(owner->guard_) {
      owner->guard_ = &gone;
    }
    ~Guard() {
      if (!gone) {
        impl->guard_ = outer;
      } else if (outer != nullptr) {
        *outer = true;
      }
    }
    Impl* impl;
    bool* outer;
    bool gone = false;
  };

  struct Segment {
    size_t cipher_left;
    size_t plain;
  };

  void DriveHandshake();
  void HandshakeSucceeded();
  // Ends the handshake with `why`: sends any alert OpenSSL wrote, closes the
  // wrapped stream, then tells on_handshake (deferred when `defer`, for a
  // failure inside the call that started the handshake).
  void FailHandshake(absl::Status why);
  absl::Status HandshakeError(int ssl_error);
  absl::Status RecordError(int ssl_error);
  // Delivers buffered plaintext while reading is on.
  void Pump();
  void EndRead(absl::Status status);
  // How reading ends when the wrapped stream ended before close_notify.
  absl::Status TruncatedEnd() const;
  // Writes what OpenSSL put into the write BIO to the wrapped stream, as a
  // segment carrying `plain` bytes; returns the plaintext bytes whose
  // segments completed at once, or the wrapped stream's error.
  absl::StatusOr<size_t> SendCipher(size_t plain);
  size_t Account(size_t cipher_written);
  size_t cipher_in_pending() const { return in_end_ - in_pos_; }
  void ScheduleDeferred();

  // The BIO OpenSSL reads and writes ciphertext through.
  static BIO_METHOD* TransportBioMethod();
  static int BioWrite(BIO* b, const char* data, size_t len, size_t* written);
  static int BioRead(BIO* b, char* out, size_t len, size_t* read);
  static long BioCtrl(BIO* b, int cmd, long num, void* ptr);
  static int BioCreate(BIO* b);
  void RunDeferred();

  Loop& loop_;
  std::unique_ptr<Stream> transport_;
  std::shared_ptr<const TlsContext> context_;
  HandshakeCallback on_handshake_;
  const bool deterministic_;
  SSL* ssl_ = nullptr;
  BIO* bio_ = nullptr;  // ours (TransportBio), owned by ssl_
  StreamHandler* handler_ = nullptr;
  State state_ = State::kHandshaking;
  bool* guard_ = nullptr;
  bool reading_ = false;
  bool read_ended_ = false;  // OnReadEnd delivered to the handler
  bool transport_ended_ = false;
  absl::Status transport_end_;
  bool shutdown_wanted_ = false;
  bool shutdown_sent_ = false;
  absl::Status write_error_;
  std::string held_;  // plaintext written before the handshake ended
  // Ciphertext read from the wrapped stream: [in_pos_, in_end_) is what
  // OpenSSL has not taken yet. OpenSSL reads it from here through bio_ and
  // writes ciphertext into cipher_out_, which goes to the wrapped stream's
  // Write after each OpenSSL call: no memory BIO, so no copy into one and no
  // zeroing of its buffer.
  std::vector<char> cipher_in_;
  size_t in_pos_ = 0;
  size_t in_end_ = 0;
  std::string cipher_out_;
  std::deque<Segment> segments_;
  std::shared_ptr<const PeerIdentity> identity_;
  std::unique_ptr<Timer> handshake_timer_;
  std::unique_ptr<Timer> deferred_timer_;
  bool deferred_armed_ = false;
  absl::Status deferred_failure_;  // a handshake failure to report later
  bool report_failure_ = false;
};

absl::Status TlsStream::Impl::Start(bool server, absl::string_view name) {
  ERR_clear_error();
  ssl_ = SSL_new(context_->native_handle());
  if (ssl_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("TLS: SSL_new: ", internal::TakeOpenSslErrors()));
  }
  BIO_METHOD* method = TransportBioMethod();
  bio_ = method != nullptr ? BIO_new(method) : nullptr;
  if (bio_ == nullptr) {
    return absl::ResourceExhaustedError("TLS: BIO_new failed");
  }
  BIO_set_data(bio_, this);
  SSL_set_bio(ssl_, bio_, bio_);  // one reference, taken by ssl_
  // Certificates are checked against the loop's calendar, so a simulated
  // run checks them against its virtual time.
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(loop_.WallTime()));
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    // An IP literal is checked against the certificate's IP SANs (and not
    // sent as SNI, which carries names only); anything else is a DNS name.
    const std::string host(name);
    if (!host.empty() &&
        X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      ERR_clear_error();
      if (SSL_set_tlsext_host_name(ssl_, host.c_str()) != 1 ||
          SSL_set1_host(ssl_, host.c_str()) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("TLS: bad server name \"", host, "\""));
      }
    }
  }
  transport_->SetHandler(this);
  if (absl::Status s = transport_->StartReading(); !s.ok()) return s;
  handshake_timer_ = loop_.CreateTimer([this] {
    FailHandshake(absl::DeadlineExceededError(absl::StrCat(
        "TLS handshake did not finish within ",
        absl::FormatDuration(context_->config().handshake_timeout))));
  });
  handshake_timer_->Start(loop_.Now() + context_->config().handshake_timeout);
  deferred_timer_ = loop_.CreateTimer([this] { RunDeferred(); });
  if (!server) {
    // The client speaks first. A failure here is reported on a later turn:
    // nothing is called back from inside the call that started it.
    internal::TlsRandomScope random(loop_, deterministic_);
    const int r = SSL_do_handshake(ssl_);
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ) {
      deferred_failure_ = HandshakeError(e);
      report_failure_ = true;
      ScheduleDeferred();
      return absl::OkStatus();
    }
    absl::StatusOr<size_t> sent = SendCipher(0);
    if (!sent.ok()) {
      deferred_failure_ = absl::UnavailableError(
          absl::StrCat("TLS handshake: could not send the ClientHello: ",
                       sent.status().message()));
      report_failure_ = true;
      ScheduleDeferred();
    }
  }
  return absl::OkStatus();
}

// ---- Handshake ----

void TlsStream::Impl::DriveHandshake() {
  ERR_clear_error();
  int r;
  {
    internal::TlsRandomScope random(loop_, deterministic_);
    r = SSL_do_handshake(ssl_);
  }
  const int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
  if (r == 1 || e == SSL_ERROR_WANT_READ) {
    absl::StatusOr<size_t> sent = SendCipher(0);
    if (!sent.ok()) {
      FailHandshake(absl::UnavailableError(absl::StrCat(
          "TLS handshake: the connection failed: ", sent.status().message())));
      return;
    }
  }
  if (r == 1) {
    HandshakeSucceeded();
    return;
  }
  if (e == SSL_ERROR_WANT_READ) {
    if (transport_ended_) {
      FailHandshake(
          transport_end_.ok()
              ? absl::UnavailableError(
                    "TLS handshake: the peer closed the connection before "
                    "the handshake finished (is it speaking TLS?)")
              : absl::UnavailableError(
                    absl::StrCat("TLS handshake: the connection failed: ",
                                 transport_end_.message())));
    }
    return;
  }
  FailHandshake(HandshakeError(e));
}

absl::Status TlsStream::Impl::HandshakeError(int ssl_error) {
  const unsigned long first = ERR_peek_error();
  const int reason = ERR_GET_REASON(first);
  std::string why = internal::TakeOpenSslErrors();
  const long verify = SSL_get_verify_result(ssl_);
  const bool server = SSL_is_server(ssl_) == 1;
  if (verify != X509_V_OK && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    return absl::UnauthenticatedError(absl::StrCat(
        "TLS handshake: the ", server ? "client" : "server",
        "'s certificate was refused: ", X509_verify_cert_error_string(verify)));
  }
  if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    return absl::UnauthenticatedError(
        "TLS handshake: the client sent no certificate, and this server "
        "requires one");
  }
  if (IsCertificateReason(reason)) {
    return absl::UnauthenticatedError(
        absl::StrCat("TLS handshake: the peer refused this side's "
                     "certificate (alert: ",
                     why, ")"));
  }
  if (reason == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL ||
      reason == SSL_R_NO_APPLICATION_PROTOCOL) {
    return absl::UnavailableError(
        absl::StrCat("TLS handshake: no ALPN \"moonpool\" agreed (", why, ")"));
  }
  if (ssl_error == SSL_ERROR_SSL) {
    return absl::UnavailableError(
        absl::StrCat("TLS handshake failed: ", why,
                     server ? " (is the client speaking TLS?)" : ""));
  }
  return absl::UnavailableError(absl::StrCat("TLS handshake failed: ", why));
}

void TlsStream::Impl::HandshakeSucceeded() {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (absl::string_view(reinterpret_cast<const char*>(alpn), alpn_len) !=
      kAlpn) {
    FailHandshake(absl::UnavailableError(
        "TLS handshake: the peer did not agree to ALPN \"moonpool\""));
    return;
  }
  if (X509* cert = SSL_get0_peer_certificate(ssl_);
      cert != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK) {
    identity_ = IdentityOf(cert);
  }
  state_ = State::kOpen;
  handshake_timer_->Stop();
  if (!reading_) transport_->StopReading();
  Guard g(this);
  if (!held_.empty()) {
    std::string held = std::move(held_);
    held_.clear();
    absl::StatusOr<size_t> n = Write(held);
    // Bytes of earlier Write calls (which returned 0 for them): counted
    // through OnWritten, now or when their records are written.
    if (n.ok() && *n > 0 && handler_ != nullptr) handler_->OnWritten(*n);
    if (g.gone) return;
  }
  if (shutdown_wanted_) Shutdown();
  HandshakeCallback done = std::move(on_handshake_);
  if (done) done(absl::OkStatus());
  if (g.gone) return;
  // Application data may have come with the handshake's last flight.
  if (reading_) ScheduleDeferred();
}

void TlsStream::Impl::FailHandshake(absl::Status why) {
  if (state_ != State::kHandshaking) return;
  state_ = State::kFailed;
  handshake_timer_->Stop();
  // The alert OpenSSL wrote (if any) goes out before the close.
  if (transport_ != nullptr && !cipher_out_.empty() && write_error_.ok()) {
    (void)SendCipher(0);
  }
  if (transport_ != nullptr) transport_->Close();
  HandshakeCallback done = std::move(on_handshake_);
  if (done) done(std::move(why));
}

// ---- Reading ----

absl::Span<char> TlsStream::Impl::ReadBuffer(size_t) {
  if (in_pos_ == in_end_) in_pos_ = in_end_ = 0;
  if (cipher_in_.size() - in_end_ < kCipherReadChunk / 4) {
    // Keep what OpenSSL has not taken at the front; grow only when it is
    // most of the buffer (a reader that stopped reading with records
    // pending, and one more read already under way).
    if (in_pos_ > 0) {
      std::memmove(cipher_in_.data(), cipher_in_.data() + in_pos_,
                   cipher_in_pending());
    }
    in_end_ -= in_pos_;
    in_pos_ = 0;
    if (cipher_in_.size() - in_end_ < kCipherReadChunk / 4) {
      cipher_in_.resize(std::max(kCipherReadChunk, 2 * cipher_in_.size()));
    }
  }
  return absl::MakeSpan(cipher_in_).subspan(in_end_);
}

void TlsStream::Impl::OnRead(size_t n) {
  if (read_ended_) {
    // A read already under way when reading ended: nobody will read it.
    in_pos_ = in_end_ = 0;
    return;
  }
  in_end_ += n;
  if (state_ == State::kHandshaking) {
    DriveHandshake();
    return;
  }
  Pump();
}

void TlsStream::Impl::OnReadEnd(absl::Status status) {
  transport_ended_ = true;
  transport_end_ = std::move(status);
  if (state_ == State::kHandshaking) {
    Guard g(this);
    DriveHandshake();  // reads an alert that came just before the end
    if (g.gone) return;
    if (state_ == State::kHandshaking) {
      FailHandshake(absl::UnavailableError(
          "TLS handshake: the connection ended during the handshake"));
    }
    return;
  }
  Pump();
}

void TlsStream::Impl::Pump() {
  if (state_ != State::kOpen || read_ended_) return;
  Guard g(this);
  while (reading_ && handler_ != nullptr) {
    if (SSL_pending(ssl_) == 0 && cipher_in_pending() == 0) {
      if (transport_ended_) EndRead(TruncatedEnd());
      return;
    }
    absl::Span<char> buf = handler_->ReadBuffer(kReadChunk);
    if (g.gone) return;
    size_t got = 0;
    ERR_clear_error();
    int r;
    {
      internal::TlsRandomScope random(loop_, deterministic_);
      r = SSL_read_ex(ssl_, buf.data(), buf.size(), &got);
    }
    if (r == 1) {
      handler_->OnRead(got);
      if (g.gone) return;
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    // A KeyUpdate, or an alert, may have been written in reply.
    if (!cipher_out_.empty() && write_error_.ok()) {
      (void)SendCipher(0);
      if (g.gone) return;
    }
    if (e == SSL_ERROR_WANT_READ) {
      // Part of a record: the rest comes with the next read, or never.
      if (transport_ended_) EndRead(TruncatedEnd());
      return;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      EndRead(absl::OkStatus());
      return;
    }
    EndRead(RecordError(e));
    return;
  }
}

absl::Status TlsStream::Impl::RecordError(int ssl_error) {
  const int reason = ERR_GET_REASON(ERR_peek_error());
  std::string why = internal::TakeOpenSslErrors();
  if (reason == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC ||
      reason == SSL_R_DECRYPTION_FAILED) {
    return absl::DataLossError(absl::StrCat(
        "TLS: a record failed authentication (corrupted in transit): ", why));
  }
  if (IsCertificateReason(reason)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "TLS: the peer refused this side's certificate (alert: ", why, ")"));
  }
  if (ssl_error == SSL_ERROR_SSL) {
    return absl::DataLossError(absl::StrCat("TLS: bad record: ", why));
  }
  return absl::UnavailableError(absl::StrCat("TLS: ", why));
}

absl::Status TlsStream::Impl::TruncatedEnd() const {
  if (!transport_end_.ok()) return transport_end_;
  return absl::UnavailableError(
      "TLS: the peer closed the connection without close_notify "
      "(truncated)");
}

void TlsStream::Impl::EndRead(absl::Status status) {
  if (read_ended_) return;
  read_ended_ = true;
  // Nothing more will be read: what the peer still sends (after its
  // close_notify, or a bad record) must not pile up here.
  if (transport_ != nullptr && !transport_ended_) transport_->StopReading();
  in_pos_ = in_end_ = 0;
  if (handler_ != nullptr) handler_->OnReadEnd(std::move(status));
}

absl::Status TlsStream::Impl::StartReading() {
  if (state_ == State::kClosed || state_ == State::kFailed) {
    return absl::FailedPreconditionError("TLS stream is closed");
  }
  reading_ = true;
  if (state_ != State::kOpen || read_ended_) return absl::OkStatus();
  if (!transport_ended_) {
    if (absl::Status s = transport_->StartReading(); !s.ok()) return s;
  }
  // Plaintext OpenSSL holds, or an end already seen, is delivered on a
  // later turn, never inside this call.
  if (SSL_pending(ssl_) > 0 || cipher_in_pending() > 0 || transport_ended_) {
    ScheduleDeferred();
  }
  return absl::OkStatus();
}

void TlsStream::Impl::StopReading() {
  reading_ = false;
  if (state_ == State::kOpen && transport_ != nullptr) {
    transport_->StopReading();
  }
}

void TlsStream::Impl::ScheduleDeferred() {
  if (deferred_armed_) return;
  deferred_armed_ = true;
  deferred_timer_->Start(loop_.Now());
}

void TlsStream::Impl::RunDeferred() {
  deferred_armed_ = false;
  if (report_failure_) {
    report_failure_ = false;
    FailHandshake(std::move(deferred_failure_));
    return;
  }
  Pump();
}

// ---- Writing ----

absl::StatusOr<size_t> TlsStream::Impl::Write(absl::Span<const char> bytes) {
  if (state_ == State::kClosed || state_ == State::kFailed || shutdown_sent_ ||
      shutdown_wanted_) {
    return absl::FailedPreconditionError("TLS stream is shut down or closed");
  }
  if (!write_error_.ok()) return write_error_;
  if (state_ == State::kHandshaking) {
    held_.append(bytes.data(), bytes.size());
    return 0;
  }
  if (bytes.empty()) return 0;
  ERR_clear_error();
  size_t off = 0;
  {
    internal::TlsRandomScope random(loop_, deterministic_);
    while (off < bytes.size()) {
      size_t w = 0;
      if (SSL_write_ex(ssl_, bytes.data() + off, bytes.size() - off, &w) != 1) {
        return absl::InternalError(absl::StrCat("TLS: encrypting failed: ",
                                                internal::TakeOpenSslErrors()));
      }
      off += w;
    }
  }
  return SendCipher(bytes.size());
}

absl::StatusOr<size_t> TlsStream::Impl::SendCipher(size_t plain) {
  if (cipher_out_.empty()) {
    // Nothing to send: plaintext of 0 bytes only.
    return plain == 0 ? size_t{0} : Account(0);
  }
  segments_.push_back(Segment{cipher_out_.size(), plain});
  absl::StatusOr<size_t> taken = transport_->Write(cipher_out_);
  // The wrapped stream copied what it did not take; the capacity stays.
  cipher_out_.clear();
  if (!taken.ok()) {
    write_error_ = taken.status();
    return taken.status();
  }
  return Account(*taken);
}

size_t TlsStream::Impl::Account(size_t cipher_written) {
  size_t plain_done = 0;
  while (!segments_.empty()) {
    Segment& s = segments_.front();
    if (cipher_written < s.cipher_left) {
      s.cipher_left -= cipher_written;
      break;
    }
    cipher_written -= s.cipher_left;
    plain_done += s.plain;
    segments_.pop_front();
  }
  return plain_done;
}

void TlsStream::Impl::OnWritten(size_t n) {
  const size_t plain = Account(n);
  if (plain > 0 && handler_ != nullptr && state_ == State::kOpen) {
    handler_->OnWritten(plain);
  }
}

void TlsStream::Impl::OnWriteError(absl::Status status) {
  write_error_ = status;
  if (state_ == State::kHandshaking) {
    FailHandshake(absl::UnavailableError(absl::StrCat(
        "TLS handshake: the connection failed: ", status.message())));
    return;
  }
  if (handler_ != nullptr && state_ == State::kOpen) {
    handler_->OnWriteError(std::move(status));
  }
}

void TlsStream::Impl::Shutdown() {
  if (state_ == State::kHandshaking) {
    shutdown_wanted_ = true;
    return;
  }
  if (state_ != State::kOpen || shutdown_sent_) return;
  shutdown_sent_ = true;
  shutdown_wanted_ = false;
  ERR_clear_error();
  {
    internal::TlsRandomScope random(loop_, deterministic_);
    (void)SSL_shutdown(ssl_);  // writes close_notify
  }
  ERR_clear_error();
  if (write_error_.ok()) (void)SendCipher(0);
  transport_->Shutdown();
}

void TlsStream::Impl::Close() {
  if (state_ == State::kClosed) return;
  // An orderly close tells the peer so (close_notify), best effort: the
  // wrapped stream's Close drops what the kernel did not take.
  if (state_ == State::kOpen && !shutdown_sent_ && write_error_.ok() &&
      transport_ != nullptr) {
    shutdown_sent_ = true;
    ERR_clear_error();
    {
      internal::TlsRandomScope random(loop_, deterministic_);
      (void)SSL_shutdown(ssl_);
    }
    ERR_clear_error();
    (void)SendCipher(0);
  }
  state_ = State::kClosed;
  on_handshake_ = nullptr;
  handler_ = nullptr;
  if (handshake_timer_ != nullptr) handshake_timer_->Stop();
  if (deferred_timer_ != nullptr) deferred_timer_->Stop();
  if (transport_ != nullptr) transport_->Close();
}

// ---- The BIO ----

BIO_METHOD* TlsStream::Impl::TransportBioMethod() {
  // Made once and kept for the process: OpenSSL has no static BIO_METHOD
  // for a custom BIO, and the method holds no state of any stream.
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "moonpool transport");
    if (m == nullptr) return m;
    BIO_meth_set_write_ex(m, &BioWrite);
    BIO_meth_set_read_ex(m, &BioRead);
    BIO_meth_set_ctrl(m, &BioCtrl);
    BIO_meth_set_create(m, &BioCreate);
    return m;
  }();
  return method;
}

int TlsStream::Impl::BioCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int TlsStream::Impl::BioWrite(BIO* b, const char* data, size_t len,
                              size_t* written) {
  BIO_clear_retry_flags(b);
  auto* impl = static_cast<Impl*>(BIO_get_data(b));
  impl->cipher_out_.append(data, len);
  *written = len;
  return 1;
}

int TlsStream::Impl::BioRead(BIO* b, char* out, size_t len, size_t* read) {
  BIO_clear_retry_flags(b);
  auto* impl = static_cast<Impl*>(BIO_get_data(b));
  const size_t n = std::min(len, impl->cipher_in_pending());
  if (n == 0) {
    // Nothing yet is "more to come", not an end: the end of stream is the
    // wrapped stream's to say (OnReadEnd).
    BIO_set_retry_read(b);
    *read = 0;
    return 0;
  }
  std::memcpy(out, impl->cipher_in_.data() + impl->in_pos_, n);
  impl->in_pos_ += n;
  *read = n;
  return 1;
}

long TlsStream::Impl::BioCtrl(BIO* b, int cmd, long, void*) {
  auto* impl = static_cast<Impl*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(impl->cipher_in_pending());
    case BIO_CTRL_WPENDING:
      return static_cast<long>(impl->cipher_out_.size());
    default:
      return 0;
  }
}

// ---- TlsStream ----

absl::StatusOr<std::unique_ptr<TlsStream>> TlsStream::Connect(
    Loop& loop, std::unique_ptr<Stream> transport,
    std::shared_ptr<const TlsContext> context, absl::string_view server_name,
    HandshakeCallback on_handshake) {
  if (context == nullptr || context->role() != TlsRole::kClient) {
    return absl::InvalidArgumentError(
        "TlsStream::Connect needs a client TlsContext");
  }
  if (transport == nullptr) {
    return absl::InvalidArgumentError("TlsStream::Connect needs a stream");
  }
  const std::string name(server_name.empty() ? context->config().server_name
                                             : std::string(server_name));
  auto impl = std::make_unique<Impl>(
      loop, std::move(transport), std::move(context), std::move(on_handshake));
  if (absl::Status s = impl->Start(/*server=*/false, name); !s.ok()) return s;
  return std::unique_ptr<TlsStream>(new TlsStream(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<TlsStream>> TlsStream::Accept(
    Loop& loop, std::unique_ptr<Stream> transport,
    std::shared_ptr<const TlsContext> context, HandshakeCallback on_handshake) {
  if (context == nullptr || context->role() != TlsRole::kServer) {
    return absl::InvalidArgumentError(
        "TlsStream::Accept needs a server TlsContext");
  }
  if (transport == nullptr) {
    return absl::InvalidArgumentError("TlsStream::Accept needs a stream");
  }
  auto impl = std::make_unique<Impl>(
      loop, std::move(transport), std::move(context), std::move(on_handshake));
  if (absl::Status s = impl->Start(/*server=*/true, ""); !s.ok()) return s;
  return std::unique_ptr<TlsStream>(new TlsStream(std::move(impl)));
}

TlsStream::TlsStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsStream::~TlsStream() = default;

void TlsStream::SetHandler(StreamHandler* handler) {
  impl_->SetHandler(handler);
}
absl::Status TlsStream::StartReading() { return impl_->StartReading(); }
void TlsStream::StopReading() { impl_->StopReading(); }
absl::StatusOr<size_t> TlsStream::Write(absl::Span<const char> bytes) {
  return impl_->Write(bytes);
}
size_t TlsStream::queued_write_bytes() const {
  return impl_->queued_write_bytes();
}
void TlsStream::Shutdown() { impl_->Shutdown(); }
void TlsStream::Close() { impl_->Close(); }
const Address& TlsStream::local_address() const {
  return impl_->local_address();
}
const Address& TlsStream::peer_address() const { return impl_->peer_address(); }
std::shared_ptr<const PeerIdentity> TlsStream::peer_identity() const {
  return impl_->peer_identity();
}
bool TlsStream::handshake_done() const { return impl_->handshake_done(); }
std::string TlsStream::cipher() const { return impl_->cipher(); }

}  // namespace moonpool::driver
