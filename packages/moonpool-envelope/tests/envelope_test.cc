#include "moonpool/envelope/envelope.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "moonpool/envelope/envelope_concepts.h"
#include "moonpool/envelope/envelope_view.h"

namespace moonpool {
namespace {

static_assert(OwningEnvelope<Envelope>);
static_assert(EnvelopeLike<EnvelopeView>);
static_assert(!OwningEnvelope<EnvelopeView>);
static_assert(!EnvelopeLike<int>);

// An application's own record plugs in through the concept.
struct AppRecord {
  CorrelationId correlation_id;
  EnvelopeKind kind = EnvelopeKind::kRequest;
  Endpoint endpoint;
  std::string payload;
  absl::Duration timeout;
  absl::StatusCode error_code = absl::StatusCode::kOk;
  std::string error_message;
  bool stream_credit_is_absent = false;
};
static_assert(EnvelopeLike<AppRecord>);

// A record without stream_credit (written for protocol version 1) still
// plugs in, and reads as asking for one reply.
TEST(Envelope, RecordWithoutStreamCreditCopiesAsOneReply) {
  AppRecord r;
  r.stream_credit_is_absent = true;
  EXPECT_EQ(StreamCreditOf(r), 0u);
  Envelope e = Envelope::CopyOf(r);
  EXPECT_EQ(e.stream_credit, 0u);
  Envelope s;
  s.stream_credit = 4096;
  EXPECT_EQ(Envelope::CopyOf(EnvelopeView::Of(s)).stream_credit, 4096u);
}

// A record without exactly_once and answered_below (written before
// protocol version 2) reads as a plain request that settles nothing, and an
// owning copy of it says so; a view of an Envelope that has them keeps them.
TEST(Envelope, RecordWithoutExactlyOnceCopiesAsPlainNothingSettled) {
  AppRecord r;
  r.correlation_id = CorrelationId(12);
  r.payload = "put";
  EXPECT_FALSE(ExactlyOnceOf(r));
  EXPECT_FALSE(AnsweredBelowOf(r).valid());
  Envelope e = Envelope::CopyOf(r);
  EXPECT_FALSE(e.exactly_once);
  EXPECT_EQ(e.answered_below, CorrelationId());
  EXPECT_EQ(e.correlation_id, CorrelationId(12));
  EXPECT_EQ(e.payload, "put");

  Envelope s = Envelope::Request(CorrelationId(20), Endpoint(1), "inc");
  s.exactly_once = true;
  s.answered_below = CorrelationId(17);
  EXPECT_TRUE(ExactlyOnceOf(s));
  EXPECT_EQ(AnsweredBelowOf(s), CorrelationId(17));
  const EnvelopeView v = EnvelopeView::Of(s);
  EXPECT_TRUE(ExactlyOnceOf(v));
  EXPECT_EQ(AnsweredBelowOf(v), CorrelationId(17));
  EXPECT_EQ(Envelope::CopyOf(v), s);
}

// A record of the application's with only one of the two fields: each is
// read on its own.
struct RecordWithOnlyAnsweredBelow {
  CorrelationId correlation_id;
  EnvelopeKind kind = EnvelopeKind::kRequest;
  Endpoint endpoint;
  std::string payload;
  absl::Duration timeout;
  absl::StatusCode error_code = absl::StatusCode::kOk;
  std::string error_message;
  CorrelationId answered_below;
};
static_assert(EnvelopeLike<RecordWithOnlyAnsweredBelow>);

TEST(Envelope, RecordWithOnlyAnsweredBelowKeepsItAndIsNotExactlyOnce) {
  RecordWithOnlyAnsweredBelow r;
  r.answered_below = CorrelationId(~uint64_t{0});
  EXPECT_FALSE(ExactlyOnceOf(r));
  EXPECT_EQ(AnsweredBelowOf(r), CorrelationId(~uint64_t{0}));
  Envelope e = Envelope::CopyOf(r);
  EXPECT_FALSE(e.exactly_once);
  EXPECT_EQ(e.answered_below, CorrelationId(~uint64_t{0}));
  EXPECT_EQ(e.stream_credit, 0u);
}

// A bare integer is not an endpoint: a record must say Endpoint to plug in.
struct RecordWithBareEndpoint {
  CorrelationId correlation_id;
  EnvelopeKind kind = EnvelopeKind::kRequest;
  uint64_t endpoint = 0;
  std::string payload;
  absl::Duration timeout;
  absl::StatusCode error_code = absl::StatusCode::kOk;
  std::string error_message;
};
static_assert(!EnvelopeLike<RecordWithBareEndpoint>);

TEST(Envelope, RequestCarriesItsFields) {
  Envelope e = Envelope::Request(CorrelationId(5), Endpoint(9), "ping",
                                 absl::Seconds(2));
  EXPECT_EQ(e.kind, EnvelopeKind::kRequest);
  EXPECT_EQ(e.correlation_id, CorrelationId(5));
  EXPECT_EQ(e.endpoint, Endpoint(9));
  EXPECT_EQ(e.payload, "ping");
  EXPECT_EQ(e.timeout, absl::Seconds(2));
  EXPECT_TRUE(ErrorStatus(e).ok());
}

TEST(Envelope, OneWayHasNoCorrelationId) {
  Envelope e = Envelope::OneWay(Endpoint(3), "note");
  EXPECT_EQ(e.kind, EnvelopeKind::kOneWay);
  EXPECT_FALSE(e.correlation_id.valid());
}

TEST(Envelope, ReplyMatchesItsRequestOnly) {
  Envelope request = Envelope::Request(CorrelationId(5), Endpoint(9), "ping");
  Envelope reply = MakeReply(request, "pong");
  EXPECT_EQ(reply.kind, EnvelopeKind::kReply);
  EXPECT_EQ(reply.correlation_id, request.correlation_id);
  EXPECT_EQ(reply.endpoint, Endpoint(9));
  EXPECT_TRUE(IsResponseTo(reply, request));

  Envelope other = Envelope::Request(CorrelationId(6), Endpoint(9), "ping");
  EXPECT_FALSE(IsResponseTo(reply, other));
  // A request is never a response, even to itself.
  EXPECT_FALSE(IsResponseTo(request, request));
  // Nothing answers a one-way message.
  Envelope note = Envelope::OneWay(Endpoint(9), "x");
  Envelope fake = MakeReply(note, "y");
  EXPECT_FALSE(IsResponseTo(fake, note));
}

TEST(Envelope, ErrorReplyRoundTripsTheStatus) {
  Envelope request =
      Envelope::Request(CorrelationId(1), kDefaultEndpoint, "get k");
  Envelope error = MakeErrorReply(request, absl::NotFoundError("no such key"));
  EXPECT_EQ(error.kind, EnvelopeKind::kError);
  EXPECT_TRUE(IsResponseTo(error, request));
  EXPECT_EQ(ErrorStatus(error), absl::NotFoundError("no such key"));
}

TEST(Envelope, ErrorReplyNeverReadsAsSuccess) {
  Envelope request = Envelope::Request(CorrelationId(1), kDefaultEndpoint, "");
  Envelope error = MakeErrorReply(request, absl::OkStatus());
  EXPECT_EQ(error.error_code, absl::StatusCode::kUnknown);
  // A peer that sent code 0 ("unknown" on the wire) is read as kUnknown too.
  error.error_code = absl::StatusCode::kOk;
  EXPECT_EQ(ErrorStatus(error).code(), absl::StatusCode::kUnknown);
}

TEST(EnvelopeView, BorrowsAndCopiesBack) {
  Envelope e = Envelope::Request(CorrelationId(8), Endpoint(2), "payload",
                                 absl::Milliseconds(5));
  EnvelopeView v = EnvelopeView::Of(e);
  EXPECT_EQ(v.payload.data(), e.payload.data());
  Envelope copy = Envelope::CopyOf(v);
  EXPECT_EQ(copy, e);
  EXPECT_NE(copy.payload.data(), e.payload.data());
}

TEST(EnvelopeKind, NamesEveryKind) {
  EXPECT_EQ(EnvelopeKindName(EnvelopeKind::kRequest), "request");
  EXPECT_EQ(EnvelopeKindName(EnvelopeKind::kReply), "reply");
  EXPECT_EQ(EnvelopeKindName(EnvelopeKind::kError), "error");
  EXPECT_EQ(EnvelopeKindName(EnvelopeKind::kOneWay), "one-way");
  EXPECT_EQ(EnvelopeKindName(EnvelopeKind::kStreamItem), "stream-item");
  EXPECT_EQ(EnvelopeKindName(EnvelopeKind::kStreamEnd), "stream-end");
  EXPECT_TRUE(IsResponseKind(EnvelopeKind::kStreamEnd));
  EXPECT_FALSE(IsResponseKind(EnvelopeKind::kStreamItem));
  EXPECT_EQ(EnvelopeKindName(static_cast<EnvelopeKind>(77)), "unknown");
  EXPECT_TRUE(IsResponseKind(EnvelopeKind::kError));
  EXPECT_FALSE(IsResponseKind(EnvelopeKind::kOneWay));
}

}  // namespace
}  // namespace moonpool
