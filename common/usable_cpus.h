// How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU
// quota (a container's --cpus), so that thread pools are not oversubscribed.
#ifndef GRADLAB_COMMON_USABLE_CPUS_H_
#define GRADLAB_COMMON_USABLE_CPUS_H_

#include <string>

namespace gradlab {

// The CPUs this process may use; at least 1.
int UsableCpus();

// The same, from an affinity count and a cgroup file-system root (cgroup v2 `cpu.max`,
// or v1 `cpu/cpu.cfs_quota_us` and `cpu/cpu.cfs_period_us`); a quota rounds up.
int UsableCpusFrom(int affinity_cpus, const std::string& cgroup_root);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_USABLE_CPUS_H_
