// Always and Sometimes assertions, after FoundationDB's and Antithesis's:
//
//   Always(cond, name)     must hold every time it is reached; a false one is
//                          a failure of the run (recorded, never thrown).
//   Sometimes(cond, name)  should hold at least once across a sweep of many
//                          seeds; a Sometimes that never held marks a path
//                          the simulation never reached (a coverage hole).
//
// Both record into the AssertionRegistry installed on this thread (a SimLoop
// installs its own for its lifetime; ScopedAssertionRegistry installs any
// other). Outside a simulation nothing is recorded and both just return
// `cond`, so code can keep them in production builds at the cost of a
// thread-local load.
//
// Names are the registry's keys: one name, one point. Reports list names in
// sorted order, so two runs report identically.
//
// Example:
//
//   Sometimes(queue.size() > 100, "server.queue_deep");
//   Always(reply.id == request.id, "client.reply_matches_request");
//   ...
//   AssertionRegistry total;
//   total.Merge(sim.assertions());            // across seeds
//   std::cout << total.CoverageReport();
//   for (const std::string& name : total.NeverHeld()) ...   // holes
#ifndef MOONPOOL_CHAOS_SOMETIMES_H_
#define MOONPOOL_CHAOS_SOMETIMES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"

namespace moonpool::chaos {

class AssertionRegistry {
 public:
  struct Point {
    bool is_always = false;
    uint64_t reached = 0;       // times evaluated
    uint64_t held = 0;          // times cond was true
    std::string first_failure;  // Always only: detail of the first false

    // Adds `other`'s counts (the same point in another registry or run);
    // the first failure already kept stays.
    void Add(const Point& other);
  };

  // Makes `name` a known Sometimes point with zero counts, so that a point
  // never reached still shows up (as a hole) in the report.
  void Declare(absl::string_view name);
  void RecordSometimes(absl::string_view name, bool held);
  void RecordAlways(absl::string_view name, bool held,
                    absl::string_view detail = {});

  // Adds another registry's counts (one seed's) to this one's.
  void Merge(const AssertionRegistry& other);

  const absl::btree_map<std::string, Point>& points() const { return points_; }
  // Sometimes points that never held, sorted.
  std::vector<std::string> NeverHeld() const;
  // Always points that failed at least once, sorted.
  std::vector<std::string> AlwaysFailures() const;
  uint64_t always_failures() const { return always_failures_; }

  // One line per point: "  12/340  sometimes fault.stall". Not load bearing.
  std::string CoverageReport() const;

 private:
  // Ordered so that reports and merges are deterministic; lookups are by
  // string on every call, which is fine at assertion rates.
  absl::btree_map<std::string, Point> points_;
  uint64_t always_failures_ = 0;
};

// The registry of this thread's simulation, or null outside one.
AssertionRegistry* CurrentAssertionRegistry();

// Installs `registry` as this thread's for its lifetime and restores the
// previous one after. SimLoop uses it; tests and runners may too.
class ScopedAssertionRegistry {
 public:
  explicit ScopedAssertionRegistry(AssertionRegistry* registry);
  ScopedAssertionRegistry(const ScopedAssertionRegistry&) = delete;
  ScopedAssertionRegistry& operator=(const ScopedAssertionRegistry&) = delete;
  ~ScopedAssertionRegistry();

 private:
  AssertionRegistry* previous_;
};

// Records into the current registry, if any; returns `cond`.
bool Sometimes(bool cond, absl::string_view name);
bool Always(bool cond, absl::string_view name, absl::string_view detail = {});

}  // namespace moonpool::chaos

#endif  // MOONPOOL_CHAOS_SOMETIMES_H_
