// The check of uploads in its helper process: the real gradlabd binary in --check_model
// mode, on files scripted by Debian's PyTorch for the suite.
#include "server/models/model_checker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/engine/testing/torchscript_fixtures.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ModelCheckerTest : public ::testing::Test {
 protected:
  static std::string Fixture(const std::string& name) { return TorchScriptFixture(name); }
  // A stand-in for the helper: a shell script that does `body`.
  static std::string Script(const std::string& name, const std::string& body) {
    const fs::path path = fs::path(Fixture(name));
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(path, fs::perms::owner_all);
    return path.string();
  }
};

TEST_F(ModelCheckerTest, AGoodModuleComesBackAsItsParametersAndDatasets) {
  absl::StatusOr<v1::ModelArtifact> artifact =
      CheckModelInHelper(GRADLABD_PATH, Fixture("good.pt"), {});
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->parameters_size(), 10);
  EXPECT_EQ(artifact->parameters(0).name(), "stem.weight");
  EXPECT_THAT(artifact->parameters(0).shape(), ::testing::ElementsAre(8, 3, 3, 3));
  EXPECT_EQ(artifact->parameter_count(), 1498);
  ASSERT_GE(artifact->datasets_size(), 3);
  EXPECT_EQ(artifact->datasets(0).dataset(), "cifar10");
  EXPECT_TRUE(artifact->datasets(0).fits()) << artifact->datasets(0).reason();
}

TEST_F(ModelCheckerTest, RefusalsSayWhy) {
  EXPECT_THAT(CheckModelInHelper(GRADLABD_PATH, Fixture("from_file.pt"), {}).status().message(),
              HasSubstr("operator aten::from_file"));
  EXPECT_THAT(CheckModelInHelper(GRADLABD_PATH, Fixture("state_dict.pt"), {}).status().message(),
              HasSubstr("not a TorchScript module"));
}

TEST_F(ModelCheckerTest, AnEndlessLoopRunsOutOfCpuTime) {
  ModelCheckLimits limits;
  limits.cpu_time = absl::Seconds(3);
  absl::StatusOr<v1::ModelArtifact> looped =
      CheckModelInHelper(GRADLABD_PATH, Fixture("loop.pt"), limits);
  EXPECT_EQ(looped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(looped.status().message(), HasSubstr("more than 3s of CPU time"));
}

TEST_F(ModelCheckerTest, AnAllocationBeyondTheLimitFailsTheDatasetsNotTheServer) {
  // LibTorch checks good.pt within 1.5 GiB of address space; hog.pt's 2 GiB do not fit.
  ModelCheckLimits limits;
  limits.memory_bytes = int64_t{1536} << 20;
  absl::StatusOr<v1::ModelArtifact> hog =
      CheckModelInHelper(GRADLABD_PATH, Fixture("hog.pt"), limits);
  ASSERT_TRUE(hog.ok()) << hog.status();
  for (const v1::DatasetFit& fit : hog->datasets()) {
    EXPECT_FALSE(fit.fits()) << fit.dataset();
    EXPECT_THAT(fit.reason(), HasSubstr("can't allocate memory: you tried to allocate 2147483648"))
        << fit.dataset();
  }
}

TEST_F(ModelCheckerTest, AHelperThatCrashesOrHangsIsARefusalNotAnOutage) {
  EXPECT_THAT(CheckModelInHelper(Script("crash.sh", "kill -SEGV $$"), Fixture("good.pt"), {})
                  .status()
                  .message(),
              HasSubstr("crashed the checker (Segmentation fault)"));
  ModelCheckLimits limits;
  limits.wall_time = absl::Seconds(1);
  EXPECT_THAT(CheckModelInHelper(Script("hang.sh", "exec sleep 60"), Fixture("good.pt"), limits)
                  .status()
                  .message(),
              HasSubstr("took more than 1s"));
  EXPECT_EQ(
      CheckModelInHelper(Script("chatter.sh", "printf '\\377\\377\\377'"), Fixture("good.pt"), {})
          .status()
          .code(),
      absl::StatusCode::kInternal);
  EXPECT_EQ(CheckModelInHelper("/nonexistent/gradlabd", Fixture("good.pt"), {}).status().code(),
            absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace gradlab
