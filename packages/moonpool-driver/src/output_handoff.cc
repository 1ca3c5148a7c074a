#include "moonpool/driver/output_handoff.h"

#include <algorithm>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moonpool::driver {

absl::Status OutputHandoff::Flush(protocol::Connection& connection,
                                  Stream& stream, size_t max_slice,
                                  size_t first_slice) {
  // Only to an empty stream: behind queued bytes, a slice is copied whole.
  // OnWritten brings the next call once the queue drains.
  if (handed_off_ > 0) return absl::OkStatus();
  for (;;) {
    absl::Span<const char> out = connection.PendingOutput();
    if (out.empty()) return absl::OkStatus();
    absl::Span<const char> slice =
        out.first(std::min({out.size(), max_slice, first_slice}));
    first_slice = SIZE_MAX;
    absl::StatusOr<size_t> written = stream.Write(slice);
    if (!written.ok()) return written.status();
    connection.ConsumeOutput(*written);
    if (*written < slice.size()) {
      // The stream queued the rest and reports it through OnWritten.
      handed_off_ = slice.size() - *written;
      return absl::OkStatus();
    }
  }
}

}  // namespace moonpool::driver
