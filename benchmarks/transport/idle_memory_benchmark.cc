// idle_memory_benchmark: the server's memory per idle connection, as the
// growth of a real moonpool-echo-server process's RSS over N connections
// that each made one round trip and then went quiet.
//
//   idle_memory_benchmark --server PATH/moonpool-echo-server
//                         [--connections 1000] [--settle_ms 500]
//
// Starts the server (--listen 127.0.0.1:0, room for the connections), waits
// for its "listening on ADDRESS" line, reads its VmRSS from /proc, then opens
// the connections from this process (one ClientTransport each, so one TCP
// connection each, on one UvLoop), makes one 64-byte echo on every one of
// them (so each server connection has decoded a frame and written a reply),
// waits --settle_ms with all of them open and idle, and reads VmRSS again.
// Prints one JSON object:
//
//   {"benchmark": "idle_memory", "connections": 1000,
//    "server_rss_before_kib": ..., "server_rss_after_kib": ...,
//    "bytes_per_connection": ...}
//
// Exits 1 when a request fails or the server cannot be started.
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/request_options.h"

extern char** environ;

namespace moonpool::bench::idle_memory {
namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::ClientOptions;
using moonpool::transport::ClientTransport;
using moonpool::transport::RequestOptions;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "idle_memory_benchmark: %s\n", message.c_str());
  std::exit(1);
}

struct Flags {
  std::string server;
  int connections = 1000;
  int settle_ms = 500;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (i + 1 >= argc) Die(absl::StrCat(arg, " needs a value"));
    const absl::string_view value = argv[++i];
    if (arg == "--server") {
      flags.server = std::string(value);
    } else if (arg == "--connections") {
      if (!absl::SimpleAtoi(value, &flags.connections) ||
          flags.connections <= 0) {
        Die("--connections wants a positive integer");
      }
    } else if (arg == "--settle_ms") {
      if (!absl::SimpleAtoi(value, &flags.settle_ms) || flags.settle_ms < 0) {
        Die("--settle_ms wants a non-negative integer");
      }
    } else {
      Die(absl::StrCat("unknown flag ", arg));
    }
  }
  if (flags.server.empty()) Die("--server PATH is required");
  return flags;
}

// The server process: spawned with its stdout on a pipe, killed at the end.
class ServerProcess {
 public:
  ServerProcess(const std::string& path, int max_connections) {
    int fds[2];
    if (pipe(fds) != 0) Die("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    const std::string max = std::to_string(max_connections);
    std::vector<char*> args = {const_cast<char*>(path.c_str()),
                               const_cast<char*>("--listen"),
                               const_cast<char*>("127.0.0.1:0"),
                               const_cast<char*>("--max-connections"),
                               const_cast<char*>(max.c_str()),
                               nullptr};
    if (posix_spawn(&pid_, path.c_str(), &actions, nullptr, args.data(),
                    environ) != 0) {
      Die(absl::StrCat("cannot start ", path));
    }
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
  }
  ~ServerProcess() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    if (out_ != nullptr) fclose(out_);
  }

  // The address from the server's first line, "listening on ADDRESS".
  Address ReadAddress() {
    char line[256];
    if (std::fgets(line, sizeof(line), out_) == nullptr) {
      Die("the server exited before listening");
    }
    absl::string_view text = line;
    constexpr absl::string_view kPrefix = "listening on ";
    if (!absl::ConsumePrefix(&text, kPrefix)) {
      Die(absl::StrCat("unexpected server line: ", line));
    }
    absl::ConsumeSuffix(&text, "\n");
    absl::StatusOr<Address> address = Address::Parse(text);
    if (!address.ok()) Die(address.status().ToString());
    return *address;
  }

  // VmRSS of the server process, in KiB.
  int64_t RssKib() const {
    std::ifstream status(absl::StrCat("/proc/", pid_, "/status"));
    std::string line;
    while (std::getline(status, line)) {
      absl::string_view rest = line;
      int64_t kib = 0;
      if (absl::ConsumePrefix(&rest, "VmRSS:") &&
          absl::SimpleAtoi(
              absl::StripSuffix(absl::StripAsciiWhitespace(rest), " kB"),
              &kib)) {
        return kib;
      }
    }
    Die("no VmRSS for the server process");
  }

 private:
  pid_t pid_ = 0;
  FILE* out_ = nullptr;
};

// One echo on `client`; counts successes.
Task<void> Touch(ClientTransport& client, Address server, int& answered) {
  const std::string payload(64, 'i');
  absl::StatusOr<std::string> reply = co_await client.Request<std::string>(
      server, payload, RequestOptions::Timeout(absl::Seconds(30)));
  if (!reply.ok()) Die("request failed: " + reply.status().ToString());
  if (*reply != payload) Die("the reply differs from the request");
  ++answered;
}

// Runs `loop` for `ms` milliseconds.
void RunFor(UvLoop& loop, int ms) {
  bool done = false;
  TaskScope scope(loop, [](absl::Status s) { Die(s.ToString()); });
  scope.Spawn([](UvLoop& loop, int ms, bool& done) -> Task<void> {
    co_await driver::Sleep(loop, absl::Milliseconds(ms));
    done = true;
  }(loop, ms, done));
  loop.RunUntil([&] { return done; }, absl::InfiniteFuture());
}

void RaiseFileLimit(int needed) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t want = static_cast<rlim_t>(needed) + 64;
  if (limit.rlim_cur >= want) return;
  limit.rlim_cur = std::min(want, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < want) {
    Die(absl::StrCat("the file descriptor limit (", limit.rlim_max,
                     ") is below ", want));
  }
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  RaiseFileLimit(flags.connections);

  ServerProcess server(flags.server, flags.connections + 16);
  const Address address = server.ReadAddress();

  UvLoop loop;
  // The server's own start-up memory settles before the first sample.
  RunFor(loop, flags.settle_ms);
  const int64_t before_kib = server.RssKib();

  ClientOptions options;
  options.expected_peers = 1;
  std::vector<std::unique_ptr<ClientTransport>> clients;
  clients.reserve(static_cast<size_t>(flags.connections));
  for (int i = 0; i < flags.connections; ++i) {
    clients.push_back(std::make_unique<ClientTransport>(loop, options));
  }
  int answered = 0;
  {
    TaskScope scope(loop, [](absl::Status s) { Die(s.ToString()); });
    for (auto& client : clients) scope.Spawn(Touch(*client, address, answered));
    if (!loop.RunUntil([&] { return answered == flags.connections; },
                       loop.Now() + absl::Seconds(60))) {
      Die(absl::StrCat("only ", answered, " of ", flags.connections,
                       " connections answered"));
    }
  }
  // Idle, every connection open: keepalive pings are the only traffic.
  RunFor(loop, flags.settle_ms);
  const int64_t after_kib = server.RssKib();
  for (auto& client : clients) client->Close();
  clients.clear();

  const double per_connection = static_cast<double>(after_kib - before_kib) *
                                1024.0 / static_cast<double>(flags.connections);
  std::printf(
      "{\"benchmark\": \"idle_memory\", \"connections\": %d, "
      "\"server_rss_before_kib\": %lld, \"server_rss_after_kib\": %lld, "
      "\"bytes_per_connection\": %.0f}\n",
      flags.connections, static_cast<long long>(before_kib),
      static_cast<long long>(after_kib), per_connection);
  return 0;
}

}  // namespace
}  // namespace moonpool::bench::idle_memory

int main(int argc, char** argv) {
  return moonpool::bench::idle_memory::Main(argc, argv);
}
