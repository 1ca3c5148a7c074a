# An example schema for moonpool-transport's typed requests: the ping-pong the
# README, the tests and the examples use. Its generated C++ is installed
# beside it as <moonpool/transport/ping.capnp.h>.
@0xdac2a2c428ae27f8;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("moonpool::transport::schema");

struct Ping {
  sequence   @0 :UInt64;
  sentMicros @1 :UInt64;   # the sender's clock, echoed back for a round trip
  payload    @2 :Data;
}

struct Pong {
  sequence   @0 :UInt64;   # the Ping's
  sentMicros @1 :UInt64;   # the Ping's, unchanged
  payload    @2 :Data;
}
