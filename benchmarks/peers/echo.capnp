# The echo interface of capnp_rpc_echo, the Cap'n Proto RPC baseline of
# transport_benchmark: the reply carries the request's payload back.
@0xca6881873c2e733c;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("moonpool::bench::peers::capnp_echo");

interface Echo {
  echo @0 (payload :Data) -> (payload :Data);
}
