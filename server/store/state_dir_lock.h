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
  // The same lock, taken on an existing lock file without writing to it (for tools that
  // read a folder no server may be using); a folder without one has no server.
  static absl::StatusOr<std::unique_ptr<StateDirLock>> AcquireToRead(const std::string& state_dir);
  ~StateDirLock();
  // Writes this process's pid into the lock file, for the message a second server gives.
  // Separate from Acquire, so that a server that refuses its state folder changes nothing.
  void RecordHolder();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  explicit StateDirLock(int fd) : fd_(fd) {}
  // Opens the lock file with `flags` and locks it; null when O_CREAT is not in `flags` and
  // there is no file.
  static absl::StatusOr<std::unique_ptr<StateDirLock>> Take(const std::string& state_dir,
                                                            int flags);
  const int fd_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_STATE_DIR_LOCK_H_
