// The key=value form of ChaosConfig (seed_runner.h, README "Config files").
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "moonpool/chaos/seed_runner.h"

namespace moonpool::chaos {
namespace {

absl::Status SetField(ChaosConfig& c, absl::string_view key,
                      absl::string_view value) {
  auto prob = [&](double& out) -> absl::Status {
    double v = 0;
    if (!absl::SimpleAtod(value, &v) || v < 0 || v > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": not a probability in [0, 1]: '", value, "'"));
    }
    out = v;
    return absl::OkStatus();
  };
  auto dur = [&](absl::Duration& out) -> absl::Status {
    absl::Duration d;
    if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, ": not a duration such as 250ms or 3s: '", value, "'"));
    }
    out = d;
    return absl::OkStatus();
  };
  if (key == "latency_min") return dur(c.latency.min);
  if (key == "latency_typical") return dur(c.latency.typical);
  if (key == "latency_tail_probability")
    return prob(c.latency.tail_probability);
  if (key == "latency_tail_mean") return dur(c.latency.tail_mean);
  if (key == "latency_max") return dur(c.latency.max);
  if (key == "stall_probability") return prob(c.stall_probability);
  if (key == "clog_probability") return prob(c.clog_probability);
  if (key == "stall_min") return dur(c.stall_min);
  if (key == "stall_max") return dur(c.stall_max);
  if (key == "reset_probability") return prob(c.reset_probability);
  if (key == "half_close_probability") return prob(c.half_close_probability);
  if (key == "connect_refused_probability") {
    return prob(c.connect_refused_probability);
  }
  if (key == "connect_hang_probability")
    return prob(c.connect_hang_probability);
  if (key == "partial_write_probability") {
    return prob(c.partial_write_probability);
  }
  if (key == "short_read_probability") return prob(c.short_read_probability);
  if (key == "bit_flip_probability") return prob(c.bit_flip_probability);
  if (key == "resolve_failed_probability") {
    return prob(c.resolve_failed_probability);
  }
  if (key == "resolve_slow_probability") {
    return prob(c.resolve_slow_probability);
  }
  if (key == "resolve_slow_min") return dur(c.resolve_slow_min);
  if (key == "resolve_slow_max") return dur(c.resolve_slow_max);
  if (key == "max_bit_flips") {
    int v = 0;
    if (!absl::SimpleAtoi(value, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": not a positive integer: '", value, "'"));
    }
    c.max_bit_flips = v;
    return absl::OkStatus();
  }
  if (key == "tls") {
    if (value == "true" || value == "1" || value == "on") {
      c.tls = true;
    } else if (value == "false" || value == "0" || value == "off") {
      c.tls = false;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": not true or false: '", value, "'"));
    }
    return absl::OkStatus();
  }
  if (key == "kernel_buffer_bytes") {
    size_t v = 0;
    if (!absl::SimpleAtoi(value, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": not a positive integer: '", value, "'"));
    }
    c.kernel_buffer_bytes = v;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown key '", key, "'"));
}

}  // namespace

absl::StatusOr<ChaosConfig> ParseChaosConfig(absl::string_view text) {
  ChaosConfig c;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": expected key=value: '", line, "'"));
    }
    absl::Status s = SetField(c, absl::StripAsciiWhitespace(line.substr(0, eq)),
                              absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": ", s.message()));
    }
  }
  return c;
}

absl::StatusOr<ChaosConfig> ReadChaosConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ChaosConfig> c = ParseChaosConfig(text.str());
  if (!c.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", c.status().message()));
  }
  return c;
}

}  // namespace moonpool::chaos
