// moonpool-sim: the seed runner over the built-in workloads (pingpong). All
// of it is RunSimMain (moonpool/chaos/sim_main.h), which a user's program
// calls the same way after registering its own workloads. See the chaos
// README.
//
//   moonpool-sim --workload pingpong --seeds 1..1000 --config random
//   moonpool-sim --seed 42                      # one seed, to reproduce
//   moonpool-sim --seeds 1..100000 --shard 3/16 --json shard3.json
//   moonpool-sim merge shard*.json
#include "moonpool/chaos/sim_main.h"

int main(int argc, char** argv) {
  return moonpool::chaos::RunSimMain(argc, argv);
}
