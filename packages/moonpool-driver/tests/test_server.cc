#include "test_server.h"

#include <utility>
#include <variant>

#include "gtest/gtest.h"
#include "moonpool/wire/byte_buffer.h"
#include "moonpool/wire/frame_encoder.h"

namespace moonpool::driver::testing {

class TestServer::ServerConnection final : public StreamHandler {
 public:
  ServerConnection(TestServer& server, std::unique_ptr<Stream> stream)
      : server_(server),
        stream_(std::move(stream)),
        connection_(Options(), server.loop_.Now()),
        timer_(server.loop_.CreateTimer([this] { OnTimer(); })) {
    stream_->SetHandler(this);
    EXPECT_TRUE(stream_->StartReading().ok());
    ArmTimer();
  }

  void Close() {
    timer_->Stop();
    stream_->Close();
    closed_ = true;
  }

 private:
  static protocol::ConnectionOptions Options() {
    protocol::ConnectionOptions o;
    o.role = protocol::Role::kServer;
    o.peer_name = "test-server";
    o.incarnation = 99;
    return o;
  }

  absl::Span<char> ReadBuffer(size_t suggested) override {
    return connection_.PrepareReceive(suggested);
  }
  void OnRead(size_t n) override {
    if (server_.mode_ == Mode::kWrongVersion) {
      wire::FrameEncoder encoder;
      wire::ByteBuffer out;
      // A server that speaks only a version this library does not know.
      EXPECT_TRUE(
          encoder.Encode(wire::Hello{wire::kHelloMagic, 3, "v3", 5, 3}, out)
              .ok());
      (void)stream_->Write(out.Readable());
      Close();
      return;
    }
    connection_.CommitReceive(n, server_.loop_.Now());
    Pump();
  }
  void OnReadEnd(absl::Status status) override {
    connection_.OnTransportClosed(status, server_.loop_.Now());
    Pump();
  }
  void OnWritten(size_t n) override {
    connection_.ConsumeOutput(n);
    handed_off_ -= n;
  }
  void OnWriteError(absl::Status status) override {
    connection_.OnTransportClosed(status, server_.loop_.Now());
    Pump();
  }

  void OnTimer() {
    connection_.AdvanceTime(server_.loop_.Now());
    Pump();
  }

  void ArmTimer() {
    if (closed_) return;
    timer_->Start(connection_.NextWakeup());
  }

  void Pump() {
    while (!closed_) {
      std::optional<protocol::Event> e = connection_.NextEvent();
      if (!e.has_value()) break;
      if (auto* h = std::get_if<protocol::HandshakeDone>(&*e)) {
        server_.last_version_ = h->version;
      }
      if (std::holds_alternative<protocol::CancelReceived>(*e)) {
        ++server_.cancels_received_;
      }
      if (std::holds_alternative<protocol::HandshakeDone>(*e) &&
          server_.mode_ == Mode::kStall) {
        Flush();  // its Hello goes out; then nothing more
        stalled_ = true;
        stream_->StopReading();
      }
      if (auto* r = std::get_if<protocol::RequestReceived>(&*e)) {
        ++server_.requests_seen_;
        server_.payloads_.emplace_back(r->request.payload);
        if (server_.mode_ == Mode::kCloseOnRequest) {
          Close();
          return;
        }
        if (server_.mode_ == Mode::kEcho) {
          EXPECT_TRUE(
              connection_
                  .SendReply(r->request.correlation_id, r->request.payload)
                  .ok());
        }
      }
      if (std::holds_alternative<protocol::Closed>(*e)) {
        Close();
        return;
      }
    }
    if (!stalled_) Flush();
    ArmTimer();
  }

  void Flush() {
    absl::Span<const char> out = connection_.PendingOutput();
    if (out.size() <= handed_off_) return;
    absl::Span<const char> rest = out.subspan(handed_off_);
    absl::StatusOr<size_t> n = stream_->Write(rest);
    if (!n.ok()) return;
    connection_.ConsumeOutput(*n);
    handed_off_ += rest.size() - *n;
  }

  TestServer& server_;
  std::unique_ptr<Stream> stream_;
  protocol::Connection connection_;
  std::unique_ptr<Timer> timer_;
  size_t handed_off_ = 0;
  bool stalled_ = false;
  bool closed_ = false;
};

TestServer::TestServer(Loop& loop, Mode mode, Address address)
    : loop_(loop), mode_(mode) {
  absl::StatusOr<std::unique_ptr<Listener>> listener = loop_.Listen(
      address, {}, [this](absl::StatusOr<std::unique_ptr<Stream>> stream) {
        if (stream.ok()) OnAccept(std::move(*stream));
      });
  EXPECT_TRUE(listener.ok()) << listener.status();
  if (listener.ok()) {
    listener_ = std::move(*listener);
    address_ = listener_->address();
  }
}

TestServer::~TestServer() { Stop(); }

void TestServer::OnAccept(std::unique_ptr<Stream> stream) {
  ++accepted_;
  connections_.push_back(
      std::make_unique<ServerConnection>(*this, std::move(stream)));
}

void TestServer::Stop() {
  listener_.reset();
  for (auto& c : connections_) c->Close();
  connections_.clear();
}

}  // namespace moonpool::driver::testing
