// The TLS side of the built-in workloads (ChaosConfig::tls): one CA per
// run made from the seed (sim_certificates.h), a certificate per server
// (its simulated name and IP) and per client (CN client-<n>, URI
// spiffe://moonpool.sim/client-<n>), and their TlsContexts, servers
// requiring client certificates (mutual TLS). Plus what the workloads count
// about TLS for the coverage report.
//
// Internal: a user's workload makes its own with SimCertificateAuthority.
#ifndef MOONPOOL_CHAOS_WORKLOADS_WORKLOAD_TLS_H_
#define MOONPOOL_CHAOS_WORKLOADS_WORKLOAD_TLS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moonpool/chaos/sometimes.h"
#include "moonpool/driver/tls_context.h"

namespace moonpool::chaos::internal {

// The coverage points of a workload that may run TLS, declared in every run
// so that one never reached across a sweep shows as a hole:
//   tls.handshake_done    a TLS handshake succeeded (a server counted it);
//   tls.handshake_failed  one failed (a reset, a flipped bit, a kill or a
//                         stall past the timeout during it), as a server's
//                         or a client Peer's counter says;
//   tls.bit_flip_caught   a record that failed authentication ended a
//                         connection (DataLoss from the TLS stream), seen in
//                         the outcome of a request that was on it.
inline constexpr absl::string_view kTlsCoveragePoints[] = {
    "tls.handshake_done",
    "tls.handshake_failed",
    "tls.bit_flip_caught",
};

struct SimServerName {
  std::string dns_name;  // what clients dial ("server0.sim")
  std::string ip;        // the host's IP literal
};

struct WorkloadTls {
  std::vector<std::shared_ptr<const driver::TlsContext>> servers;
  std::vector<std::shared_ptr<const driver::TlsContext>> clients;
  // The URI SAN of client n's certificate.
  static std::string ClientUri(int n);
};

// The contexts of a TLS run of `seed`: one per server and per client, in
// order. Internal when a certificate or context cannot be made.
[[nodiscard]] absl::StatusOr<WorkloadTls> MakeWorkloadTls(
    uint64_t seed, const std::vector<SimServerName>& servers, int clients);

// Whether `outcome` (a request's, or a stream's end) says its connection
// was ended by a TLS record that failed authentication: the TLS stream's
// DataLoss, which the Peer carries in the message of the requests that
// were on that connection.
bool EndedByTlsRecordFailure(const absl::Status& outcome);

}  // namespace moonpool::chaos::internal

#endif  // MOONPOOL_CHAOS_WORKLOADS_WORKLOAD_TLS_H_
