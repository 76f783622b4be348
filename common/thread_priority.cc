#include "common/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace gradlab {

absl::Status LowerThisThreadsPriority(int niceness) {
  if (niceness == 0) return absl::OkStatus();
  const pid_t thread_id = static_cast<pid_t>(syscall(SYS_gettid));
  const int current = getpriority(PRIO_PROCESS, thread_id);
  if (setpriority(PRIO_PROCESS, thread_id, current + niceness) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot lower the training threads' priority: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace gradlab
