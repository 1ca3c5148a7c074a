#include "json_value.h"

#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moonpool::chaos::internal {
namespace {

class Parser {
 public:
  explicit Parser(absl::string_view t) : t_(t) {}

  absl::StatusOr<JsonValue> Document() {
    absl::StatusOr<JsonValue> v = Value(0);
    if (!v.ok()) return v;
    Skip();
    if (i_ != t_.size()) return Error("trailing characters");
    return v;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON: ", what, " at offset ", i_));
  }
  void Skip() {
    while (i_ < t_.size() && absl::ascii_isspace(t_[i_])) ++i_;
  }
  bool Eat(char c) {
    Skip();
    if (i_ < t_.size() && t_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  absl::StatusOr<std::string> String() {
    if (!Eat('"')) return Error("expected string");
    std::string out;
    while (i_ < t_.size() && t_[i_] != '"') {
      char c = t_[i_++];
      if (c == '\\') {
        if (i_ >= t_.size()) return Error("bad escape");
        char e = t_[i_++];
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case 'r':
            out += '\r';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'u': {
            if (i_ + 4 > t_.size()) return Error("bad \\u");
            out += static_cast<char>(std::strtol(
                std::string(t_.substr(i_, 4)).c_str(), nullptr, 16));
            i_ += 4;
            break;
          }
          default:
            out += e;
        }
      } else {
        out += c;
      }
    }
    if (i_ >= t_.size()) return Error("unterminated string");
    ++i_;
    return out;
  }
  absl::StatusOr<JsonValue> Value(int depth) {
    if (depth > 64) return Error("too deep");
    Skip();
    if (i_ >= t_.size()) return Error("unexpected end");
    JsonValue v;
    const char c = t_[i_];
    if (c == '{') {
      ++i_;
      v.type = JsonValue::Type::kObject;
      if (Eat('}')) return v;
      do {
        absl::StatusOr<std::string> k = String();
        if (!k.ok()) return k.status();
        if (!Eat(':')) return Error("expected ':'");
        absl::StatusOr<JsonValue> m = Value(depth + 1);
        if (!m.ok()) return m;
        v.object[*k] = std::move(*m);
      } while (Eat(','));
      if (!Eat('}')) return Error("expected '}'");
      return v;
    }
    if (c == '[') {
      ++i_;
      v.type = JsonValue::Type::kArray;
      if (Eat(']')) return v;
      do {
        absl::StatusOr<JsonValue> m = Value(depth + 1);
        if (!m.ok()) return m;
        v.array.push_back(std::move(*m));
      } while (Eat(','));
      if (!Eat(']')) return Error("expected ']'");
      return v;
    }
    if (c == '"') {
      absl::StatusOr<std::string> s = String();
      if (!s.ok()) return s.status();
      v.type = JsonValue::Type::kString;
      v.string = std::move(*s);
      return v;
    }
    for (absl::string_view word : {"true", "false", "null"}) {
      if (t_.substr(i_, word.size()) == word) {
        i_ += word.size();
        v.type =
            word == "null" ? JsonValue::Type::kNull : JsonValue::Type::kBool;
        v.boolean = word == "true";
        return v;
      }
    }
    const size_t start = i_;
    while (i_ < t_.size() &&
           (absl::ascii_isdigit(t_[i_]) || t_[i_] == '-' || t_[i_] == '+' ||
            t_[i_] == '.' || t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
    }
    if (start == i_) return Error("unexpected character");
    v.type = JsonValue::Type::kNumber;
    v.number =
        std::strtod(std::string(t_.substr(start, i_ - start)).c_str(), nullptr);
    return v;
  }

  absl::string_view t_;
  size_t i_ = 0;
};

}  // namespace

const JsonValue& JsonValue::operator[](const std::string& key) const {
  static const JsonValue kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : it->second;
}

absl::StatusOr<JsonValue> JsonValue::Parse(absl::string_view text) {
  return Parser(text).Document();
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace moonpool::chaos::internal
