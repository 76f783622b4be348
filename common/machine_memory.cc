#include "common/machine_memory.h"

#include <algorithm>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace gradlab {
namespace {

// "<key>: <number> kB" from a /proc file, in bytes; 0 when absent.
int64_t ProcKilobytes(const std::string& path, absl::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, key) || !absl::ConsumePrefix(&rest, ":")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    int64_t kilobytes = 0;
    if (absl::ConsumeSuffix(&rest, " kB") && absl::SimpleAtoi(rest, &kilobytes)) {
      return kilobytes * 1024;
    }
  }
  return 0;
}

// The cgroup's memory limit in bytes; 0 when there is none (v2 "max", v1's page-rounded
// INT64_MAX) or it cannot be read.
int64_t CgroupLimit(const std::string& cgroup_root) {
  for (const std::string& file :
       {cgroup_root + "/memory.max", cgroup_root + "/memory/memory.limit_in_bytes"}) {
    std::ifstream in(file);
    std::string text;
    if (!(in >> text)) continue;
    int64_t limit = 0;
    if (!absl::SimpleAtoi(text, &limit) || limit <= 0 || limit >= (int64_t{1} << 60)) return 0;
    return limit;
  }
  return 0;
}

}  // namespace

MachineMemory ReadMachineMemoryFrom(const std::string& proc_root, const std::string& cgroup_root) {
  MachineMemory memory;
  const int64_t machine = ProcKilobytes(proc_root + "/meminfo", "MemTotal");
  const int64_t cgroup = CgroupLimit(cgroup_root);
  memory.limit_bytes =
      machine > 0 && cgroup > 0 ? std::min(machine, cgroup) : std::max(machine, cgroup);
  memory.resident_bytes = ProcKilobytes(proc_root + "/self/status", "VmRSS");
  return memory;
}

MachineMemory ReadMachineMemory() { return ReadMachineMemoryFrom("/proc", "/sys/fs/cgroup"); }

}  // namespace gradlab
