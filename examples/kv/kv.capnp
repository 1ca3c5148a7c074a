# The key-value example service's messages (examples/kv/README.md): one
# request and one reply struct per method of kv_methods.h. Its generated C++
# is <kv.capnp.h>, in namespace kv.
@0xc5e3efff8422551a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("kv");

struct GetRequest {
  key @0 :Text;
}
struct GetReply {
  found @0 :Bool;   # false: no such key (value is empty)
  value @1 :Data;
}

struct PutRequest {
  key   @0 :Text;
  value @1 :Data;
}
struct PutReply {}

struct DeleteRequest {
  key @0 :Text;
}
struct DeleteReply {
  existed @0 :Bool;  # false: there was nothing to delete
}
