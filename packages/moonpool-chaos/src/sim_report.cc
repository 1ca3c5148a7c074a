#include "sim_report.h"

#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "json_value.h"

namespace moonpool::chaos::internal {

void SimReport::AddCoverage(const AssertionRegistry& registry) {
  for (const auto& [name, p] : registry.points()) coverage[name].Add(p);
}

void SimReport::Merge(const SimReport& other) {
  if (workload.empty()) workload = other.workload;
  if (config.empty()) config = other.config;
  seeds_run += other.seeds_run;
  requests += other.requests;
  round_trips += other.round_trips;
  hashes.insert(hashes.end(), other.hashes.begin(), other.hashes.end());
  failures.insert(failures.end(), other.failures.begin(), other.failures.end());
  for (const auto& [name, p] : other.coverage) coverage[name].Add(p);
}

std::vector<std::string> SimReport::Holes(
    const std::vector<std::string>& prefixes) const {
  std::vector<std::string> out;
  for (const auto& [name, p] : coverage) {
    if (p.is_always || p.held > 0) continue;
    bool match = prefixes.empty();
    for (const std::string& pre : prefixes)
      match = match || absl::StartsWith(name, pre);
    if (match) out.push_back(name);
  }
  return out;
}

std::string SimReport::CoverageText() const {
  std::string out;
  for (const auto& [name, p] : coverage) {
    if (p.is_always) {
      absl::StrAppendFormat(&out, "  %10s  always     %s%s\n",
                            absl::StrCat(p.held, "/", p.reached), name,
                            p.held == p.reached ? "" : "  FAILED");
    } else {
      absl::StrAppendFormat(&out, "  %10s  sometimes  %s%s\n",
                            absl::StrCat(p.held, "/", p.reached), name,
                            p.held == 0 ? "  NEVER" : "");
    }
  }
  return out;
}

std::string SimReport::ToJson() const {
  std::string j = "{\n";
  absl::StrAppend(&j, "  \"workload\": ", JsonQuote(workload), ",\n");
  absl::StrAppend(&j, "  \"config\": ", JsonQuote(config), ",\n");
  absl::StrAppend(&j, "  \"seeds_run\": ", seeds_run, ",\n");
  absl::StrAppend(&j, "  \"requests\": ", requests, ",\n");
  absl::StrAppend(&j, "  \"round_trips\": ", round_trips, ",\n");
  j += "  \"results\": [";
  for (size_t i = 0; i < hashes.size(); ++i) {
    absl::StrAppend(&j, i ? ",\n    " : "\n    ", "{\"seed\": \"",
                    hashes[i].first, "\", \"hash\": \"",
                    absl::StrFormat("%016x", hashes[i].second), "\"}");
  }
  j += "\n  ],\n  \"failures\": [";
  for (size_t i = 0; i < failures.size(); ++i) {
    const FailureEntry& f = failures[i];
    absl::StrAppend(&j, i ? ",\n    " : "\n    ", "{\"seed\": \"", f.seed,
                    "\", \"error\": ", JsonQuote(f.error),
                    ", \"reproduce\": ", JsonQuote(f.reproduce),
                    ", \"trace_tail\": ", JsonQuote(f.trace_tail), "}");
  }
  j += "\n  ],\n  \"coverage\": {";
  bool first = true;
  for (const auto& [name, p] : coverage) {
    absl::StrAppend(&j, first ? "\n    " : ",\n    ", JsonQuote(name),
                    ": {\"always\": ", p.is_always ? "true" : "false",
                    ", \"reached\": ", p.reached, ", \"held\": ", p.held,
                    ", \"first_failure\": ", JsonQuote(p.first_failure), "}");
    first = false;
  }
  j += "\n  }\n}\n";
  return j;
}

absl::StatusOr<SimReport> SimReport::FromJson(absl::string_view text) {
  absl::StatusOr<JsonValue> v = JsonValue::Parse(text);
  if (!v.ok()) return v.status();
  if (v->type != JsonValue::Type::kObject) {
    return absl::InvalidArgumentError("report: not a JSON object");
  }
  SimReport r;
  r.workload = (*v)["workload"].string;
  r.config = (*v)["config"].string;
  r.seeds_run = static_cast<uint64_t>((*v)["seeds_run"].number);
  r.requests = static_cast<uint64_t>((*v)["requests"].number);
  r.round_trips = static_cast<uint64_t>((*v)["round_trips"].number);
  for (const JsonValue& e : (*v)["results"].array) {
    uint64_t seed = 0, hash = 0;
    if (!absl::SimpleAtoi(e["seed"].string, &seed) ||
        !absl::SimpleHexAtoi(e["hash"].string, &hash)) {
      return absl::InvalidArgumentError("report: bad result entry");
    }
    r.hashes.emplace_back(seed, hash);
  }
  for (const JsonValue& e : (*v)["failures"].array) {
    FailureEntry f;
    if (!absl::SimpleAtoi(e["seed"].string, &f.seed)) {
      return absl::InvalidArgumentError("report: bad failure entry");
    }
    f.error = e["error"].string;
    f.reproduce = e["reproduce"].string;
    f.trace_tail = e["trace_tail"].string;
    r.failures.push_back(std::move(f));
  }
  for (const auto& [name, p] : (*v)["coverage"].object) {
    CoveragePoint& c = r.coverage[name];
    c.is_always = p["always"].boolean;
    c.reached = static_cast<uint64_t>(p["reached"].number);
    c.held = static_cast<uint64_t>(p["held"].number);
    c.first_failure = p["first_failure"].string;
  }
  return r;
}

}  // namespace moonpool::chaos::internal
