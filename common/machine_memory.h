// How much memory this process may use (the machine's, capped by a cgroup limit such as
// a container's --memory) and how much it holds now: what gradlabd's memory budget for
// training runs is made from.
#ifndef GRADLAB_COMMON_MACHINE_MEMORY_H_
#define GRADLAB_COMMON_MACHINE_MEMORY_H_

#include <cstdint>
#include <string>

namespace gradlab {

struct MachineMemory {
  // The least of the machine's memory and the cgroup's limit; 0 when neither is known.
  int64_t limit_bytes = 0;
  // This process's resident set.
  int64_t resident_bytes = 0;
};

MachineMemory ReadMachineMemory();

// The same from a /proc and a cgroup file-system root (cgroup v2 `memory.max`, or v1
// `memory/memory.limit_in_bytes`), for tests.
MachineMemory ReadMachineMemoryFrom(const std::string& proc_root, const std::string& cgroup_root);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_MACHINE_MEMORY_H_
