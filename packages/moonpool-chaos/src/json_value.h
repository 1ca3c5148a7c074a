// JsonValue: the small JSON tree moonpool-sim writes and `merge` reads back.
// Not a general JSON library: numbers are doubles (seeds and hashes travel
// as strings), no \u escapes beyond ASCII.
#ifndef MOONPOOL_CHAOS_SRC_JSON_VALUE_H_
#define MOONPOOL_CHAOS_SRC_JSON_VALUE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moonpool::chaos::internal {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;

  // The member `key`, or a null value.
  const JsonValue& operator[](const std::string& key) const;

  static absl::StatusOr<JsonValue> Parse(absl::string_view text);
};

// `s` quoted and escaped for JSON.
std::string JsonQuote(absl::string_view s);

}  // namespace moonpool::chaos::internal

#endif  // MOONPOOL_CHAOS_SRC_JSON_VALUE_H_
