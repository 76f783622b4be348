#include "server/store/state_dir_lock.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/experiment_store.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

TEST(StateDirLockTest, OneHolderAtATimeNamedByItsPidAndFreedWhenReleased) {
  const std::string dir = FreshTestDir("state_dir_lock").string();
  std::filesystem::create_directories(dir);
  absl::StatusOr<std::unique_ptr<StateDirLock>> first = StateDirLock::Acquire(dir);
  ASSERT_TRUE(first.ok()) << first.status();
  (*first)->RecordHolder();
  absl::StatusOr<std::unique_ptr<StateDirLock>> second = StateDirLock::Acquire(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("--state_dir=", dir, " is in use by another gradlabd (pid ",
                                     getpid(), ")")));
  first->reset();
  EXPECT_TRUE(StateDirLock::Acquire(dir).ok());
}

TEST(StateDirLockTest, ReadersTakeTheSameLockWithoutWritingOrCreatingTheFile) {
  const std::string dir = FreshTestDir("state_dir_lock_read").string();
  std::filesystem::create_directories(dir);
  absl::StatusOr<std::unique_ptr<StateDirLock>> none = StateDirLock::AcquireToRead(dir);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, nullptr);
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(dir) / StateDirLock::kFileName));
  absl::StatusOr<std::unique_ptr<StateDirLock>> server = StateDirLock::Acquire(dir);
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(StateDirLock::AcquireToRead(dir).status().code(), absl::StatusCode::kInvalidArgument);
  server->reset();
  absl::StatusOr<std::unique_ptr<StateDirLock>> reader = StateDirLock::AcquireToRead(dir);
  ASSERT_TRUE(reader.ok());
  EXPECT_NE(*reader, nullptr);
  EXPECT_EQ(StateDirLock::Acquire(dir).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StateDirLockTest, AStoreHoldsItsFoldersLockWhileOpen) {
  const std::string dir = FreshTestDir("state_dir_lock_store").string();
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::unique_ptr<ExperimentStore>> second = ExperimentStore::Open(dir);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kInvalidArgument);
  store->reset();
  EXPECT_TRUE(ExperimentStore::Open(dir).ok());
}

}  // namespace
}  // namespace gradlab
