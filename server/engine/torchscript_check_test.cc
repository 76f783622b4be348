#include "server/engine/torchscript_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/engine/testing/torchscript_fixtures.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

// The modules of testing/make_torchscript_fixtures.py.
class TorchScriptCheckTest : public ::testing::Test {
 protected:
  static std::string Fixture(const std::string& name) { return TorchScriptFixture(name); }
};

const DatasetFit& FitOf(const TorchScriptReport& report, const std::string& dataset) {
  for (const DatasetFit& fit : report.datasets) {
    if (fit.dataset == dataset) return fit;
  }
  ADD_FAILURE() << "no fit for " << dataset;
  static const DatasetFit kNone;
  return kNone;
}

TEST_F(TorchScriptCheckTest, AScriptedCnnListsItsParametersAndTheDatasetsItFits) {
  absl::StatusOr<TorchScriptReport> report = CheckTorchScript(Fixture("good.pt"));
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->parameters.size(), 10u);
  EXPECT_EQ(report->parameters[0].name, "stem.weight");
  EXPECT_EQ(report->parameters[0].shape, (std::vector<int64_t>{8, 3, 3, 3}));
  EXPECT_EQ(report->parameters[2].name, "blocks.0.conv.weight");
  EXPECT_EQ(report->parameters.back().name, "fc.bias");
  // stem 8*27+8, two blocks of 8*72 + 8 + 8, fc 8*10+10.
  EXPECT_EQ(report->parameter_count, 224 + 2 * 592 + 90);
  EXPECT_TRUE(FitOf(*report, "cifar10").fits) << FitOf(*report, "cifar10").reason;
  EXPECT_TRUE(FitOf(*report, "synthetic").fits);
  // 3 input channels: the 1-channel datasets fail in the first conv, and say so.
  const DatasetFit& fashion = FitOf(*report, "fashion_mnist");
  EXPECT_FALSE(fashion.fits);
  EXPECT_THAT(fashion.reason,
              HasSubstr("forward or backward failed on a batch of shape [2, 1, 28, 28]"));
}

TEST_F(TorchScriptCheckTest, AWrongNumberOfOutputsIsNamedPerDataset) {
  absl::StatusOr<TorchScriptReport> report = CheckTorchScript(Fixture("wide.pt"));
  ASSERT_TRUE(report.ok()) << report.status();
  const DatasetFit& cifar = FitOf(*report, "cifar10");
  EXPECT_FALSE(cifar.fits);
  EXPECT_THAT(cifar.reason, HasSubstr("forward returned [2, 100]; cifar10 has 10 classes"));
}

TEST_F(TorchScriptCheckTest, OperatorsThatTouchFilesOrPrintAreRefusedByName) {
  absl::StatusOr<TorchScriptReport> reads = CheckTorchScript(Fixture("from_file.pt"));
  EXPECT_EQ(reads.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reads.status().message(), HasSubstr("operator aten::from_file (in "));
  EXPECT_THAT(reads.status().message(), HasSubstr("is not allowed"));
  absl::StatusOr<TorchScriptReport> prints = CheckTorchScript(Fixture("print.pt"));
  EXPECT_EQ(prints.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prints.status().message(), HasSubstr("operator prim::Print"));
}

TEST_F(TorchScriptCheckTest, WhatIsNotATrainableTorchScriptModuleIsRefused) {
  absl::StatusOr<TorchScriptReport> pickle = CheckTorchScript(Fixture("state_dict.pt"));
  EXPECT_EQ(pickle.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pickle.status().message(), HasSubstr("not a TorchScript module"));
  EXPECT_THAT(CheckTorchScript(Fixture("archive.pt")).status().message(),
              HasSubstr("not a TorchScript module"));

  // The first half of a good file, and bytes that are no zip at all.
  std::ifstream good(Fixture("good.pt"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(good)), {});
  const std::string truncated = Fixture("truncated.pt");
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_THAT(CheckTorchScript(truncated).status().message(),
              HasSubstr("not a TorchScript module"));
  const std::string text = Fixture("text.pt");
  std::ofstream(text) << "def forward(self, x): return x\n";
  EXPECT_THAT(CheckTorchScript(text).status().message(), HasSubstr("not a TorchScript module"));
  EXPECT_THAT(CheckTorchScript(Fixture("missing.pt")).status().message(),
              HasSubstr("not a TorchScript module"));

  absl::StatusOr<TorchScriptReport> empty = CheckTorchScript(Fixture("no_params.pt"));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("no parameters"));
}

TEST(AllowedOperatorsTest, TensorOperationsYesFilesThreadsAndPrintingNo) {
  for (const char* op : {"aten::conv2d", "aten::batch_norm", "aten::relu_", "prim::If",
                         "prim::CallMethod", "aten::adaptive_avg_pool2d", "aten::linear",
                         "aten::_convolution"}) {
    EXPECT_TRUE(IsAllowedOperator(op)) << op;
  }
  for (const char* op : {"aten::from_file", "aten::save", "prim::Print", "aten::wait", "prim::fork",
                         "aten::sleep", "aten::conv2"}) {
    EXPECT_FALSE(IsAllowedOperator(op)) << op;
  }
}

}  // namespace
}  // namespace gradlab
