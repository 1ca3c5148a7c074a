// The "kv" simulation workload: the key-value service (kv_service.h) on one
// simulated server host, called by several client hosts under the seed's
// faults and server restarts, then a quiet phase. See kv_workload.cc for
// its invariants and coverage points, and README.md ("Simulation").
//
// What it is not: a linearizability checker. Under faults it checks what a
// client can know for sure (every call ends in one legal outcome; no Get
// returns a value never Put); the read-back of acknowledged writes is
// checked once the faults are off.
#ifndef MOONPOOL_EXAMPLES_KV_KV_WORKLOAD_H_
#define MOONPOOL_EXAMPLES_KV_KV_WORKLOAD_H_

namespace kv {

// Registers "kv" in moonpool::chaos::WorkloadRegistry::Global(). Its flags
// (--kv_clients, --kv_ops, --kv_keys, --kv_scans) are read when each seed's
// workload is made.
void RegisterKvWorkload();

}  // namespace kv

#endif  // MOONPOOL_EXAMPLES_KV_KV_WORKLOAD_H_
