// echo-sim: the seed runner over the echo workload.
//   ./echo-sim --workload echo --seeds 1..1000 --check-determinism 50
#include "echo_workload.h"
#include "moonpool/chaos/sim_main.h"

int main(int argc, char** argv) {
  echo::RegisterEchoWorkload();
  return moonpool::chaos::RunSimMain(argc, argv);
}
