#include "server/store/checkpoint_files.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class CheckpointFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("gradlab_checkpoints");
  }
  fs::path dir_;
};

TEST_F(CheckpointFilesTest, SavesReadsListsAndPrunes) {
  CheckpointFiles files(dir_.string());
  EXPECT_TRUE(files.Epochs().empty());  // no folder yet
  for (int epoch : {1, 2, 3, 10}) {
    ASSERT_TRUE(files.Save(epoch, "state of epoch " + std::to_string(epoch)).ok());
  }
  EXPECT_THAT(files.Epochs(), ElementsAre(10, 3, 2, 1));
  EXPECT_EQ(*files.Read(3), "state of epoch 3");
  EXPECT_EQ(files.Read(4).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(files.Prune({10, 2}).ok());
  EXPECT_THAT(files.Epochs(), ElementsAre(10, 2));
  ASSERT_TRUE(files.RemoveAll().ok());
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(CheckpointFilesTest, EmptyAndLargeStatesRoundTrip) {
  CheckpointFiles files(dir_.string());
  std::string large(3 << 20, '\0');
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 7919);
  ASSERT_TRUE(files.Save(1, "").ok());
  ASSERT_TRUE(files.Save(2, large).ok());
  EXPECT_EQ(*files.Read(1), "");
  EXPECT_EQ(*files.Read(2), large);
}

TEST_F(CheckpointFilesTest, DamagedFilesAreRecognised) {
  CheckpointFiles files(dir_.string());
  ASSERT_TRUE(files.Save(1, std::string(1000, 'x')).ok());
  const std::string path = files.PathOf(1);
  {  // one flipped byte in the payload
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(500);
    file.put('y');
  }
  absl::StatusOr<std::string> flipped = files.Read(1);
  EXPECT_EQ(flipped.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(flipped.status().message()), HasSubstr("checksum does not match"));
  fs::resize_file(path, 600);  // torn
  EXPECT_THAT(std::string(files.Read(1).status().message()),
              HasSubstr("holds 580 bytes of the 1000"));
  std::ofstream(path, std::ios::trunc) << "garbage";
  EXPECT_THAT(std::string(files.Read(1).status().message()),
              HasSubstr("does not start with a gradlab checkpoint header"));
}

// A failure (or a crash) after any step of a write leaves the previous checkpoint of the
// same epoch, or of earlier ones, readable; a later Prune clears what it left behind.
TEST_F(CheckpointFilesTest, AFailureAtAnyStepOfAWriteKeepsThePreviousCheckpoint) {
  const std::vector<std::string> steps = {"created", "written", "synced",
                                          "closed",  "renamed", "folder synced"};
  for (size_t failing = 0; failing < steps.size(); ++failing) {
    SCOPED_TRACE("failing after " + steps[failing]);
    fs::remove_all(dir_);
    ASSERT_TRUE(CheckpointFiles(dir_.string()).Save(1, "epoch one").ok());
    std::vector<std::string> seen;
    CheckpointFiles failing_files(dir_.string(), [&](absl::string_view step) {
      seen.emplace_back(step);
      return step == steps[failing] ? absl::InternalError("injected") : absl::OkStatus();
    });
    EXPECT_EQ(failing_files.Save(2, "epoch two").code(), absl::StatusCode::kInternal);
    EXPECT_EQ(seen.size(), failing + 1);
    // Either epoch 2 was complete (it was renamed into place) or it is absent.
    CheckpointFiles files(dir_.string());
    EXPECT_EQ(*files.Read(1), "epoch one");
    const bool renamed = failing >= 4;
    EXPECT_EQ(files.Epochs().front(), renamed ? 2 : 1);
    if (renamed) {
      EXPECT_EQ(*files.Read(2), "epoch two");
    }
    // The same epoch again replaces the file only when the write completes.
    CheckpointFiles failing_again(dir_.string(), [&](absl::string_view step) {
      return step == steps[failing] ? absl::InternalError("injected") : absl::OkStatus();
    });
    EXPECT_FALSE(failing_again.Save(1, "epoch one, rewritten").ok());
    EXPECT_EQ(*files.Read(1), renamed ? "epoch one, rewritten" : "epoch one");
  }
}

TEST_F(CheckpointFilesTest, PruneRemovesTemporaryFilesLeftByACrash) {
  CheckpointFiles files(dir_.string());
  ASSERT_TRUE(files.Save(1, "one").ok());
  std::ofstream(files.PathOf(2) + ".tmp") << "half a checkpoint";
  EXPECT_THAT(files.Epochs(), ElementsAre(1));
  ASSERT_TRUE(files.Prune({1}).ok());
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(CheckpointFilesTest, AnUnwritableFolderGivesAClearError) {
  fs::create_directories(dir_.parent_path());
  std::ofstream(dir_) << "a file where the folder should be";
  const absl::Status status = CheckpointFiles(dir_.string()).Save(1, "x");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(dir_.string()));
  fs::remove(dir_);
}

}  // namespace
}  // namespace gradlab
