#include "server/store/model_files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/store/file_io.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;

constexpr char kSuffix[] = ".pt";
constexpr char kTemporaryPrefix[] = "upload-";
constexpr char kTemporarySuffix[] = ".tmp";

}  // namespace

struct ModelUpload::Hasher {
  Hasher() : context(EVP_MD_CTX_new()) { EVP_DigestInit_ex(context, EVP_sha256(), nullptr); }
  ~Hasher() { EVP_MD_CTX_free(context); }
  void Update(absl::string_view bytes) { EVP_DigestUpdate(context, bytes.data(), bytes.size()); }
  std::string HexDigest() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest;
    unsigned int length = 0;
    EVP_DigestFinal_ex(context, digest.data(), &length);
    return absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(digest.data()), length));
  }
  EVP_MD_CTX* context;
};

bool IsSha256Hex(absl::string_view text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

absl::StatusOr<std::unique_ptr<ModelUpload>> ModelFiles::BeginUpload() const {
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create the models folder ", dir_, ": ", error.message()));
  }
  std::string temporary =
      (fs::path(dir_) / absl::StrCat(kTemporaryPrefix, "XXXXXX", kTemporarySuffix)).string();
  const int fd =
      mkostemps(temporary.data(), static_cast<int>(std::strlen(kTemporarySuffix)), O_CLOEXEC);
  if (fd < 0) return FileError("create", temporary);
  return std::unique_ptr<ModelUpload>(new ModelUpload(dir_, temporary, fd));
}

absl::StatusOr<std::string> ModelFiles::PathOf(absl::string_view digest) const {
  if (!IsSha256Hex(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", digest, "\" is not a sha256 in hex (64 of 0-9 and a-f)"));
  }
  return (fs::path(dir_) / absl::StrCat(digest, kSuffix)).string();
}

std::vector<std::string> ModelFiles::Digests() const {
  std::vector<std::string> digests;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, error)) {
    const std::string name = entry.path().filename().string();
    if (!absl::EndsWith(name, kSuffix)) continue;
    const std::string digest = name.substr(0, name.size() - std::string(kSuffix).size());
    if (IsSha256Hex(digest)) digests.push_back(digest);
  }
  std::sort(digests.begin(), digests.end());
  return digests;
}

absl::Status ModelFiles::Verify(absl::string_view digest) const {
  absl::StatusOr<std::string> path = PathOf(digest);
  if (!path.ok()) return path.status();
  const int fd = open(path->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no model file ", *path));
    return FileError("open", *path);
  }
  ModelUpload::Hasher hasher;
  std::array<char, 1 << 16> buffer;
  while (true) {
    const ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const absl::Status status = FileError("read", *path);
      close(fd);
      return status;
    }
    if (n == 0) break;
    hasher.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
  }
  close(fd);
  if (const std::string actual = hasher.HexDigest(); actual != digest) {
    return absl::DataLossError(
        absl::StrCat("model file ", *path, " is damaged: its sha256 is ", actual));
  }
  return absl::OkStatus();
}

absl::Status ModelFiles::Remove(absl::string_view digest) const {
  absl::StatusOr<std::string> path = PathOf(digest);
  if (!path.ok()) return path.status();
  if (unlink(path->c_str()) != 0 && errno != ENOENT) return FileError("remove", *path);
  return SyncFolder(dir_);
}

void ModelFiles::RemoveLeftovers() const {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, error)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, kTemporaryPrefix)) fs::remove(entry.path(), error);
  }
}

ModelUpload::ModelUpload(std::string dir, std::string temporary_path, int fd)
    : dir_(std::move(dir)),
      temporary_path_(std::move(temporary_path)),
      fd_(fd),
      hasher_(std::make_unique<Hasher>()) {}

ModelUpload::~ModelUpload() {
  if (fd_ >= 0) close(fd_);
  if (!kept_) unlink(temporary_path_.c_str());
}

absl::Status ModelUpload::Append(absl::string_view bytes) {
  if (fd_ < 0) return absl::FailedPreconditionError("the upload is finished");
  for (size_t written = 0; written < bytes.size();) {
    const ssize_t n = write(fd_, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FileError("write", temporary_path_);
    written += static_cast<size_t>(n);
  }
  hasher_->Update(bytes);
  size_ += static_cast<int64_t>(bytes.size());
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModelUpload::Finish() {
  if (fd_ < 0) return absl::FailedPreconditionError("the upload is finished");
  const int fd = fd_;
  fd_ = -1;
  if (fsync(fd) != 0) {
    const absl::Status status = FileError("sync", temporary_path_);
    close(fd);
    return status;
  }
  if (close(fd) != 0) return FileError("close", temporary_path_);
  digest_ = hasher_->HexDigest();
  return digest_;
}

absl::StatusOr<std::string> ModelUpload::Keep() {
  if (digest_.empty()) return absl::FailedPreconditionError("the upload is not finished");
  const std::string path = (fs::path(dir_) / absl::StrCat(digest_, kSuffix)).string();
  if (rename(temporary_path_.c_str(), path.c_str()) != 0)
    return FileError("rename", temporary_path_);
  kept_ = true;
  if (absl::Status synced = SyncFolder(dir_); !synced.ok()) return synced;
  return path;
}

}  // namespace gradlab
