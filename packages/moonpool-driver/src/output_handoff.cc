#include "moonpool/driver/output_handoff.h"

#include <cassert>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moonpool::driver {

absl::Status OutputHandoff::Flush(protocol::Connection& connection,
                                  Stream& stream, size_t high_water) {
  for (;;) {
    absl::Span<const char> out = connection.PendingOutput();
    if (out.size() <= handed_off_) return absl::OkStatus();
    // Only to an empty stream: behind queued bytes, all of it is copied.
    if (handed_off_ > 0) return absl::OkStatus();  // OnWritten resumes
    absl::Span<const char> slice = out.subspan(handed_off_, high_water);
    absl::StatusOr<size_t> written = stream.Write(slice);
    if (!written.ok()) return written.status();
    connection.ConsumeOutput(*written);
    handed_off_ += slice.size() - *written;
    // The kernel left some: the stream queued them and reports progress.
    if (*written < slice.size()) return absl::OkStatus();
  }
}

}  // namespace moonpool::driver
