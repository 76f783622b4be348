#include "server/engine/torchscript_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/str_join.h"
#include "server/engine/testing/torchscript_fixtures.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

// make_torchscript_fixtures.py's Input(): sin of 0, 1, 2, ...
torch::Tensor StepInput() {
  return torch::arange(4 * 3 * 32 * 32, torch::kFloat32).sin().reshape({4, 3, 32, 32});
}

// The scripted module as a classifier: its state_dict's keys and order, and one SGD step
// through the mirror's parameters equal to the same step in PyTorch, bit for bit (the same
// LibTorch runs the same graph).
TEST(TorchScriptModelTest, TrainsThroughItsOwnTensorsAsPyTorchDoes) {
  absl::StatusOr<std::shared_ptr<ClassifierImpl>> model =
      LoadTorchScriptModel(TorchScriptFixture("good.pt"));
  ASSERT_TRUE(model.ok()) << model.status();
  std::ifstream reference_file(TorchScriptFixture("good_step.txt"));
  std::string keys, loss_text, sum_text;
  ASSERT_TRUE(std::getline(reference_file, keys) && std::getline(reference_file, loss_text) &&
              std::getline(reference_file, sum_text));

  std::vector<std::string> names;
  for (const auto& [name, tensor] : StateDict(**model)) names.push_back(name);
  EXPECT_EQ(absl::StrJoin(names, ","), keys);

  (*model)->eval();
  torch::optim::SGD optimizer((*model)->parameters(), torch::optim::SGDOptions(0.1));
  torch::Tensor loss =
      torch::nn::functional::cross_entropy((*model)->forward(StepInput()), torch::arange(4));
  loss.backward();
  optimizer.step();
  EXPECT_EQ(loss.item<double>(), std::stod(loss_text));
  // The step moved the tensors the script reads: fc.weight as PyTorch has it after its step.
  torch::Tensor fc_weight;
  for (const auto& [name, tensor] : StateDict(**model)) {
    if (name == "fc.weight") fc_weight = tensor;
  }
  ASSERT_TRUE(fc_weight.defined());
  EXPECT_EQ(fc_weight.sum().item<double>(), std::stod(sum_text));
}

TEST(TorchScriptModelTest, TrainAndEvalReachTheScriptsBatchNorm) {
  absl::StatusOr<std::shared_ptr<ClassifierImpl>> model =
      LoadTorchScriptModel(TorchScriptFixture("good.pt"));
  ASSERT_TRUE(model.ok()) << model.status();
  torch::Tensor running_mean;
  for (const auto& [name, tensor] : StateDict(**model)) {
    if (name == "blocks.0.bn.running_mean") running_mean = tensor;
  }
  ASSERT_TRUE(running_mean.defined());
  const torch::Tensor before = running_mean.clone();
  torch::NoGradGuard no_grad;
  (*model)->eval();
  (*model)->forward(StepInput());
  EXPECT_TRUE(torch::equal(running_mean, before)) << "eval mode moved BatchNorm's statistics";
  (*model)->train();
  (*model)->forward(StepInput());
  EXPECT_FALSE(torch::equal(running_mean, before)) << "train mode left them";
}

TEST(TorchScriptModelTest, AFileThatIsNotTorchScriptIsRefused) {
  absl::StatusOr<std::shared_ptr<ClassifierImpl>> model =
      LoadTorchScriptModel(TorchScriptFixture("state_dict.pt"));
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("cannot load the TorchScript module"));
}

}  // namespace
}  // namespace gradlab
