#include "server/store/model_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/testing/small_disk.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

// sha256("abc"), FIPS 180-2's first example.
constexpr char kAbcDigest[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

std::vector<std::string> FilesIn(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ModelFilesTest, AnUploadInChunksIsKeptUnderItsSha256) {
  const fs::path dir = FreshTestDir("model_files") / "models";
  ModelFiles files(dir.string());
  absl::StatusOr<std::unique_ptr<ModelUpload>> upload = files.BeginUpload();
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append("a").ok());
  ASSERT_TRUE((*upload)->Append("bc").ok());
  EXPECT_EQ((*upload)->size(), 3);
  absl::StatusOr<std::string> digest = (*upload)->Finish();
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, kAbcDigest);
  EXPECT_EQ((*upload)->Append("d").code(), absl::StatusCode::kFailedPrecondition);
  std::ifstream temporary((*upload)->temporary_path());
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(temporary), {}), "abc");

  absl::StatusOr<std::string> kept = (*upload)->Keep();
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, (dir / (std::string(kAbcDigest) + ".pt")).string());
  upload->reset();  // a kept upload leaves its file
  EXPECT_THAT(FilesIn(dir), ElementsAre(std::string(kAbcDigest) + ".pt"));
  EXPECT_THAT(files.Digests(), ElementsAre(kAbcDigest));
  EXPECT_TRUE(files.Verify(kAbcDigest).ok());
  EXPECT_EQ(*files.PathOf(kAbcDigest), *kept);

  ASSERT_TRUE(files.Remove(kAbcDigest).ok());
  EXPECT_TRUE(FilesIn(dir).empty());
  EXPECT_EQ(files.Verify(kAbcDigest).code(), absl::StatusCode::kNotFound);
}

TEST(ModelFilesTest, AnUploadNotKeptLeavesNothingAndLeftoversAreRemoved) {
  const fs::path dir = FreshTestDir("model_files") / "models";
  ModelFiles files(dir.string());
  {
    absl::StatusOr<std::unique_ptr<ModelUpload>> refused = files.BeginUpload();
    ASSERT_TRUE(refused.ok());
    ASSERT_TRUE((*refused)->Append("not a model").ok());
    ASSERT_TRUE((*refused)->Finish().ok());
  }
  EXPECT_TRUE(FilesIn(dir).empty());
  // What a crash mid-upload leaves.
  std::ofstream(dir / "upload-abc123.tmp") << "half";
  files.RemoveLeftovers();
  EXPECT_TRUE(FilesIn(dir).empty());
}

TEST(ModelFilesTest, ADamagedFileAndANameThatIsNoDigestAreRefused) {
  const fs::path dir = FreshTestDir("model_files") / "models";
  ModelFiles files(dir.string());
  absl::StatusOr<std::unique_ptr<ModelUpload>> upload = files.BeginUpload();
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Append("abc").ok());
  ASSERT_TRUE((*upload)->Finish().ok());
  ASSERT_TRUE((*upload)->Keep().ok());
  std::ofstream(*files.PathOf(kAbcDigest), std::ios::binary | std::ios::trunc) << "abd";
  absl::Status damaged = files.Verify(kAbcDigest);
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(damaged.message(), HasSubstr("is damaged"));
  for (const char* name : {"../../etc/passwd", "ABC", "", std::string(64, 'g').c_str()}) {
    EXPECT_EQ(files.PathOf(name).status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

TEST(ModelFilesTest, AFullDiskIsResourceExhaustedAndLeavesNoFile) {
  const fs::path dir = FreshTestDir("model_files") / "small";
  SmallDisk disk(dir, 1);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root";
  ModelFiles files((dir / "models").string());
  {
    absl::StatusOr<std::unique_ptr<ModelUpload>> upload = files.BeginUpload();
    ASSERT_TRUE(upload.ok()) << upload.status();
    const std::string chunk(256 << 10, 'x');
    absl::Status status;
    for (int i = 0; i < 8 && status.ok(); ++i) status = (*upload)->Append(chunk);
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  }
  EXPECT_TRUE(FilesIn(dir / "models").empty());
}

}  // namespace
}  // namespace gradlab
