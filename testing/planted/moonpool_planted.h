// moonpool_planted.h: which planted bug is active in a test-only build.
//
// The sweep (moonpool-sim) must catch bugs in the transport, not only in the
// simulator. So the sources carry a few realistic bugs, each one site of
//
//   #ifdef MOONPOOL_PLANTED_BUGS
//     if (moonpool_planted::Active("goodbye_last_id_off_by_one")) { ... }
//   #endif
//
// and a test-only copy of the libraries (packages/moonpool-chaos/tests/
// planted/CMakeLists.txt) is compiled with MOONPOOL_PLANTED_BUGS and this
// directory on its include path; the ctests chaos_planted_<name> run that
// copy's moonpool-sim with MOONPOOL_PLANTED_BUG=<name> in the environment.
//
// What it is not: a feature switch. The libraries a user builds or installs
// never define MOONPOOL_PLANTED_BUGS, so they contain none of the sites, and
// this header is never installed. Only one bug is active per process; an
// unknown name activates nothing (and that bug's ctest then fails, since its
// sweep stays clean).
#ifndef MOONPOOL_TESTING_PLANTED_MOONPOOL_PLANTED_H_
#define MOONPOOL_TESTING_PLANTED_MOONPOOL_PLANTED_H_

#include <cstdlib>
#include <cstring>

namespace moonpool_planted {

// The value of MOONPOOL_PLANTED_BUG, read once ("" when unset).
inline const char* ActiveName() {
  static const char* const name = [] {
    const char* v = std::getenv("MOONPOOL_PLANTED_BUG");
    return v != nullptr ? v : "";
  }();
  return name;
}

// True when `name` is the planted bug this process runs with.
inline bool Active(const char* name) {
  return std::strcmp(ActiveName(), name) == 0;
}

}  // namespace moonpool_planted

#endif  // MOONPOOL_TESTING_PLANTED_MOONPOOL_PLANTED_H_
