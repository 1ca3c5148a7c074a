#include "moonpool/transport/method.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace moonpool::transport {

absl::Status CheckMethodName(absl::string_view name) {
  if (name.size() > kMaxMethodNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("method name of ", name.size(), " bytes; at most ",
                     kMaxMethodNameBytes));
  }
  for (char c : name) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(absl::StrCat(
          "method name \"", absl::CHexEscape(name),
          "\" holds a character that is not printable ASCII or is a space"));
    }
  }
  const size_t slash = name.find('/');
  if (slash == absl::string_view::npos || slash == 0 ||
      slash + 1 == name.size() ||
      name.find('/', slash + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("method name \"", name,
                     "\" is not \"Service/Method\" (one '/' with a name on "
                     "each side)"));
  }
  return absl::OkStatus();
}

absl::Status CheckMethod(absl::string_view name, Endpoint token) {
  if (absl::Status s = CheckMethodName(name); !s.ok()) return s;
  if (token == kDefaultEndpoint) {
    return absl::InvalidArgumentError(
        absl::StrCat("method name \"", name,
                     "\" hashes to token 0, the default queue's; rename the "
                     "method"));
  }
  return absl::OkStatus();
}

}  // namespace moonpool::transport
