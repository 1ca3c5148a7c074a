// moonpool-kv: calls the key-value service (moonpool-kv-server) once.
//
//   moonpool-kv --server HOST:PORT get KEY
//   moonpool-kv --server HOST:PORT put KEY VALUE
//   moonpool-kv --server HOST:PORT delete KEY
//   moonpool-kv --server HOST:PORT scan START [END] [--limit N]
//               [--window-bytes N]
//   [--timeout SECONDS] [--fail-fast]
//   [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]
//   [--tls] [--tls-handshake-timeout DURATION]
//
// The --tls* flags (transport/program_tls.h) call over TLS 1.3, verifying
// the server against --tls-ca; --tls-cert and --tls-key are the client
// certificate a server with mutual TLS or --authorize-subject asks for.
//
// HOST is a name or an IP literal. It prints the result on stdout: a Get's
// value as its bytes, or "(not found)"; "OK" for a Put; "deleted", or
// "(not found)" when there was nothing to delete; for a scan, one
// "KEY=VALUE" line per key in [START, END) (END omitted or empty: to the
// last key) as the items arrive, then "(end: N keys)" ("1 key"). Exit
// status: 0 when the call succeeded, whatever it found (a missing key is an
// answer, not an error); 1 when the call failed, with its Status on stderr
// (UNAVAILABLE, DEADLINE_EXCEEDED, ...; a scan that fails midway has
// printed the items before it, and no end line); 2 for a usage error (as
// the other moonpool programs; absl's own flag errors, and --help, exit 1).
// --timeout bounds a scan as a whole.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kv.capnp.h"
#include "kv_methods.h"
#include "moonpool/driver/host_port.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/program_flags.h"
#include "moonpool/transport/program_tls.h"

ABSL_FLAG(std::string, server, "", "HOST:PORT of the server (required)");
ABSL_FLAG(double, timeout, 5, "seconds the call may take");
ABSL_FLAG(bool, fail_fast, false,
          "fail with UNAVAILABLE at once while the server is unreachable "
          "(RequestOptions::wait_for_ready = false) instead of retrying "
          "until the timeout");
ABSL_FLAG(uint64_t, limit, 0, "scan: at most this many keys (0: no limit)");
ABSL_FLAG(uint64_t, window_bytes, 256 << 10,
          "scan: the stream's window, item bytes the server may send ahead "
          "of what this program has printed (StreamOptions::window_bytes)");

