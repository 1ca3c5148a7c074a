// Request/reply round trips through two moonpool::protocol::Connections
// joined in memory (no sockets, no loop): the cost of the protocol layer
// itself, framing and checksums included. Reports round trips per second
// (items_per_second) and heap allocations per round trip.
//
// Each iteration is one batch: the client sends `in_flight` requests, the
// bytes move to the server, which answers each, and the replies move back.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <variant>

#include "absl/time/time.h"
#include "alloc_counter.h"
#include "benchmark/benchmark.h"
#include "moonpool/protocol/connection.h"

namespace moonpool::protocol {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'000'000);

void Move(Connection& from, Connection& to) {
  absl::Span<const char> out = from.PendingOutput();
  absl::Span<char> room = to.PrepareReceive(out.size());
  std::memcpy(room.data(), out.data(), out.size());
  to.CommitReceive(out.size(), kNow);
  from.ConsumeOutput(out.size());
}

void BM_Protocol_RoundTrip(benchmark::State& state) {
  const size_t payload_size = static_cast<size_t>(state.range(0));
  const int in_flight = static_cast<int>(state.range(1));
  ConnectionOptions client_options;
  client_options.role = Role::kClient;
  client_options.incarnation = 1;
  ConnectionOptions server_options;
  server_options.role = Role::kServer;
  server_options.incarnation = 2;
  Connection client(client_options, kNow);
  Connection server(server_options, kNow);
  Move(client, server);
  while (server.NextEvent()) {
  }
  Move(server, client);
  while (client.NextEvent()) {
  }
  const std::string request(payload_size, 'q');
  const std::string reply(payload_size, 'r');
  RequestOptions options;
  options.deadline = kNow + absl::Seconds(30);
  uint64_t replies = 0;

  auto batch = [&] {
    for (int i = 0; i < in_flight; ++i) {
      absl::StatusOr<CorrelationId> id =
          client.SendRequest(request, options, kNow);
      if (!id.ok()) state.SkipWithError("SendRequest failed");
    }
    Move(client, server);
    while (std::optional<Event> e = server.NextEvent()) {
      if (auto* r = std::get_if<RequestReceived>(&*e)) {
        benchmark::DoNotOptimize(r->request.payload.data());
        if (!server.SendReply(r->request.correlation_id, reply).ok()) {
          state.SkipWithError("SendReply failed");
        }
      }
    }
    Move(server, client);
    while (std::optional<Event> e = client.NextEvent()) {
      if (auto* r = std::get_if<ReplyReceived>(&*e)) {
        benchmark::DoNotOptimize(r->payload.data());
        ++replies;
      }
    }
  };
  // Warm up: buffers and tables reach their working size.
  for (int i = 0; i < 100; ++i) batch();

  replies = 0;
  bench::AllocationScope allocations;
  for (auto _ : state) batch();
  const uint64_t allocs = allocations.allocations();
  if (replies != static_cast<uint64_t>(state.iterations()) * in_flight) {
    state.SkipWithError("lost replies");
  }
  state.SetItemsProcessed(static_cast<int64_t>(replies));
  state.SetBytesProcessed(static_cast<int64_t>(replies * payload_size * 2));
  state.counters["allocs_per_round_trip"] =
      replies == 0 ? 0.0 : static_cast<double>(allocs) / replies;
}
BENCHMARK(BM_Protocol_RoundTrip)
    ->ArgNames({"payload", "in_flight"})
    ->Args({64, 1})
    ->Args({64, 256})
    ->Args({4096, 1})
    ->Args({4096, 256});

}  // namespace
}  // namespace moonpool::protocol

BENCHMARK_MAIN();
