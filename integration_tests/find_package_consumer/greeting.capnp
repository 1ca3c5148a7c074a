# A user's own schema, compiled by the consumer's CMakeLists.txt with
# capnp_generate_cpp, as packages/moonpool-transport/README.md shows.
@0xd3fd95a4c517cd8b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("consumer");

struct Greeting {
  name  @0 :Text;
  times @1 :UInt32;
}

struct Reply {
  text  @0 :Text;
}
