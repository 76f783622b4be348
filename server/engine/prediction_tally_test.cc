#include "server/engine/prediction_tally.h"

#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(PredictionTallyTest, AModelThatAlwaysSaysOneClassFillsOneColumn) {
  PredictionTally tally(4);
  const torch::Tensor labels = torch::tensor({0, 1, 1, 2, 3, 3, 3}, torch::kInt64);
  torch::Tensor logits = torch::zeros({7, 4});
  logits.select(1, 2).fill_(5.0);  // class 2 wins for every image
  tally.Add(logits.narrow(0, 0, 3), labels.narrow(0, 0, 3));
  tally.Add(logits.narrow(0, 3, 4), labels.narrow(0, 3, 4));
  const Predictions p = tally.Finish(0, {"a", "b", "c", "d"}, 1.5);
  EXPECT_EQ(p.epoch, 0);
  EXPECT_EQ(p.samples, 7);
  EXPECT_EQ(p.test_loss, 1.5);
  EXPECT_EQ(p.confusion, (std::vector<int64_t>{0, 0, 1, 0,  //
                                               0, 0, 2, 0,  //
                                               0, 0, 1, 0,  //
                                               0, 0, 3, 0}));
  // softmax of (0, 0, 5, 0): e^5 / (3 + e^5) for class 2, 1 / (3 + e^5) for the others.
  const double high = std::exp(5.0) / (3 + std::exp(5.0));
  const double low = 1 / (3 + std::exp(5.0));
  ASSERT_EQ(p.mean_softmax.size(), 4u);
  EXPECT_NEAR(p.mean_softmax[2], high, 1e-12);
  EXPECT_NEAR(p.mean_softmax[0], low, 1e-12);
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(p.mean_softmax_by_class[t * 4 + 2], high, 1e-12);
}

TEST(PredictionTallyTest, CountsAddUpAndSoftmaxMeansSumToOne) {
  torch::manual_seed(3);
  PredictionTally tally(10);
  const torch::Tensor logits = torch::randn({500, 10});
  const torch::Tensor labels = torch::randint(0, 10, {500}, torch::kInt64);
  tally.Add(logits, labels);
  const Predictions p = tally.Finish(2, ClassNames("cifar10", 10), 0);
  EXPECT_EQ(p.class_names.front(), "airplane");
  EXPECT_EQ(std::accumulate(p.confusion.begin(), p.confusion.end(), int64_t{0}), 500);
  for (int t = 0; t < 10; ++t) {
    int64_t row = 0;
    double softmax = 0;
    for (int c = 0; c < 10; ++c) {
      row += p.confusion[t * 10 + c];
      softmax += p.mean_softmax_by_class[t * 10 + c];
    }
    EXPECT_EQ(row, labels.eq(t).sum().item<int64_t>()) << "class " << t;
    EXPECT_NEAR(softmax, 1, 1e-12);
  }
  EXPECT_NEAR(std::accumulate(p.mean_softmax.begin(), p.mean_softmax.end(), 0.0), 1, 1e-12);
  // The diagonal is the accuracy.
  int64_t correct = 0;
  for (int c = 0; c < 10; ++c) correct += p.confusion[c * 10 + c];
  EXPECT_EQ(correct, logits.argmax(1).eq(labels).sum().item<int64_t>());
}

TEST(PredictionTallyTest, ClassNamesFallBackToNumbers) {
  EXPECT_THAT(ClassNames("fashion_mnist", 10), ::testing::Contains("Ankle boot"));
  EXPECT_THAT(ClassNames("memory probe", 3),
              ::testing::ElementsAre("class 0", "class 1", "class 2"));
}

}  // namespace
}  // namespace gradlab
