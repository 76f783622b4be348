// Uploaded TorchScript files, content-addressed: <dir>/<sha256 in hex>.pt. The same bytes
// are one file whatever they were uploaded as, and a file's name is its own checksum.
//
// An upload streams in: its chunks go to a temporary file as they arrive, hashed on the way
// (no upload is held in memory), the file is synced, checked by the caller, then renamed
// into place and the folder synced. A crash leaves at most a temporary file, which the
// next ModelFiles removes.
#ifndef GRADLAB_SERVER_STORE_MODEL_FILES_H_
#define GRADLAB_SERVER_STORE_MODEL_FILES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

// Whether `text` is a sha256 in lower-case hex (what the files are named by).
bool IsSha256Hex(absl::string_view text);

class ModelUpload;

class ModelFiles {
 public:
  explicit ModelFiles(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }

  // A new upload, its temporary file created (and the folder, if needed).
  absl::StatusOr<std::unique_ptr<ModelUpload>> BeginUpload() const;
  // The path of the file with that digest; INVALID_ARGUMENT when `digest` is no sha256.
  absl::StatusOr<std::string> PathOf(absl::string_view digest) const;
  // The digests of the files there, sorted.
  std::vector<std::string> Digests() const;
  // Hashes the file again: DATA_LOSS when its bytes no longer give its name.
  absl::Status Verify(absl::string_view digest) const;
  absl::Status Remove(absl::string_view digest) const;
  // Removes temporary files a crash left behind.
  void RemoveLeftovers() const;

 private:
  const std::string dir_;
};

class ModelUpload {
 public:
  ~ModelUpload();  // removes the temporary file unless it was kept
  ModelUpload(const ModelUpload&) = delete;
  ModelUpload& operator=(const ModelUpload&) = delete;

  // RESOURCE_EXHAUSTED when the disk is full.
  absl::Status Append(absl::string_view bytes);
  int64_t size() const { return size_; }
  // Syncs and closes the file; its sha256 in hex. Nothing may be appended after.
  absl::StatusOr<std::string> Finish();
  // The finished file, for the check, before it is kept.
  const std::string& temporary_path() const { return temporary_path_; }
  // Renames the finished file to its digest's name and syncs the folder; the path. A file
  // of that digest already there has the same bytes, which this one replaces.
  absl::StatusOr<std::string> Keep();

 private:
  friend class ModelFiles;
  struct Hasher;
  ModelUpload(std::string dir, std::string temporary_path, int fd);

  const std::string dir_;
  const std::string temporary_path_;
  int fd_;
  int64_t size_ = 0;
  std::unique_ptr<Hasher> hasher_;
  std::string digest_;  // set by Finish
  bool kept_ = false;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_MODEL_FILES_H_
