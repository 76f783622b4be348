#include "server/experiments/sweep_aggregate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace gradlab {
namespace {

v1::EpochMetrics Epoch(int epoch, double train_loss, double test_accuracy, double best) {
  v1::EpochMetrics metrics;
  metrics.set_epoch(epoch);
  metrics.set_train_loss(train_loss);
  metrics.set_train_accuracy(1 - train_loss / 10);
  metrics.set_test_loss(train_loss + 0.1);
  metrics.set_test_accuracy(test_accuracy);
  metrics.set_best_test_accuracy(best);
  return metrics;
}

std::shared_ptr<const v1::GradientSnapshot> Step1(double first, double bias, double last) {
  auto snapshot = std::make_shared<v1::GradientSnapshot>();
  snapshot->set_step(1);
  for (auto [name, norm] :
       {std::pair{"conv1.weight", first}, std::pair{"conv1.bias", bias},
        std::pair{"bn1.weight", bias}, std::pair{"fc.weight", last}, std::pair{"fc.bias", bias}}) {
    v1::LayerGradient& layer = *snapshot->add_layers();
    layer.set_name(name);
    layer.set_grad_norm(norm);
  }
  // The conv and linear layers', as the engine records them.
  snapshot->add_activations()->set_name("conv1");
  snapshot->add_activations()->set_name("fc");
  return snapshot;
}

// Three classes over 10 test images.
v1::Predictions Predicted(int epoch, std::vector<int64_t> counts) {
  v1::Predictions predictions;
  predictions.set_epoch(epoch);
  for (const char* name : {"cat", "dog", "fish"}) predictions.add_class_names(name);
  predictions.set_samples(10);
  for (int64_t count : counts) predictions.add_predicted_counts(count);
  return predictions;
}

TEST(SpreadOfTest, GivesTheSampleStandardDeviation) {
  const v1::Spread spread = SpreadOf({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_EQ(spread.count(), 8);
  EXPECT_DOUBLE_EQ(spread.mean(), 5);
  EXPECT_DOUBLE_EQ(spread.std(), std::sqrt(32.0 / 7));  // n - 1, as pandas and numpy ddof=1
  EXPECT_EQ(spread.min(), 2);
  EXPECT_EQ(spread.max(), 9);
}

TEST(SpreadOfTest, OneValueHasNoSpreadAndNoneIsAllZero) {
  const v1::Spread one = SpreadOf({0.7});
  EXPECT_EQ(one.count(), 1);
  EXPECT_EQ(one.mean(), 0.7);
  EXPECT_EQ(one.std(), 0);
  EXPECT_EQ(SpreadOf({}).SerializeAsString(), v1::Spread().SerializeAsString());
}

TEST(AggregateCellTest, FinalNumbersAreOverSucceededRunsAndCurvesOverEveryRun) {
  std::vector<SweepRunResults> runs(3);
  runs[0].state = v1::SUCCEEDED;
  runs[0].epochs = {Epoch(1, 2.0, 0.30, 0.30), Epoch(2, 1.0, 0.50, 0.50)};
  runs[0].step1 = Step1(0.1, 9, 1.0);
  runs[1].state = v1::SUCCEEDED;
  runs[1].epochs = {Epoch(1, 2.2, 0.40, 0.40), Epoch(2, 1.4, 0.35, 0.40)};
  runs[1].step1 = Step1(0.3, 9, 3.0);
  runs[2].state = v1::RUNNING;  // one epoch so far: in the curves, not in the finals
  runs[2].epochs = {Epoch(1, 1.8, 0.20, 0.20)};
  runs[2].step1 = Step1(0.2, 9, 2.0);

  v1::SweepCell cell;
  cell.set_description("batch_norm=true");
  AggregateCell(runs, cell);

  EXPECT_EQ(cell.description(), "batch_norm=true");
  EXPECT_EQ(cell.runs_succeeded(), 2);
  EXPECT_EQ(cell.runs_failed() + cell.runs_cancelled(), 0);
  EXPECT_EQ(cell.final_test_accuracy().count(), 2);
  EXPECT_DOUBLE_EQ(cell.final_test_accuracy().mean(), 0.425);
  EXPECT_DOUBLE_EQ(cell.best_test_accuracy().mean(), 0.45);
  EXPECT_DOUBLE_EQ(cell.final_train_loss().mean(), 1.2);
  EXPECT_DOUBLE_EQ(cell.final_train_loss().std(), std::sqrt(0.08));
  EXPECT_DOUBLE_EQ(cell.final_train_accuracy().mean(), 0.88);
  // The first and last weights, not the biases.
  EXPECT_EQ(cell.first_layer_step1_grad_norm().count(), 3);
  EXPECT_DOUBLE_EQ(cell.first_layer_step1_grad_norm().mean(), 0.2);
  EXPECT_DOUBLE_EQ(cell.last_layer_step1_grad_norm().mean(), 2.0);
  EXPECT_DOUBLE_EQ(cell.last_layer_step1_grad_norm().std(), 1.0);
  ASSERT_EQ(cell.step1_gradients_size(), 5);
  EXPECT_EQ(cell.step1_gradients(1).name(), "conv1.bias");
  EXPECT_EQ(cell.step1_gradients(3).grad_norm().max(), 3.0);
  // Only the conv and linear weights are the layers a depth chart shows.
  std::vector<bool> layer_weights;
  for (const v1::SweepLayerGradient& layer : cell.step1_gradients()) {
    layer_weights.push_back(layer.layer_weight());
  }
  EXPECT_THAT(layer_weights, ::testing::ElementsAre(true, false, false, true, false));

  ASSERT_EQ(cell.epochs_size(), 2);
  EXPECT_EQ(cell.epochs(0).epoch(), 1);
  EXPECT_EQ(cell.epochs(0).test_accuracy().count(), 3);
  EXPECT_DOUBLE_EQ(cell.epochs(0).test_accuracy().min(), 0.20);
  EXPECT_DOUBLE_EQ(cell.epochs(0).test_accuracy().max(), 0.40);
  EXPECT_DOUBLE_EQ(cell.epochs(0).train_loss().mean(), 2.0);
  EXPECT_EQ(cell.epochs(1).train_loss().count(), 2);
  EXPECT_DOUBLE_EQ(cell.epochs(1).test_loss().mean(), 1.3);
}

TEST(AggregateCellTest, FailedAndCancelledRunsAreCountedNotAveraged) {
  std::vector<SweepRunResults> runs(2);
  runs[0].state = v1::FAILED;
  runs[0].epochs = {Epoch(1, 2.3, 0.1, 0.1)};
  runs[1].state = v1::CANCELLED;
  v1::SweepCell cell;
  AggregateCell(runs, cell);
  EXPECT_EQ(cell.runs_failed(), 1);
  EXPECT_EQ(cell.runs_cancelled(), 1);
  EXPECT_EQ(cell.final_test_accuracy().count(), 0);
  EXPECT_EQ(cell.first_layer_step1_grad_norm().count(), 0);
  EXPECT_EQ(cell.epochs_size(), 1);
}

TEST(AggregateCellTest, RecomputingReplacesTheLastAggregate) {
  std::vector<SweepRunResults> runs(1);
  runs[0].state = v1::RUNNING;
  runs[0].epochs = {Epoch(1, 2.0, 0.3, 0.3)};
  runs[0].step1 = Step1(1, 1, 1);
  v1::SweepCell cell;
  AggregateCell(runs, cell);
  runs[0].epochs.push_back(Epoch(2, 1.5, 0.4, 0.4));
  AggregateCell(runs, cell);
  EXPECT_EQ(cell.epochs_size(), 2);
  EXPECT_EQ(cell.step1_gradients_size(), 5);
}

v1::Sweep TwoCells(int succeeded, int failed, int cancelled) {
  v1::Sweep sweep;
  for (int c = 0; c < 2; ++c) {
    v1::SweepCell& cell = *sweep.add_cells();
    cell.add_experiment_ids("a");
    cell.add_experiment_ids("b");
  }
  sweep.mutable_cells(0)->set_runs_succeeded(succeeded);
  sweep.mutable_cells(1)->set_runs_failed(failed);
  sweep.mutable_cells(1)->set_runs_cancelled(cancelled);
  return sweep;
}

TEST(SummarizeSweepTest, StateFollowsItsRuns) {
  v1::Sweep sweep = TwoCells(0, 0, 0);
  SummarizeSweep(false, sweep);
  EXPECT_EQ(sweep.state(), v1::QUEUED);
  EXPECT_EQ(sweep.runs_total(), 4);
  SummarizeSweep(true, sweep);
  EXPECT_EQ(sweep.state(), v1::RUNNING);

  sweep = TwoCells(2, 0, 0);
  sweep.mutable_cells(1)->set_runs_succeeded(2);
  SummarizeSweep(true, sweep);
  EXPECT_EQ(sweep.state(), v1::SUCCEEDED);
  EXPECT_EQ(sweep.runs_done(), 4);

  sweep = TwoCells(2, 1, 1);
  SummarizeSweep(true, sweep);
  EXPECT_EQ(sweep.state(), v1::CANCELLED);
  sweep = TwoCells(2, 2, 0);
  SummarizeSweep(true, sweep);
  EXPECT_EQ(sweep.state(), v1::FAILED);
}

TEST(SweepSummaryTest, LeavesOutTheCurvesAndLayers) {
  std::vector<SweepRunResults> runs(1);
  runs[0].state = v1::SUCCEEDED;
  runs[0].epochs = {Epoch(1, 2.0, 0.3, 0.3)};
  runs[0].step1 = Step1(1, 1, 1);
  v1::Sweep sweep;
  AggregateCell(runs, *sweep.add_cells());
  const v1::Sweep summary = SweepSummary(sweep);
  EXPECT_EQ(summary.cells(0).epochs_size(), 0);
  EXPECT_EQ(summary.cells(0).step1_gradients_size(), 0);
  EXPECT_FALSE(summary.cells(0).has_initial_predicted_classes());
  EXPECT_EQ(summary.cells(0).final_test_accuracy().count(), 1);
}

TEST(AggregateCellTest, PredictedClassesAreSharesAtInitialisationAndOverSucceededRunsAtTheEnd) {
  std::vector<SweepRunResults> runs(3);
  runs[0].state = v1::SUCCEEDED;
  runs[0].initial_predictions = Predicted(0, {10, 0, 0});
  runs[0].latest_predictions = Predicted(2, {4, 3, 3});
  runs[1].state = v1::SUCCEEDED;
  runs[1].initial_predictions = Predicted(0, {0, 8, 2});
  runs[1].latest_predictions = Predicted(2, {2, 5, 3});
  runs[2].state = v1::RUNNING;  // counted at initialisation, not at the end
  runs[2].initial_predictions = Predicted(0, {10, 0, 0});
  runs[2].latest_predictions = Predicted(1, {0, 0, 10});
  v1::SweepCell cell;
  AggregateCell(runs, cell);

  const v1::SweepPredictedClasses& initial = cell.initial_predicted_classes();
  EXPECT_EQ(initial.epoch(), 0);
  EXPECT_THAT(initial.class_names(), ::testing::ElementsAre("cat", "dog", "fish"));
  ASSERT_EQ(initial.share_size(), 3);
  EXPECT_EQ(initial.share(0).count(), 3);
  EXPECT_DOUBLE_EQ(initial.share(0).mean(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(initial.share(1).max(), 0.8);
  EXPECT_DOUBLE_EQ(initial.top_share().min(), 0.8);
  EXPECT_DOUBLE_EQ(initial.top_share().max(), 1.0);

  const v1::SweepPredictedClasses& last = cell.final_predicted_classes();
  EXPECT_EQ(last.epoch(), 2);
  ASSERT_EQ(last.share_size(), 3);
  EXPECT_EQ(last.share(2).count(), 2);
  EXPECT_DOUBLE_EQ(last.share(0).mean(), 0.3);
  EXPECT_DOUBLE_EQ(last.share(1).mean(), 0.4);
  EXPECT_DOUBLE_EQ(last.share(2).mean(), 0.3);
  EXPECT_DOUBLE_EQ(last.top_share().mean(), 0.45);
}

}  // namespace
}  // namespace gradlab
