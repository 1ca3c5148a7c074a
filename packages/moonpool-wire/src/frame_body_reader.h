// The general reader of a frame body: Cap'n Proto's own reader, which
// accepts any valid encoding of a Frame message (any segment layout, far
// pointers, structs of another schema version's sizes, blobs in any order),
// as another implementation may write it. FrameDecoder uses it for every
// body the envelope fast path (envelope_fast_path.h) declines. Private to
// moonpool-wire; its tests and the fuzz targets include it too.
#ifndef MOONPOOL_WIRE_SRC_FRAME_BODY_READER_H_
#define MOONPOOL_WIRE_SRC_FRAME_BODY_READER_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "moonpool/wire/frame.h"

namespace moonpool::wire::internal {

// Reads `body` (a whole frame body: word-aligned, a whole number of words,
// at least one) as exactly one valid Frame message filling it, and sets
// `out` to its value, whose views point into `body`. InvalidArgument, with
// `out` unspecified, when it is not: a bad segment table, a pointer out of
// bounds, bytes after the message, an unknown union member or envelope
// kind, or more work than a traversal limit of a few times the body allows.
[[nodiscard]] absl::Status ReadFrameBody(absl::Span<const char> body,
                                         FrameValue& out);

}  // namespace moonpool::wire::internal

#endif  // MOONPOOL_WIRE_SRC_FRAME_BODY_READER_H_
