// The registry of uploaded models over a real store, real files and the real helper.
#include "server/models/model_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/sha256.h"
#include "server/engine/testing/torchscript_fixtures.h"
#include "tests/testing/file_bytes.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ModelRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("model_registry");
    Reopen();
  }
  void Reopen() {
    registry_.reset();
    store_.reset();
    absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ModelRegistryOptions options;
    options.helper = GRADLABD_PATH;
    options.max_model_bytes = 1 << 20;
    options.experiments_using = [this](const std::string& id) {
      return id == in_use_ ? std::vector<std::string>{"exp12345"} : std::vector<std::string>{};
    };
    absl::StatusOr<std::unique_ptr<ModelRegistry>> registry = ModelRegistry::Open(*store_, options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }
  // Uploads `bytes` in chunks of 1000 under `name`, the header saying `sha256`.
  absl::StatusOr<v1::ModelArtifact> Upload(const std::string& bytes, const std::string& name,
                                           const std::string& sha256) {
    v1::UploadModelHeader header;
    header.set_name(name);
    header.set_sha256(sha256);
    absl::StatusOr<std::unique_ptr<ModelUploadSession>> session = registry_->BeginUpload(header);
    if (!session.ok()) return session.status();
    for (size_t at = 0; at < bytes.size(); at += 1000) {
      if (absl::Status status = (*session)->Append(bytes.substr(at, 1000)); !status.ok()) {
        return status;
      }
    }
    return (*session)->Finish();
  }
  absl::StatusOr<v1::ModelArtifact> Upload(const std::string& fixture, const std::string& name) {
    const std::string bytes = ReadFileBytes(TorchScriptFixture(fixture));
    return Upload(bytes, name, Sha256Hex(bytes));
  }
  std::vector<std::string> ModelFilesThere() const {
    std::vector<std::string> names;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(dir_ / "models", error)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

  fs::path dir_;
  std::unique_ptr<ExperimentStore> store_;
  std::unique_ptr<ModelRegistry> registry_;
  std::string in_use_;
};

TEST_F(ModelRegistryTest, AnUploadIsCheckedKeptUnderItsDigestAndSurvivesARestart) {
  const std::string bytes = ReadFileBytes(TorchScriptFixture("good.pt"));
  absl::StatusOr<v1::ModelArtifact> artifact = Upload("good.pt", "mynet");
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->id(), Sha256Hex(bytes));
  EXPECT_EQ(artifact->name(), "mynet");
  EXPECT_EQ(artifact->size_bytes(), static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(artifact->parameter_count(), 1498);
  EXPECT_TRUE(artifact->has_created_time());
  EXPECT_EQ(ReadFileBytes(*registry_->FileOf(artifact->id())), bytes);

  Reopen();
  absl::StatusOr<v1::ModelArtifact> by_name = registry_->Get("mynet");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(by_name->SerializeAsString(), artifact->SerializeAsString());
  EXPECT_EQ(registry_->Get(artifact->id())->name(), "mynet");

  // The same bytes again under another name: the same artifact, renamed, not checked again.
  absl::StatusOr<v1::ModelArtifact> again = Upload("good.pt", "mynet-v2");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), artifact->id());
  ASSERT_EQ(registry_->List().size(), 1u);
  EXPECT_EQ(registry_->List()[0].name(), "mynet-v2");
  EXPECT_EQ(ModelFilesThere().size(), 1u);
}

TEST_F(ModelRegistryTest, BadUploadsAreRefusedAndKeepNothing) {
  const std::string bytes = ReadFileBytes(TorchScriptFixture("good.pt"));
  EXPECT_THAT(Upload(bytes, "net", std::string(64, '0')).status().message(),
              HasSubstr("bytes received have sha256 " + Sha256Hex(bytes) + ", not the 000"));
  EXPECT_THAT(Upload(bytes.substr(0, bytes.size() / 2), "net", Sha256Hex(bytes)).status().message(),
              HasSubstr("the upload was cut short"));
  EXPECT_THAT(Upload(bytes, "net", "abc").status().message(), HasSubstr("sha256 \"abc\""));
  EXPECT_THAT(Upload(bytes, "../net", Sha256Hex(bytes)).status().message(),
              HasSubstr("a model's name is 1 to 64 letters"));
  EXPECT_THAT(Upload(bytes, Sha256Hex(bytes), Sha256Hex(bytes)).status().message(),
              HasSubstr("looks like a model's id"));
  EXPECT_THAT(Upload("", "net", Sha256Hex("")).status().message(), HasSubstr("no bytes"));
  EXPECT_EQ(Upload(std::string(2 << 20, 'x'), "big", std::string(64, '1')).status().code(),
            absl::StatusCode::kResourceExhausted);
  absl::StatusOr<v1::ModelArtifact> forbidden = Upload("from_file.pt", "thief");
  EXPECT_EQ(forbidden.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(forbidden.status().message(), HasSubstr("aten::from_file"));
  EXPECT_TRUE(registry_->List().empty());
  EXPECT_TRUE(ModelFilesThere().empty());
}

TEST_F(ModelRegistryTest, AModelInUseIsNotDeleted) {
  absl::StatusOr<v1::ModelArtifact> artifact = Upload("good.pt", "mynet");
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  in_use_ = artifact->id();
  absl::Status refused = registry_->Delete("mynet");
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("is trained by 1 experiment (exp12345)"));
  in_use_.clear();
  ASSERT_TRUE(registry_->Delete("mynet").ok());
  EXPECT_EQ(registry_->Get("mynet").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ModelFilesThere().empty());
  Reopen();
  EXPECT_TRUE(registry_->List().empty());
}

}  // namespace
}  // namespace gradlab
