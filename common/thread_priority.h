// Lowering the priority of training threads, so that serving preempts them.
#ifndef GRADLAB_COMMON_THREAD_PRIORITY_H_
#define GRADLAB_COMMON_THREAD_PRIORITY_H_

#include "absl/status/status.h"

namespace gradlab {

// Adds `niceness` to the calling thread's nice value (Linux keeps one per thread, and the
// threads it starts afterwards, OpenMP's included, inherit it). 0 does nothing.
absl::Status LowerThisThreadsPriority(int niceness);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_THREAD_PRIORITY_H_
