#include "moonpool/chaos/buggify.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "moonpool/driver/buggify_sites.h"
#include "moonpool/protocol/buggify.h"
#include "moonpool/transport/buggify_sites.h"

namespace moonpool::chaos {

std::vector<absl::string_view> KnownBuggifySites() {
  // One line per layer with sites: its list, from its own header.
  const absl::Span<const absl::string_view> layers[] = {
      protocol::kBuggifySites,
      driver::kBuggifySites,
      transport::kBuggifySites,
  };
  std::vector<absl::string_view> sites;
  for (absl::Span<const absl::string_view> layer : layers) {
    for (absl::string_view site : layer) {
      if (std::find(sites.begin(), sites.end(), site) == sites.end()) {
        sites.push_back(site);
      }
    }
  }
  return sites;
}

std::string BuggifyPointName(absl::string_view site) {
  return absl::StrCat("buggify.", site);
}

}  // namespace moonpool::chaos
