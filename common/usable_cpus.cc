#include "common/usable_cpus.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <thread>

namespace gradlab {
namespace {

// The quota in CPUs (rounded up), or 0 when there is none or it cannot be read.
int CgroupQuotaCpus(const std::string& cgroup_root) {
  long long quota = -1;
  long long period = 0;
  std::ifstream v2(cgroup_root + "/cpu.max");
  if (v2) {
    std::string quota_text;
    if (v2 >> quota_text >> period && quota_text != "max") quota = std::stoll(quota_text);
  } else {
    std::ifstream v1_quota(cgroup_root + "/cpu/cpu.cfs_quota_us");
    std::ifstream v1_period(cgroup_root + "/cpu/cpu.cfs_period_us");
    if (!(v1_quota >> quota) || !(v1_period >> period)) return 0;
  }
  if (quota <= 0 || period <= 0) return 0;
  return static_cast<int>((quota + period - 1) / period);
}

}  // namespace

int UsableCpusFrom(int affinity_cpus, const std::string& cgroup_root) {
  int cpus = std::max(affinity_cpus, 1);
  int quota = 0;
  try {
    quota = CgroupQuotaCpus(cgroup_root);
  } catch (const std::exception&) {  // std::stoll on a malformed file
    quota = 0;
  }
  if (quota > 0) cpus = std::min(cpus, quota);
  return cpus;
}

int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int affinity = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    affinity = CPU_COUNT(&set);
  } else {
    affinity = static_cast<int>(std::thread::hardware_concurrency());
  }
  return UsableCpusFrom(affinity, "/sys/fs/cgroup");
}

}  // namespace gradlab
