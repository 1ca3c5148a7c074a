#include "moonpool/transport/client_transport.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moonpool::transport {

ClientTransport::ClientTransport(driver::Loop& loop, ClientOptions options)
    : loop_(loop), options_(std::move(options)) {
  if (options_.peer.connection.incarnation == 0) {
    uint64_t incarnation = 0;
    while (incarnation == 0) incarnation = loop_.Random();
    options_.peer.connection.incarnation = incarnation;
  }
  peers_.reserve(options_.expected_peers);
}

ClientTransport::~ClientTransport() {
  Close();
  peers_.clear();
}

void ClientTransport::Close() {
  if (closed_) return;
  closed_ = true;
  // In address order: walking the hashed table directly would close the
  // connections in an order that varies between runs (absl salts its
  // hashes), which breaks replay under simulation.
  std::vector<std::pair<driver::Address, driver::Peer*>> by_address;
  by_address.reserve(peers_.size());
  for (auto& [address, peer] : peers_)
    by_address.emplace_back(address, peer.get());
  std::sort(by_address.begin(), by_address.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [address, peer] : by_address) peer->Close();
}

const driver::Peer* ClientTransport::peer(
    const driver::Address& address) const {
  auto it = peers_.find(address);
  return it == peers_.end() ? nullptr : it->second.get();
}

absl::StatusOr<driver::Peer*> ClientTransport::PeerFor(
    const driver::Address& address) {
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client transport is closed (request to ", address.ToString(), ")"));
  }
  auto [it, inserted] = peers_.try_emplace(address);
  if (inserted) {
    it->second = std::make_unique<driver::Peer>(loop_, address, options_.peer);
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
  p.endpoint = o.endpoint;
  return p;
}

absl::Status ClientTransport::SendEncoded(const driver::Address& address,
                                          std::string payload,
                                          uint64_t endpoint) {
  absl::StatusOr<driver::Peer*> peer = PeerFor(address);
  if (!peer.ok()) return peer.status();
  return (*peer)->SendOneWay(endpoint, std::move(payload));
}

}  // namespace moonpool::transport
