#include "moonpool/transport/client_transport.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/envelope/envelope.h"

namespace moonpool::transport {

// Serve's state: the handler, one PeerRequestHandler per Peer (it knows
// which Peer to answer through), and the scope the handler tasks run in.
class ClientTransport::Server {
 public:
  Server(driver::Loop& loop, ClientRequestHandler handler)
      : handler_(std::move(handler)), scope_(loop, [](absl::Status) {}) {}

  void Attach(driver::Peer& peer) {
    auto& adapter = adapters_[peer.target()];
    if (adapter == nullptr) adapter = std::make_unique<Adapter>(*this, peer);
    peer.SetRequestHandler(adapter.get());
  }
  void Stop() { scope_.Clear(); }

 private:
  class Adapter final : public driver::PeerRequestHandler {
   public:
    Adapter(Server& server, driver::Peer& peer)
        : server_(server), peer_(peer) {}
    void OnPeerRequest(uint64_t connection, const EnvelopeView& request,
                       absl::Time deadline) override {
      server_.scope_.Spawn(server_.Answer(
          peer_, IncomingMessage{Envelope::CopyOf(request), connection,
                                 peer_.address(), deadline}));
    }
    void OnPeerOneWay(const EnvelopeView& message) override {
      server_.scope_.Spawn(server_.Answer(
          peer_, IncomingMessage{Envelope::CopyOf(message), 0, peer_.address(),
                                 absl::InfiniteFuture()}));
    }

   private:
    Server& server_;
    driver::Peer& peer_;
  };

  driver::Task<void> Answer(driver::Peer& peer, IncomingMessage message) {
    const bool request = message.is_request();
    const CorrelationId id = message.envelope.correlation_id;
    const uint64_t connection = message.connection_id;
    absl::StatusOr<std::string> reply = co_await handler_(std::move(message));
    if (!request) co_return;
    // NotFound: the connection is gone and its server has its outcome.
    (void)(reply.ok() ? peer.Reply(connection, id, *reply)
                      : peer.ReplyError(connection, id, reply.status()));
  }

  ClientRequestHandler handler_;
  // By the Peer's target: a Peer keeps it, while the address it reaches
  // may change with each lookup.
  absl::flat_hash_map<driver::HostPort, std::unique_ptr<Adapter>> adapters_;
  driver::TaskScope scope_;
};

ClientTransport::ClientTransport(driver::Loop& loop, ClientOptions options)
    : loop_(loop), options_(std::move(options)) {
  if (options_.peer.connection.incarnation == 0) {
    uint64_t incarnation = 0;
    while (incarnation == 0) incarnation = loop_.Random();
    options_.peer.connection.incarnation = incarnation;
  }
  options_.peer.ids = &ids_;
  options_.peer.buffers = &buffers_;
  peers_.reserve(options_.expected_peers);
}

ClientTransport::~ClientTransport() {
  Close();
  server_.reset();
  peers_.clear();
}

void ClientTransport::Serve(ClientRequestHandler handler) {
  if (server_ != nullptr) server_->Stop();
  server_ = std::make_unique<Server>(loop_, std::move(handler));
  for (auto& [address, peer] : peers_) server_->Attach(*peer);
}

void ClientTransport::Close() {
  if (closed_) return;
  closed_ = true;
  if (server_ != nullptr) server_->Stop();
  // In address order: walking the hashed table directly would close the
  // connections in an order that varies between runs (absl salts its
  // hashes), which breaks replay under simulation.
  std::vector<std::pair<driver::HostPort, driver::Peer*>> by_address;
  by_address.reserve(peers_.size());
  for (auto& [address, peer] : peers_)
    by_address.emplace_back(address, peer.get());
  std::sort(by_address.begin(), by_address.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [address, peer] : by_address) peer->Close();
}

const driver::Peer* ClientTransport::peer(
    const driver::HostPort& address) const {
  auto it = peers_.find(address);
  return it == peers_.end() ? nullptr : it->second.get();
}

absl::StatusOr<driver::Peer*> ClientTransport::PeerFor(
    const driver::HostPort& address) {
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client transport is closed (request to ", address.ToString(), ")"));
  }
  auto [it, inserted] = peers_.try_emplace(address);
  if (inserted) {
    it->second = std::make_unique<driver::Peer>(loop_, address, options_.peer);
    if (server_ != nullptr) server_->Attach(*it->second);
  }
  return it->second.get();
}

driver::PeerRequestOptions ClientTransport::ToPeerOptions(
    const RequestOptions& o) const {
  driver::PeerRequestOptions p;
  p.deadline = o.deadline;
  if (o.timeout != absl::InfiniteDuration()) {
    p.deadline = std::min(p.deadline, loop_.Now() + o.timeout);
  }
  p.idempotent = o.idempotent;
  p.exactly_once = o.exactly_once;
  p.endpoint = o.endpoint;
  p.wait_for_ready = o.wait_for_ready;
  return p;
}

absl::StatusOr<std::unique_ptr<internal::StreamState>>
ClientTransport::StartStream(const driver::HostPort& to, std::string payload,
                             const StreamOptions& options) {
  if (options.window_bytes == 0) {
    return absl::InvalidArgumentError(
        "a reply stream needs a positive window (StreamOptions::window_bytes)");
  }
  absl::StatusOr<driver::Peer*> peer = PeerFor(to);
  if (!peer.ok()) return peer.status();
  auto state =
      std::make_unique<internal::StreamState>(loop_, options.window_bytes);
  driver::PeerRequestOptions peer_options = ToPeerOptions(options);
  peer_options.stream_credit = options.window_bytes;
  // The callbacks borrow the state: the ReplyStream that owns it cancels the
  // call (which destroys them uncalled) before it lets the state go, unless
  // the end came first (after which the Peer holds them no more).
  internal::StreamState* s = state.get();
  absl::StatusOr<driver::PeerRequestId> id = (*peer)->RequestStream(
      std::move(payload), peer_options,
      [s](absl::string_view item) { s->OnItem(item); },
      [s](absl::StatusOr<absl::string_view> end) {
        s->OnEnd(end.ok() ? absl::OkStatus() : end.status());
      });
  if (!id.ok()) return id.status();
  s->Started(*peer, *id);
  return state;
}

absl::Status ClientTransport::SendEncoded(const driver::HostPort& address,
                                          std::string payload,
                                          Endpoint endpoint) {
  absl::StatusOr<driver::Peer*> peer = PeerFor(address);
  if (!peer.ok()) return peer.status();
  return (*peer)->SendOneWay(endpoint, std::move(payload));
}

}  // namespace moonpool::transport
