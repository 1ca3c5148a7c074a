// RAND_METHOD is deprecated in OpenSSL 3.0, and it is still the one hook
// that replaces every draw of the default library context (RAND_bytes_ex and
// RAND_priv_bytes_ex, which key generation, the hello random and signature
// nonces use, check it first). A provider would be the 3.0 way; it is far
// more code for the same effect, and Debian builds the deprecated API.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "tls_random.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstddef>
#include <mutex>

#include "absl/types/span.h"

namespace moonpool::driver::internal {
namespace {

thread_local Loop* tls_random_loop = nullptr;

// OpenSSL's own DRBGs, asked directly (not through RAND_bytes, which would
// come back here): the public one for public bytes, the private one for
// keys. Each call is capped by the DRBG's largest request.
int FromDrbg(EVP_RAND_CTX* drbg, unsigned char* buf, int num) {
  if (drbg == nullptr || num < 0) return 0;
  size_t left = static_cast<size_t>(num);
  while (left > 0) {
    const size_t n = std::min<size_t>(left, 4096);
    if (EVP_RAND_generate(drbg, buf, n, 0, 0, nullptr, 0) != 1) return 0;
    buf += n;
    left -= n;
  }
  return 1;
}

bool FromLoop(unsigned char* buf, int num) {
  Loop* loop = tls_random_loop;
  return loop != nullptr && num >= 0 &&
         loop->FillTlsRandom(absl::MakeSpan(buf, static_cast<size_t>(num)));
}

int Bytes(unsigned char* buf, int num) {
  if (FromLoop(buf, num)) return 1;
  return FromDrbg(RAND_get0_public(nullptr), buf, num);
}

int PrivateBytes(unsigned char* buf, int num) {
  if (FromLoop(buf, num)) return 1;
  return FromDrbg(RAND_get0_private(nullptr), buf, num);
}

int Seed(const void*, int) { return 1; }
int Add(const void*, int, double) { return 1; }
int Status() { return 1; }

const RAND_METHOD kMethod = {
    /*seed=*/Seed,
    /*bytes=*/Bytes,
    /*cleanup=*/nullptr,
    /*add=*/Add,
    /*pseudorand=*/PrivateBytes,
    /*status=*/Status,
};

}  // namespace

bool LoopSuppliesTlsRandom(Loop& loop) {
  unsigned char none = 0;
  if (!loop.FillTlsRandom(absl::Span<unsigned char>(&none, 0))) return false;
  static std::once_flag installed;
  std::call_once(installed, [] { RAND_set_rand_method(&kMethod); });
  return true;
}

TlsRandomScope::TlsRandomScope(Loop& loop, bool active)
    : active_(active), previous_(tls_random_loop) {
  if (active_) tls_random_loop = &loop;
}

TlsRandomScope::~TlsRandomScope() {
  if (active_) tls_random_loop = previous_;
}

}  // namespace moonpool::driver::internal