namespace {

using moonpool::driver::HostPort;
using moonpool::driver::Task;
using moonpool::transport::CapnpMessage;
using moonpool::transport::ClientTransport;
using moonpool::transport::ReplyStream;
using moonpool::transport::RequestOptions;
using moonpool::transport::StreamOptions;
using moonpool::transport::UsageError;

constexpr char kProgram[] = "moonpool-kv";
constexpr char kUsage[] =
    "calls the key-value example server once.\n\n"
    "  moonpool-kv --server HOST:PORT get KEY\n"
    "  moonpool-kv --server HOST:PORT put KEY VALUE\n"
    "  moonpool-kv --server HOST:PORT delete KEY\n"
    "  moonpool-kv --server HOST:PORT scan START [END] [--limit N]\n"
    "      [--window-bytes N]\n"
    "  [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]\n"
    "      [--tls-server-name NAME] [--tls] [--tls-handshake-timeout D]\n\n"
    "Exit status: 0 the call succeeded (a missing key included), 1 it "
    "failed,\n2 usage.";

struct Command {
  std::string verb;   // get, put, delete or scan
  std::string key;    // scan: START
  std::string value;  // put: VALUE; scan: END (empty: to the last key)
};

// Parses the flags (dashes or underscores) and returns the positional
// arguments after the program name.
std::vector<std::string> ParseFlags(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig config;
  // Its own flags and the shared TLS ones.
  auto is_main = [](absl::string_view file) {
    return absl::EndsWith(file, "kv_client_main.cc") ||
           absl::EndsWith(file, "program_tls.cc");
  };
  config.contains_help_flags = is_main;
  config.contains_helpshort_flags = is_main;
  config.contains_helppackage_flags = is_main;
  absl::SetFlagsUsageConfig(config);
  std::vector<std::string> normalized =
      moonpool::transport::NormalizeFlagNames(argc, argv);
  std::vector<char*> args;
  for (std::string& a : normalized) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> rest =
      absl::ParseCommandLine(static_cast<int>(normalized.size()), args.data());
  return std::vector<std::string>(rest.begin() + 1, rest.end());
}

Command ReadCommand(const std::vector<std::string>& words) {
  if (words.empty()) {
    UsageError(kProgram, "no command (get, put, delete or scan)");
  }
  Command c{.verb = words[0], .key = "", .value = ""};
  if (c.verb == "scan") {
    if (words.size() != 2 && words.size() != 3) {
      UsageError(kProgram, "scan takes 1 or 2 arguments: START [END]");
    }
    c.key = words[1];
    if (words.size() == 3) c.value = words[2];
    return c;
  }
  const size_t want = c.verb == "put" ? 3 : 2;
  if (c.verb != "get" && c.verb != "put" && c.verb != "delete") {
    UsageError(kProgram, absl::StrCat("unknown command \"", c.verb,
                                      "\" (get, put, delete or scan)"));
  }
  if (words.size() != want) {
    UsageError(kProgram, absl::StrCat(c.verb, " takes ", want - 1,
                                      want == 3 ? " arguments: KEY VALUE"
                                                : " argument: KEY"));
  }
  c.key = words[1];
  if (want == 3) c.value = words[2];
  return c;
}

kj::ArrayPtr<const kj::byte> AsBytes(const std::string& s) {
  return kj::arrayPtr(s.data(), s.size()).asBytes();
}

// Prints each item of the scan as it arrives ("KEY=VALUE"), then the end.
// Taking an item is what grants its bytes back to the server: a slow
// stdout slows the server down, it does not fill this process's memory.
Task<absl::Status> Scan(ClientTransport& client, const HostPort& server,
                        const Command& c, const StreamOptions& options) {
  CapnpMessage<kv::ScanRequest> request;
  request.builder().setStart(c.key);
  request.builder().setEnd(c.value);
  request.builder().setLimit(absl::GetFlag(FLAGS_limit));
  absl::StatusOr<ReplyStream<kv::ScanItem>> stream =
      client.CallStream(server, kv::kScan, request, options);
  if (!stream.ok()) co_return stream.status();
  uint64_t keys = 0;
  while (true) {
    auto next = co_await stream->Next();
    if (!next.ok()) co_return next.status();
    if (!next->has_value()) break;
    kv::ScanItem::Reader item = (*next)->get();
    kj::ArrayPtr<const char> value = item.getValue().asChars();
    std::fwrite(item.getKey().begin(), 1, item.getKey().size(), stdout);
    std::fputc('=', stdout);
    std::fwrite(value.begin(), 1, value.size(), stdout);
    std::fputc('\n', stdout);
    ++keys;
  }
  std::printf("(end: %llu %s)\n", static_cast<unsigned long long>(keys),
              keys == 1 ? "key" : "keys");
  co_return absl::OkStatus();
}

// Prints what `c` did, or its error, and sets the exit status.
Task<void> Run(ClientTransport& client, HostPort server, Command c,
               StreamOptions options, int* exit_status) {
  absl::Status error;
  if (c.verb == "scan") {
    error = co_await Scan(client, server, c, options);
  } else if (c.verb == "get") {
    CapnpMessage<kv::GetRequest> request;
    request.builder().setKey(c.key);
    auto reply = co_await client.Call(server, kv::kGet, request, options);
    if (reply.ok() && reply->get().getFound()) {
      kj::ArrayPtr<const char> value = reply->get().getValue().asChars();
      std::fwrite(value.begin(), 1, value.size(), stdout);
      std::fputc('\n', stdout);
    } else if (reply.ok()) {
      std::printf("(not found)\n");
    }
    error = reply.status();
  } else if (c.verb == "put") {
    CapnpMessage<kv::PutRequest> request;
    request.builder().setKey(c.key);
    request.builder().setValue(AsBytes(c.value));
    auto reply = co_await client.Call(server, kv::kPut, request, options);
    if (reply.ok()) std::printf("OK\n");
    error = reply.status();
  } else {
    CapnpMessage<kv::DeleteRequest> request;
    request.builder().setKey(c.key);
    auto reply = co_await client.Call(server, kv::kDelete, request, options);
    if (reply.ok()) {
      std::printf(reply->get().getExisted() ? "deleted\n" : "(not found)\n");
    }
    error = reply.status();
  }
  client.Close();  // nothing left for the loop: Run returns
  *exit_status = error.ok() ? 0 : 1;
  if (!error.ok()) {
    std::fprintf(stderr, "%s: %s %s: %s\n", kProgram, c.verb.c_str(),
                 c.key.c_str(), error.ToString().c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Command command = ReadCommand(ParseFlags(argc, argv));
  const std::string server_flag = absl::GetFlag(FLAGS_server);
  if (server_flag.empty()) UsageError(kProgram, "--server is required");
  absl::StatusOr<HostPort> server = HostPort::Parse(server_flag);
  if (!server.ok()) UsageError(kProgram, server.status().ToString());
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (!(timeout > 0)) UsageError(kProgram, "--timeout is not > 0");
  // A scan's settings; the other calls use their RequestOptions part.
  StreamOptions options;
  options.timeout = absl::Seconds(timeout);
  options.wait_for_ready = !absl::GetFlag(FLAGS_fail_fast);
  options.window_bytes = absl::GetFlag(FLAGS_window_bytes);
  if (options.window_bytes == 0) UsageError(kProgram, "--window-bytes is 0");

  absl::StatusOr<std::shared_ptr<const moonpool::driver::TlsContext>> tls =
      moonpool::transport::MakeProgramTls(
          moonpool::driver::TlsRole::kClient,
          moonpool::transport::ProgramTlsFlagValues());
  if (!tls.ok()) UsageError(kProgram, tls.status().message());
  moonpool::transport::ClientOptions client_options;
  client_options.peer.tls = *std::move(tls);

  moonpool::driver::UvLoop loop;
  ClientTransport client(loop, std::move(client_options));
  int exit_status = 1;
  moonpool::driver::TaskScope tasks(loop, [](absl::Status s) {
    std::fprintf(stderr, "%s: task failed: %s\n", kProgram,
                 s.ToString().c_str());
  });
  tasks.Spawn(Run(client, *std::move(server), command, options, &exit_status));
  loop.Run();  // until the call has ended and the client is closed
  return exit_status;
}
