// How the programs (moonpool-chaos-pingpong here; moonpool-echo-server and
// moonpool-pingpong in moonpool-transport) read their command line:
// absl::ParseCommandLine over the ABSL_FLAGs of the program's main file, with
// three additions:
//   - Flag names may be written with dashes: absl names flags as C++
//     identifiers (--max_connections), while the programs have always been
//     documented, scripted and tested with --max-connections. Both work.
//   - --help (and -h) lists the flags of the program's own main file (absl
//     would look for a file named after the program).
//   - A positional argument, or a value that breaks a flag's own rule (a
//     count of 0), is a usage error: the message, then exit status 2.
// absl's own errors (an unknown flag, a value that does not parse) are
// reported by absl, which exits with status 1.
//
// A copy of packages/moonpool-transport/examples/program_flags.h (a package
// builds standalone, so it cannot include the other's examples): keep them
// the same.
#ifndef MOONPOOL_CHAOS_PROGRAMS_PROGRAM_FLAGS_H_
#define MOONPOOL_CHAOS_PROGRAMS_PROGRAM_FLAGS_H_

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

namespace moonpool::examples {

// "--max-connections=5" -> "--max_connections=5"; "-h" -> "--help". Only
// the name is rewritten, and only of arguments that look like a flag name
// (letters, digits, dashes): a value such as "--" or a negative number is
// left as it is, and so is everything after a "--" argument.
inline std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
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

[[noreturn]] inline void UsageError(absl::string_view program,
                                    absl::string_view error) {
  std::fprintf(stderr, "%.*s: %.*s\nTry '%.*s --help'.\n",
               static_cast<int>(program.size()), program.data(),
               static_cast<int>(error.size()), error.data(),
               static_cast<int>(program.size()), program.data());
  std::exit(2);
}

// Parses the command line into the program's ABSL_FLAGs. `usage` is the
// synopsis --help prints above the flags; `main_file` is the file that
// defines them (__FILE__).
inline void ParseProgramFlags(int argc, char** argv, absl::string_view usage,
                              absl::string_view main_file) {
  absl::SetProgramUsageMessage(usage);
  const std::string main_base(
      main_file.substr(main_file.find_last_of('/') + 1));
  absl::FlagsUsageConfig config;
  auto is_main = [main_base](absl::string_view file) {
    return absl::EndsWith(file, "/" + main_base) || file == main_base;
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

}  // namespace moonpool::examples

#endif  // MOONPOOL_CHAOS_PROGRAMS_PROGRAM_FLAGS_H_
