// moonpool-kv-sim: the seed runner (moonpool/chaos/sim_main.h) over the
// "kv" workload (kv_workload.h). Every runner flag works:
//
//   moonpool-kv-sim --workload kv --seeds 1..150 --config random
//       --check-determinism 10 --failures-only --require-coverage kv.
//       (one command line)
//   moonpool-kv-sim --workload kv --seed 17 --config random   # one seed
#include "kv_workload.h"
#include "moonpool/chaos/sim_main.h"

int main(int argc, char** argv) {
  kv::RegisterKvWorkload();
  return moonpool::chaos::RunSimMain(argc, argv);
}
