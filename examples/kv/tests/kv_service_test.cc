// KeyValueService on real loopback sockets, called through the methods of
// kv_methods.h: what a Get, Put and Delete answer, a delayed Get that
// ends as soon as its caller gives up instead of holding a handler slot for
// the whole delay, and what a Scan sees of writes made while it waits for
// credit.
#include "kv_service.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kv_methods.h"
#include "moonpool/driver/address.h"
#include "moonpool/driver/select.h"
#include "moonpool/driver/sleep.h"
#include "moonpool/driver/task.h"
#include "moonpool/driver/task_scope.h"
#include "moonpool/driver/uv_loop.h"
#include "moonpool/transport/client_transport.h"
#include "moonpool/transport/method_stats.h"
#include "moonpool/transport/reply_stream.h"
#include "moonpool/transport/server_transport.h"

namespace kv {
namespace {

using moonpool::driver::Address;
using moonpool::driver::Task;
using moonpool::driver::TaskScope;
using moonpool::driver::UvLoop;
using moonpool::transport::CapnpMessage;
using moonpool::transport::ClientTransport;
using moonpool::transport::MethodStats;
using moonpool::transport::ReplyStream;
using moonpool::transport::RequestOptions;
using moonpool::transport::ServerTransport;
using moonpool::transport::StreamOptions;

bool RunFor(UvLoop& loop, absl::FunctionRef<bool()> done,
            absl::Duration limit = absl::Seconds(10)) {
  return loop.RunUntil(done, loop.Now() + limit);
}

// One call of each kind; the answers as the client sees them.
struct Answers {
  std::optional<absl::Status> status;
  bool found_before = true, found_after_put = false, existed = false,
       found_after_delete = true, existed_again = true;
  std::string value;
};

Task<void> PutGetDelete(ClientTransport& client, Address to, Answers* out) {
  const RequestOptions o = RequestOptions::Timeout(absl::Seconds(5));
  CapnpMessage<GetRequest> get;
  get.builder().setKey("colour");
  CapnpMessage<PutRequest> put;
  put.builder().setKey("colour");
  put.builder().setValue(kj::StringPtr("blue").asBytes());
  CapnpMessage<DeleteRequest> del;
  del.builder().setKey("colour");
  auto before = co_await client.Call(to, kGet, get, o);
  auto done = co_await client.Call(to, kPut, put, o);
  auto after = co_await client.Call(to, kGet, get, o);
  auto deleted = co_await client.Call(to, kDelete, del, o);
  auto gone = co_await client.Call(to, kGet, get, o);
  auto again = co_await client.Call(to, kDelete, del, o);
  absl::Status s = before.status();
  for (const absl::Status& t : {done.status(), after.status(), deleted.status(),
                                gone.status(), again.status()}) {
    s.Update(t);
  }
  if (s.ok()) {
    out->found_before = before->get().getFound();
    out->found_after_put = after->get().getFound();
    kj::ArrayPtr<const char> v = after->get().getValue().asChars();
    out->value.assign(v.begin(), v.size());
    out->existed = deleted->get().getExisted();
    out->found_after_delete = gone->get().getFound();
    out->existed_again = again->get().getExisted();
  }
  out->status = s;
}

TEST(KeyValueService, PutIsReadBackAndDeleteRemovesIt) {
  UvLoop loop;
  KeyValueService service(loop);
  auto server = ServerTransport::Bind(loop, Address::Loopback(0));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(service.Register(**server).ok());
  ClientTransport client(loop);
  TaskScope scope(loop, [](absl::Status s) { ADD_FAILURE() << s; });
  Answers a;
  scope.Spawn(PutGetDelete(client, (*server)->address(), &a));
  ASSERT_TRUE(RunFor(loop, [&] { return a.status.has_value(); }));
  ASSERT_TRUE(a.status->ok()) << *a.status;
  EXPECT_FALSE(a.found_before);
  EXPECT_TRUE(a.found_after_put);
  EXPECT_EQ(a.value, "blue");
  EXPECT_TRUE(a.existed);
  EXPECT_FALSE(a.found_after_delete);
  EXPECT_FALSE(a.existed_again);
  EXPECT_EQ(service.size(), 0u);
  client.Close();
}

TEST(KeyValueService, RegisteringTwiceOnOneServerIsAlreadyExists) {
  UvLoop loop;
  KeyValueService service(loop);
  auto server = ServerTransport::Bind(loop, Address::Loopback(0));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(service.Register(**server).ok());
  EXPECT_EQ(service.Register(**server).code(),
            absl::StatusCode::kAlreadyExists);
}

// The caller waits 200 ms for a Get the server delays 30 s, then gives up
// (its call task is destroyed: a `cancel` goes out). The handler's
// cancellation fires and it ends at once: the server shows the cancel and
// no Get running long before the delay is over.
Task<void> GiveUpOnGet(moonpool::driver::Loop& loop, ClientTransport& client,
                       Address to, bool* gave_up) {
  CapnpMessage<GetRequest> get;
  get.builder().setKey("slow");
  auto r = co_await moonpool::driver::Select(
      client.Call(to, kGet, get, RequestOptions::Timeout(absl::Seconds(60))),
      moonpool::driver::Sleep(loop, absl::Milliseconds(200)));
  *gave_up = r.index() == 1;
}

TEST(KeyValueService, DelayedGetEndsWhenItsCallerGivesUp) {
  UvLoop loop;
  KeyValueService service(loop, {.get_delay = absl::Seconds(30)});
  auto server = ServerTransport::Bind(loop, Address::Loopback(0));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(service.Register(**server).ok());
  ClientTransport client(loop);
  TaskScope scope(loop, [](absl::Status s) { ADD_FAILURE() << s; });
  bool gave_up = false;
  const absl::Time start = absl::Now();
  scope.Spawn(GiveUpOnGet(loop, client, (*server)->address(), &gave_up));
  auto get_stats = [&] { return *(*server)->method_stats(kGet); };
  ASSERT_TRUE(RunFor(loop,
                     [&] {
                       const MethodStats m = get_stats();
                       return gave_up && m.cancelled == 1 && m.running == 0;
                     }))
      << "cancelled=" << get_stats().cancelled
      << " running=" << get_stats().running;
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(get_stats().requests, 1u);
  EXPECT_EQ(get_stats().replies, 0u);
  client.Close();
}

// Puts each (key, value) in turn, then Deletes each of `deletes`; the first
// failure, or OK, in *done.
Task<void> Write(ClientTransport& client, Address to,
                 std::vector<std::pair<std::string, std::string>> puts,
                 std::vector<std::string> deletes,
                 std::optional<absl::Status>* done) {
  const RequestOptions o = RequestOptions::Timeout(absl::Seconds(5));
  for (const auto& [key, value] : puts) {
    CapnpMessage<PutRequest> put;
    put.builder().setKey(key);
    put.builder().setValue(kj::arrayPtr(value.data(), value.size()).asBytes());
    auto r = co_await client.Call(to, kPut, put, o);
    if (!r.ok()) {
      *done = r.status();
      co_return;
    }
  }
  for (const std::string& key : deletes) {
    CapnpMessage<DeleteRequest> del;
    del.builder().setKey(key);
    auto r = co_await client.Call(to, kDelete, del, o);
    if (!r.ok()) {
      *done = r.status();
      co_return;
    }
  }
  *done = absl::OkStatus();
}

// Reads `stream` to its end: "key=value" per item, then the end.
Task<void> ReadScan(ReplyStream<ScanItem>& stream,
                    std::vector<std::string>* items,
                    std::optional<absl::Status>* end) {
  while (true) {
    auto next = co_await stream.Next();
    if (!next.ok() || !next->has_value()) {
      *end = next.status();
      co_return;
    }
    ScanItem::Reader item = (*next)->get();
    items->push_back(
        std::string(item.getKey().cStr()) + "=" +
        std::string(item.getValue().asChars().begin(), item.getValue().size()));
  }
}

// A scan with a window of one byte: the server sends `b`, reads the next key
// (`d`) and waits for credit. Writes made meanwhile: one behind the scan's
// position (`a`) is not seen; ahead of it, a new key (`g`) and a new value
// (`f`) are, a deleted key (`h`) is not. The keys stay in order, none twice:
// the scan resumes from the key after the last one it sent.
TEST(KeyValueService, ScanWalksTheLiveStoreFromTheKeyAfterTheLastSent) {
  UvLoop loop;
  KeyValueService service(loop);
  auto server = ServerTransport::Bind(loop, Address::Loopback(0));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(service.Register(**server).ok());
  const Address to = (*server)->address();
  ClientTransport client(loop);
  TaskScope scope(loop, [](absl::Status s) { ADD_FAILURE() << s; });
  std::optional<absl::Status> written;
  scope.Spawn(Write(client, to,
                    {{"b", "old"}, {"d", "old"}, {"f", "old"}, {"h", "old"}},
                    {}, &written));
  ASSERT_TRUE(RunFor(loop, [&] { return written.has_value(); }));
  ASSERT_TRUE(written->ok()) << *written;

  CapnpMessage<ScanRequest> request;  // everything: start "", end ""
  StreamOptions options;
  options.timeout = absl::Seconds(5);
  options.window_bytes = 1;  // one item at a time
  absl::StatusOr<ReplyStream<ScanItem>> stream =
      client.CallStream(to, kScan, request, options);
  ASSERT_TRUE(stream.ok()) << stream.status();
  // `b` arrives; nobody takes it, so no credit goes back.
  ASSERT_TRUE(RunFor(loop, [&] { return stream->buffered_bytes() > 0; }));

  written.reset();
  scope.Spawn(Write(client, to, {{"a", "new"}, {"g", "new"}, {"f", "new"}},
                    {"h"}, &written));
  ASSERT_TRUE(RunFor(loop, [&] { return written.has_value(); }));
  ASSERT_TRUE(written->ok()) << *written;

  std::vector<std::string> items;
  std::optional<absl::Status> end;
  scope.Spawn(ReadScan(*stream, &items, &end));
  ASSERT_TRUE(RunFor(loop, [&] { return end.has_value(); }));
  EXPECT_TRUE(end->ok()) << *end;
  EXPECT_EQ(items,
            (std::vector<std::string>{"b=old", "d=old", "f=new", "g=new"}));
  EXPECT_EQ((*server)->method_stats(kScan)->items, 4u);
  client.Close();
}

}  // namespace
}  // namespace kv
