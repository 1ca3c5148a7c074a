#include "tls_errors.h"

#include <openssl/err.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace moonpool::driver::internal {

std::string TakeOpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    absl::StrAppend(&out, out.empty() ? "" : "; ",
                    reason != nullptr ? reason : "unknown reason");
  }
  return out.empty() ? "unknown error" : out;
}

}  // namespace moonpool::driver::internal
