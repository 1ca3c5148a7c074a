// Where OpenSSL's randomness comes from while a TLS stream of a loop works:
// the loop's (Loop::FillTlsRandom) when it asks for that, so that a
// simulated run replays from its seed; OpenSSL's own DRBGs otherwise.
#ifndef MOONPOOL_DRIVER_SRC_TLS_RANDOM_H_
#define MOONPOOL_DRIVER_SRC_TLS_RANDOM_H_

#include "moonpool/driver/loop.h"

namespace moonpool::driver::internal {

// Whether `loop` supplies TLS randomness (asks it for 0 bytes). When it
// does, installs (once per process) the RAND_METHOD that TlsRandomScope
// steers; a process whose loops never ask keeps OpenSSL's untouched.
bool LoopSuppliesTlsRandom(Loop& loop);

// While alive, OpenSSL calls on this thread take random bytes from `loop`
// (when `active`). Scopes nest; each restores the one before.
class TlsRandomScope {
 public:
  TlsRandomScope(Loop& loop, bool active);
  TlsRandomScope(const TlsRandomScope&) = delete;
  TlsRandomScope& operator=(const TlsRandomScope&) = delete;
  ~TlsRandomScope();

 private:
  bool active_;
  Loop* previous_;
};

}  // namespace moonpool::driver::internal

#endif  // MOONPOOL_DRIVER_SRC_TLS_RANDOM_H_
