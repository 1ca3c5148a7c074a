# The key-value example service's messages (examples/kv/README.md): one
# request and one reply struct per method of kv_methods.h (Scan, a stream
# method: one request, then a ScanItem per key). Its generated C++ is
# <kv.capnp.h>, in namespace kv.
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

# Scan: the keys in [start, end), in key order, one ScanItem each.
struct ScanRequest {
  start @0 :Text;    # the first key that may be returned (inclusive)
  end   @1 :Text;    # exclusive; empty: to the last key
  limit @2 :UInt64;  # at most this many items; 0: no limit
}
struct ScanItem {
  key   @0 :Text;
  value @1 :Data;
}
