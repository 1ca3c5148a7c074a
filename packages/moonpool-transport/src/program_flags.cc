#include "moonpool/transport/program_flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace moonpool::transport {

std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> out(argv, argv + argc);
  for (size_t i = 1; i < out.size(); ++i) {
    std::string& arg = out[i];
    if (arg == "--") break;
    if (arg == "-h") {
      arg = "--help";
      continue;
    }
    const size_t start = absl::StartsWith(arg, "--")  ? 2
                         : absl::StartsWith(arg, "-") ? 1
                                                      : 0;
    if (start == 0 || start >= arg.size() || arg[start] < 'a' ||
        arg[start] > 'z') {
      continue;
    }
    const size_t end = std::min(arg.find('='), arg.size());
    bool name_like = true;
    for (size_t j = start; j < end; ++j) {
      const char c = arg[j];
      name_like = name_like && ((c >= 'a' && c <= 'z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '_');
    }
    if (!name_like) continue;
    for (size_t j = start; j < end; ++j) {
      if (arg[j] == '-') arg[j] = '_';
    }
  }
  return out;
}

void UsageError(absl::string_view program, absl::string_view error) {
  std::fprintf(stderr, "%.*s: %.*s\nTry '%.*s --help'.\n",
               static_cast<int>(program.size()), program.data(),
               static_cast<int>(error.size()), error.data(),
               static_cast<int>(program.size()), program.data());
  std::exit(2);
}

void ParseProgramFlags(int argc, char** argv, absl::string_view usage,
                       absl::string_view main_file) {
  absl::SetProgramUsageMessage(usage);
  const std::string main_base(
      main_file.substr(main_file.find_last_of('/') + 1));
  absl::FlagsUsageConfig config;
  // The program's own flags, and the TLS flags it shares with the other
  // programs (program_tls.h), which are registered only in a program that
  // uses them.
  auto is_main = [main_base](absl::string_view file) {
    return absl::EndsWith(file, "/" + main_base) || file == main_base ||
           absl::EndsWith(file, "/program_tls.cc") || file == "program_tls.cc";
  };
  config.contains_help_flags = is_main;
  config.contains_helpshort_flags = is_main;
  config.contains_helppackage_flags = is_main;
  // --help names the file that defines a flag: its name is enough.
  config.normalize_filename = [](absl::string_view file) {
    return std::string(file.substr(file.find_last_of('/') + 1));
  };
  absl::SetFlagsUsageConfig(config);

  std::vector<std::string> normalized = NormalizeFlagNames(argc, argv);
  std::vector<char*> args;
  for (std::string& a : normalized) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> rest =
      absl::ParseCommandLine(static_cast<int>(normalized.size()), args.data());
  if (rest.size() > 1) {
    absl::string_view program = argv[0];
    program.remove_prefix(program.find_last_of('/') + 1);
    UsageError(program, std::string("unexpected argument ") + rest[1]);
  }
}

}  // namespace moonpool::transport
