#include "workloads/workload_tls.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "moonpool/chaos/sim_certificates.h"

namespace moonpool::chaos::internal {
namespace {

// The CA's seed is the run's with this salt: the certificates differ from
// seed to seed, and drawing them takes nothing from the SimLoop's source.
constexpr uint64_t kCaSalt = 0xc3a5c85c97cb3127ULL;

}  // namespace

std::string WorkloadTls::ClientUri(int n) {
  return absl::StrCat("spiffe://moonpool.sim/client-", n);
}

absl::StatusOr<WorkloadTls> MakeWorkloadTls(
    uint64_t seed, const std::vector<SimServerName>& servers, int clients) {
  absl::StatusOr<SimCertificateAuthority> ca =
      SimCertificateAuthority::Create(seed ^ kCaSalt);
  if (!ca.ok()) return ca.status();
  WorkloadTls tls;
  for (const SimServerName& s : servers) {
    absl::StatusOr<SimCertificate> leaf = ca->Issue({.common_name = s.dns_name,
                                                     .dns_names = {s.dns_name},
                                                     .ip_addresses = {s.ip}});
    if (!leaf.ok()) return leaf.status();
    absl::StatusOr<std::shared_ptr<const driver::TlsContext>> context =
        driver::TlsContext::CreateServer(ca->ServerConfig(*leaf));
    if (!context.ok()) {
      return absl::InternalError(absl::StrCat("sim TLS: server context for ",
                                              s.dns_name, ": ",
                                              context.status().ToString()));
    }
    tls.servers.push_back(*std::move(context));
  }
  for (int c = 0; c < clients; ++c) {
    absl::StatusOr<SimCertificate> leaf =
        ca->Issue({.common_name = absl::StrCat("client-", c),
                   .uris = {WorkloadTls::ClientUri(c)}});
    if (!leaf.ok()) return leaf.status();
    absl::StatusOr<std::shared_ptr<const driver::TlsContext>> context =
        driver::TlsContext::CreateClient(ca->ClientConfig(&*leaf));
    if (!context.ok()) {
      return absl::InternalError(absl::StrCat(
          "sim TLS: client context ", c, ": ", context.status().ToString()));
    }
    tls.clients.push_back(*std::move(context));
  }
  return tls;
}

bool EndedByTlsRecordFailure(const absl::Status& outcome) {
  // The TLS stream's DataLoss messages (driver/src/tls_stream.cc); the Peer
  // passes the connection's end on in the outcome's message, not its code.
  return absl::StrContains(outcome.message(),
                           "TLS: a record failed authentication") ||
         absl::StrContains(outcome.message(), "TLS: bad record");
}

}  // namespace moonpool::chaos::internal
