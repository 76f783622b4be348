// Hands memory that the process has freed back to the system.
#ifndef GRADLAB_COMMON_FREE_MEMORY_H_
#define GRADLAB_COMMON_FREE_MEMORY_H_

namespace gradlab {

// With tcmalloc linked in (gradlabd), releases its free pages; otherwise asks glibc to
// trim its heaps. For after a burst of large allocations (a run, a memory probe), so that
// an idle server does not hold the largest run's memory.
void ReleaseFreeMemory();

}  // namespace gradlab

#endif  // GRADLAB_COMMON_FREE_MEMORY_H_
