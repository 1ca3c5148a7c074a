// ParseProgramFlags reads a program's command line: absl::ParseCommandLine
// over the ABSL_FLAGs of the program's main file, with three additions that
// the moonpool programs (moonpool-echo-server, moonpool-pingpong,
// moonpool-chaos-pingpong) share:
//   - Flag names may be written with dashes: absl names flags as C++
//     identifiers (--max_connections), while the programs have always been
//     documented, scripted and tested with --max-connections. Both work.
//   - --help (and -h) lists the flags of the program's own main file (absl
//     would look for a file named after the program), and the TLS flags
//     of program_tls.h when the program uses them.
//   - A positional argument, or a value that breaks a flag's own rule (a
//     count of 0, through UsageError), is a usage error: the message, then
//     exit status 2.
// absl's own errors (an unknown flag, a value that does not parse) are
// reported by absl, which exits with status 1.
//
//   ABSL_FLAG(size_t, connections, 1, "connections to open");
//   int main(int argc, char** argv) {
//     moonpool::transport::ParseProgramFlags(argc, argv, kUsage, __FILE__);
//     if (absl::GetFlag(FLAGS_connections) == 0) {
//       moonpool::transport::UsageError("my-program", "--connections is 0");
//     }
//
// It is not a flags library of its own: the flags are absl's, defined and
// read by the program; this only parses the command line into them (and
// sets absl's global usage message and usage config, once, from main).
#ifndef MOONPOOL_TRANSPORT_PROGRAM_FLAGS_H_
#define MOONPOOL_TRANSPORT_PROGRAM_FLAGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace moonpool::transport {

// Parses the command line into the program's ABSL_FLAGs. `usage` is the
// synopsis --help prints above the flags; `main_file` is the file that
// defines them (__FILE__). Exits the process on --help (status 1, absl's),
// on absl's flag errors (1) and on a positional argument (2).
void ParseProgramFlags(int argc, char** argv, absl::string_view usage,
                       absl::string_view main_file);

// Prints "<program>: <error>" and a pointer to --help to stderr, then exits
// with status 2 (a usage error).
[[noreturn]] void UsageError(absl::string_view program,
                             absl::string_view error);

// The arguments with flag names rewritten to absl's spelling:
// "--max-connections=5" -> "--max_connections=5"; "-h" -> "--help". Only
// the name is rewritten, and only of arguments that look like a flag name
// (letters, digits, dashes): a value such as "--" or a negative number is
// left as it is, and so is everything after a "--" argument. argv[0] is
// kept. ParseProgramFlags calls it; it is here to be tested.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_PROGRAM_FLAGS_H_
