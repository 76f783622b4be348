// A tmpfs of a given size mounted for the life of the object: a disk that fills, for
// tests of what gradlab does when there is no room. Mounting needs root (and a mount
// namespace that allows it): check mounted(), and skip saying why_not() when it is not.
#ifndef GRADLAB_TESTS_TESTING_SMALL_DISK_H_
#define GRADLAB_TESTS_TESTING_SMALL_DISK_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/testing/child_process.h"

namespace gradlab {

class SmallDisk {
 public:
  SmallDisk(const std::filesystem::path& dir, int megabytes) : dir_(dir) {
    std::filesystem::create_directories(dir);
    const CommandResult mount =
        RunCommand({"/usr/bin/mount", "-t", "tmpfs", "-o", absl::StrCat("size=", megabytes, "m"),
                    "tmpfs", dir.string()});
    mounted_ = mount.exit_code == 0;
    why_not_ = absl::StrCat("mount exited with ", mount.exit_code, ": ", mount.out);
  }
  ~SmallDisk() {
    if (mounted_) RunCommand({"/usr/bin/umount", "-l", dir_.string()});
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }
  int64_t free_bytes() const {
    return static_cast<int64_t>(std::filesystem::space(dir_).available);
  }
  // Gives the disk a new size, as an operator who makes room would.
  bool Resize(int megabytes) {
    return RunCommand({"/usr/bin/mount", "-o", absl::StrCat("remount,size=", megabytes, "m"),
                       dir_.string()})
               .exit_code == 0;
  }

 private:
  const std::filesystem::path dir_;
  bool mounted_ = false;
  std::string why_not_;
};

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_SMALL_DISK_H_
