// One experiment's checkpoint files: <dir>/epoch-<N>.ckpt, one per kept epoch. Each file
// is sealed (a header with the payload's length and CRC-32, so that a torn or damaged
// file is recognised) and written atomically: a temporary file, fsync, rename, fsync of
// the folder. A crash at any point leaves every earlier checkpoint intact.
#ifndef GRADLAB_SERVER_STORE_CHECKPOINT_FILES_H_
#define GRADLAB_SERVER_STORE_CHECKPOINT_FILES_H_

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

// Called after each step of an atomic write ("created", "written", "synced", "closed",
// "renamed", "folder synced"); an error stops the write there, as a failing disk or a
// crash would. For tests, and for pausing inside a write in end-to-end tests.
using WriteStepHook = std::function<absl::Status(absl::string_view step)>;

// Writes `contents` to `path` atomically (see above).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 const WriteStepHook& hook = nullptr);

class CheckpointFiles {
 public:
  explicit CheckpointFiles(std::string dir, WriteStepHook hook = nullptr)
      : dir_(std::move(dir)), hook_(std::move(hook)) {}

  const std::string& dir() const { return dir_; }

  // Seals and writes the checkpoint of `epoch`, creating the folder if needed.
  absl::Status Save(int epoch, absl::string_view state) const;
  // The epochs with a checkpoint file, newest first, without reading them.
  std::vector<int> Epochs() const;
  // The checkpoint of `epoch`, unsealed; NOT_FOUND, or DATA_LOSS when it is damaged.
  absl::StatusOr<std::string> Read(int epoch) const;
  // Removes the checkpoints of epochs not in `keep`, and leftover temporary files.
  absl::Status Prune(const std::set<int>& keep) const;
  // Removes the folder and everything in it.
  absl::Status RemoveAll() const;

  std::string PathOf(int epoch) const;

 private:
  const std::string dir_;
  const WriteStepHook hook_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_CHECKPOINT_FILES_H_
