#include "server/store/checkpoint_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/base/internal/endian.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "server/store/crc32.h"
#include "server/store/file_io.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'G', 'R', 'A', 'D', 'C', 'K', 'P', '1'};
constexpr size_t kHeaderSize = sizeof(kMagic) + 8 + 4;  // magic, length, CRC-32
constexpr char kPrefix[] = "epoch-";
constexpr char kSuffix[] = ".ckpt";
constexpr char kTemporarySuffix[] = ".tmp";

std::string Seal(absl::string_view payload) {
  std::string sealed(kMagic, sizeof(kMagic));
  char number[8];
  absl::little_endian::Store64(number, payload.size());
  sealed.append(number, 8);
  absl::little_endian::Store32(number, Crc32(payload));
  sealed.append(number, 4);
  sealed.append(payload.data(), payload.size());
  return sealed;
}

absl::StatusOr<std::string> Unseal(std::string sealed, const std::string& path) {
  auto damaged = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " is damaged: ", why));
  };
  if (sealed.size() < kHeaderSize || std::memcmp(sealed.data(), kMagic, sizeof(kMagic)) != 0) {
    return damaged("it does not start with a gradlab checkpoint header");
  }
  const uint64_t length = absl::little_endian::Load64(sealed.data() + sizeof(kMagic));
  const uint32_t crc = absl::little_endian::Load32(sealed.data() + sizeof(kMagic) + 8);
  if (length != sealed.size() - kHeaderSize) {
    return damaged(absl::StrCat("it holds ", sealed.size() - kHeaderSize, " bytes of the ", length,
                                " it should"));
  }
  sealed.erase(0, kHeaderSize);
  if (Crc32(sealed) != crc) return damaged("its checksum does not match");
  return sealed;
}

// The epoch of a checkpoint file name, or -1.
int EpochOf(const std::string& file_name) {
  absl::string_view name = file_name;
  int epoch = -1;
  if (!absl::ConsumePrefix(&name, kPrefix) || !absl::ConsumeSuffix(&name, kSuffix) ||
      !absl::SimpleAtoi(name, &epoch)) {
    return -1;
  }
  return epoch;
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 const WriteStepHook& hook) {
  auto step = [&](absl::string_view name) { return hook ? hook(name) : absl::OkStatus(); };
  const std::string temporary = path + kTemporarySuffix;
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return FileError("create", temporary);
  absl::Status status = step("created");
  for (size_t written = 0; status.ok() && written < contents.size();) {
    const ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      status = FileError("write", temporary);
    else
      written += static_cast<size_t>(n);
  }
  if (status.ok()) status = step("written");
  if (status.ok() && fsync(fd) != 0) status = FileError("sync", temporary);
  if (status.ok()) status = step("synced");
  if (close(fd) != 0 && status.ok()) status = FileError("close", temporary);
  if (status.ok()) status = step("closed");
  if (status.ok() && rename(temporary.c_str(), path.c_str()) != 0)
    status = FileError("rename", temporary);
  if (!status.ok()) {
    unlink(temporary.c_str());  // the previous file, if any, is untouched
    return status;
  }
  if (status = step("renamed"); !status.ok()) return status;
  if (status = SyncFolder(fs::path(path).parent_path().string()); !status.ok()) return status;
  return step("folder synced");
}

std::string CheckpointFiles::PathOf(int epoch) const {
  return (fs::path(dir_) / absl::StrFormat("%s%04d%s", kPrefix, epoch, kSuffix)).string();
}

absl::Status CheckpointFiles::Save(int epoch, absl::string_view state) const {
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create the checkpoint folder ", dir_, ": ", error.message()));
  }
  return WriteFileAtomically(PathOf(epoch), Seal(state), hook_);
}

std::vector<int> CheckpointFiles::Epochs() const {
  std::vector<int> epochs;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, error)) {
    const int epoch = EpochOf(entry.path().filename().string());
    if (epoch >= 0) epochs.push_back(epoch);
  }
  std::sort(epochs.rbegin(), epochs.rend());
  return epochs;
}

absl::StatusOr<std::string> CheckpointFiles::Read(int epoch) const {
  const std::string path = PathOf(epoch);
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("no checkpoint ", path));
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return FileError("read", path);
  return Unseal(std::move(contents).str(), path);
}

absl::Status CheckpointFiles::Prune(const std::set<int>& keep) const {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, error)) {
    const std::string name = entry.path().filename().string();
    const int epoch = EpochOf(name);
    if ((epoch >= 0 && keep.count(epoch) == 0) || absl::EndsWith(name, kTemporarySuffix)) {
      if (!fs::remove(entry.path(), error) || error) {
        return absl::InternalError(
            absl::StrCat("cannot remove ", entry.path().string(), ": ", error.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckpointFiles::RemoveAll() const {
  std::error_code error;
  fs::remove_all(dir_, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot remove ", dir_, ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace gradlab
