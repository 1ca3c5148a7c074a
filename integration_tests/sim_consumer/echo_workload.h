// The echo workload: a user's own workload for the moonpool seed runner.
#ifndef ECHO_WORKLOAD_H_
#define ECHO_WORKLOAD_H_

namespace echo {

// Registers "echo" in moonpool::chaos::WorkloadRegistry::Global().
void RegisterEchoWorkload();

}  // namespace echo

#endif  // ECHO_WORKLOAD_H_
