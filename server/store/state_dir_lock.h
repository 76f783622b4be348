// One gradlabd per state folder: an exclusive flock on `state_dir`/LOCK (as leveldb's LOCK
// file), held for as long as the object lives. The file holds the pid of the holder, so
// that a second server can say whose it is. The kernel drops the lock when the process
// ends, however it ends, so a crash never leaves a stale lock behind.
#ifndef GRADLAB_SERVER_STORE_STATE_DIR_LOCK_H_
#define GRADLAB_SERVER_STORE_STATE_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace gradlab {

class StateDirLock {
 public:
  // The lock file's name in the state folder.
  static constexpr char kFileName[] = "LOCK";

  // INVALID_ARGUMENT naming the folder and the holder's pid when another process (or
  // another store in this one) holds it; FAILED_PRECONDITION when the file cannot be
  // opened or locked at all.
  static absl::StatusOr<std::unique_ptr<StateDirLock>> Acquire(const std::string& state_dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  explicit StateDirLock(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_STATE_DIR_LOCK_H_
