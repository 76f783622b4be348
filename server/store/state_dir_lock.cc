#include "server/store/state_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace gradlab {
namespace {

// The pid written in the lock file; empty if there is none to read.
std::string HolderPid(int fd) {
  char buffer[32] = {};
  const ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
  int pid = 0;
  if (n <= 0 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buffer, n)), &pid)) {
    return "";
  }
  return absl::StrCat(pid);
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateDirLock>> StateDirLock::Take(const std::string& state_dir,
                                                                 int flags) {
  const std::string path = (std::filesystem::path(state_dir) / kFileName).string();
  const int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT && (flags & O_CREAT) == 0) return nullptr;
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the lock file ", path, ": ", std::strerror(errno)));
  }
  // flock locks belong to the open file, so a second Acquire in this process fails too.
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const std::string holder = HolderPid(fd);
    close(fd);
    if (error == EWOULDBLOCK) {
      return absl::InvalidArgumentError(
          absl::StrCat("--state_dir=", state_dir, " is in use by another gradlabd",
                       holder.empty() ? "" : absl::StrCat(" (pid ", holder, ")"),
                       "; give each server a state folder of its own, or stop that one first"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot lock ", path, ": ", std::strerror(error)));
  }
  return std::unique_ptr<StateDirLock>(new StateDirLock(fd));
}

absl::StatusOr<std::unique_ptr<StateDirLock>> StateDirLock::Acquire(const std::string& state_dir) {
  return Take(state_dir, O_RDWR | O_CREAT);
}

absl::StatusOr<std::unique_ptr<StateDirLock>> StateDirLock::AcquireToRead(
    const std::string& state_dir) {
  return Take(state_dir, O_RDONLY);
}

void StateDirLock::RecordHolder() {
  // Only for the message a second server gives: the lock holds without it.
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // Nothing to do: a second server then names no pid.
  }
}

StateDirLock::~StateDirLock() { close(fd_); }

}  // namespace gradlab
