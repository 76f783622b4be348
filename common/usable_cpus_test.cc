#include "common/usable_cpus.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace gradlab {
namespace {

class UsableCpusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "cpu");
  }
  void Write(const std::string& relative, const std::string& text) {
    std::ofstream(root_ / relative) << text;
  }
  std::filesystem::path root_;
};

TEST_F(UsableCpusTest, NoCgroupFilesMeansAffinity) {
  EXPECT_EQ(UsableCpusFrom(8, root_.string()), 8);
}

TEST_F(UsableCpusTest, CgroupV2QuotaCapsAndRoundsUp) {
  Write("cpu.max", "150000 100000\n");
  EXPECT_EQ(UsableCpusFrom(8, root_.string()), 2);
  Write("cpu.max", "max 100000\n");
  EXPECT_EQ(UsableCpusFrom(8, root_.string()), 8);
}

TEST_F(UsableCpusTest, CgroupV1Quota) {
  Write("cpu/cpu.cfs_quota_us", "300000");
  Write("cpu/cpu.cfs_period_us", "100000");
  EXPECT_EQ(UsableCpusFrom(8, root_.string()), 3);
  Write("cpu/cpu.cfs_quota_us", "-1");
  EXPECT_EQ(UsableCpusFrom(8, root_.string()), 8);
}

TEST_F(UsableCpusTest, QuotaAboveAffinityKeepsAffinity) {
  Write("cpu.max", "800000 100000");
  EXPECT_EQ(UsableCpusFrom(2, root_.string()), 2);
}

TEST_F(UsableCpusTest, MalformedFileIsIgnoredAndResultIsAtLeastOne) {
  Write("cpu.max", "garbage 100000");
  EXPECT_EQ(UsableCpusFrom(0, root_.string()), 1);
  EXPECT_GE(UsableCpus(), 1);
}

}  // namespace
}  // namespace gradlab
