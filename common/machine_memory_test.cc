#include "common/machine_memory.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;

class MachineMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = FreshTestDir("machine_memory");
    fs::create_directories(root_ / "proc" / "self");
    fs::create_directories(root_ / "cgroup" / "memory");
    Write("proc/meminfo", "MemTotal:       25165824 kB\nMemFree:         1000 kB\n");
    Write("proc/self/status", "Name:\tgradlabd\nVmPeak:\t  900000 kB\nVmRSS:\t  102400 kB\n");
  }
  void Write(const std::string& file, const std::string& text) {
    std::ofstream(root_ / file) << text;
  }
  MachineMemory Read() {
    return ReadMachineMemoryFrom((root_ / "proc").string(), (root_ / "cgroup").string());
  }
  fs::path root_;
};

TEST_F(MachineMemoryTest, TheMachinesMemoryWithoutACgroupLimit) {
  EXPECT_EQ(Read().limit_bytes, int64_t{24} << 30);
  EXPECT_EQ(Read().resident_bytes, int64_t{100} << 20);
  // cgroup v1 without a limit: INT64_MAX rounded down to a page.
  Write("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(Read().limit_bytes, int64_t{24} << 30);
  Write("cgroup/memory.max", "max\n");
  EXPECT_EQ(Read().limit_bytes, int64_t{24} << 30);
}

TEST_F(MachineMemoryTest, ACgroupLimitBelowTheMachinesWins) {
  Write("cgroup/memory/memory.limit_in_bytes", "4294967296\n");
  EXPECT_EQ(Read().limit_bytes, int64_t{4} << 30);
  Write("cgroup/memory.max", "2147483648\n");  // v2 is read first
  EXPECT_EQ(Read().limit_bytes, int64_t{2} << 30);
  Write("cgroup/memory.max", "107374182400\n");  // above the machine's
  EXPECT_EQ(Read().limit_bytes, int64_t{24} << 30);
}

TEST_F(MachineMemoryTest, NothingReadableIsZero) {
  fs::remove_all(root_);
  EXPECT_EQ(Read().limit_bytes, 0);
  EXPECT_EQ(Read().resident_bytes, 0);
}

}  // namespace
}  // namespace gradlab
