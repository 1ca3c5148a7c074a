// KeyValueService on real loopback sockets, called through the methods of
// kv_methods.h: what a Get, Put and Delete answer, and a delayed Get that
// ends as soon as its caller gives up instead of holding a handler slot for
// the whole delay.
#include "kv_service.h"

#include <optional>
#include <string>
#include <utility>

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
using moonpool::transport::RequestOptions;
using moonpool::transport::ServerTransport;

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

}  // namespace
}  // namespace kv
