#include "common/learning_rate_schedule.h"

#include <vector>

#include "gtest/gtest.h"

namespace gradlab {
namespace {

// The rates of steps first..last of epoch `epoch`.
std::vector<double> Rates(const ExperimentSpec& spec, int epoch, int64_t first, int64_t last) {
  std::vector<double> rates;
  for (int64_t step = first; step <= last; ++step) {
    rates.push_back(LearningRateAt(spec, epoch, step));
  }
  return rates;
}

TEST(LearningRateScheduleTest, ConstantWithoutASchedule) {
  ExperimentSpec spec;
  EXPECT_EQ(LearningRateAt(spec, 1, 1), 0.001);
  EXPECT_EQ(LearningRateAt(spec, 20, 7820), 0.001);
}

// The values are torch.optim.lr_scheduler's (1.13), printed by
// MultiStepLR(SGD(lr=0.1), milestones=[3, 5], gamma=0.1) stepped 7 times: each drop
// multiplies the previous rate, so the second is 0.0010000000000000002, not 0.001.
TEST(LearningRateScheduleTest, MilestonesInIterationsEqualPyTorchsMultiStepLR) {
  ExperimentSpec spec;
  spec.learning_rate = 0.1;
  spec.lr_milestones = {3, 5};
  spec.lr_milestone_unit = "iterations";
  const std::vector<double> expected = {0.1,
                                        0.1,
                                        0.1,
                                        0.010000000000000002,
                                        0.010000000000000002,
                                        0.0010000000000000002,
                                        0.0010000000000000002};
  // Steps 1..7, whatever epochs they fall in: iterations count over the whole run.
  EXPECT_EQ(Rates(spec, 1, 1, 7), expected);
  EXPECT_EQ(LearningRateAt(spec, 9, 4), 0.010000000000000002);
}

TEST(LearningRateScheduleTest, MilestonesInEpochsDropAfterThatEpoch) {
  ExperimentSpec spec;
  spec.learning_rate = 0.1;
  spec.lr_milestones = {2, 3};
  spec.lr_milestone_unit = "epochs";
  EXPECT_EQ(LearningRateAt(spec, 1, 1), 0.1);
  EXPECT_EQ(LearningRateAt(spec, 2, 800), 0.1);  // epoch 2 still trains at 0.1
  EXPECT_EQ(LearningRateAt(spec, 3, 801), 0.010000000000000002);
  EXPECT_EQ(LearningRateAt(spec, 4, 1201), 0.0010000000000000002);
  EXPECT_EQ(LearningRateAt(spec, 40, 16000), 0.0010000000000000002);
}

// StepLR(SGD(lr=0.001), step_size=2, gamma=0.5), as printed by PyTorch 1.13.
TEST(LearningRateScheduleTest, StepLrEqualsPyTorchs) {
  ExperimentSpec spec;
  spec.lr_step_size = 2;
  spec.lr_gamma = 0.5;
  std::vector<double> by_epoch;
  for (int epoch = 1; epoch <= 7; ++epoch) by_epoch.push_back(LearningRateAt(spec, epoch, epoch));
  EXPECT_EQ(by_epoch,
            (std::vector<double>{0.001, 0.001, 0.0005, 0.0005, 0.00025, 0.00025, 0.000125}));
}

TEST(LearningRateScheduleTest, WarmUpThenTheScheduleFromTheFirstStep) {
  ExperimentSpec spec;
  spec.learning_rate = 0.1;
  spec.warmup_iterations = 3;
  spec.warmup_learning_rate = 0.01;
  spec.lr_milestones = {4};
  spec.lr_milestone_unit = "iterations";
  EXPECT_EQ(Rates(spec, 1, 1, 6), (std::vector<double>{0.01, 0.01, 0.01, 0.1, 0.010000000000000002,
                                                       0.010000000000000002}));
  // Unset, the warm-up rate is a tenth of the rate.
  spec.warmup_learning_rate.reset();
  EXPECT_EQ(LearningRateAt(spec, 1, 1), 0.1 / 10);
}

}  // namespace
}  // namespace gradlab
