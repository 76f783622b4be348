#include "server/experiments/sweep_aggregate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/experiment_state.h"

namespace gradlab {
namespace {

using Metric = std::function<double(const v1::EpochMetrics&)>;

// The spread of `metric` over the runs that reached `epoch` (1-based).
v1::Spread EpochSpread(const std::vector<SweepRunResults>& runs, size_t epoch,
                       const Metric& metric) {
  std::vector<double> values;
  for (const SweepRunResults& run : runs) {
    if (run.epochs.size() >= epoch) values.push_back(metric(run.epochs[epoch - 1]));
  }
  return SpreadOf(values);
}

// The index of the first or last parameter named "...weight" in the snapshot; -1 if none.
int WeightIndex(const v1::GradientSnapshot& snapshot, bool last) {
  int found = -1;
  for (int i = 0; i < snapshot.layers_size(); ++i) {
    if (!absl::EndsWith(snapshot.layers(i).name(), "weight")) continue;
    found = i;
    if (!last) break;
  }
  return found;
}

// The share of the test images predicted as each class, over `predictions` (one per run,
// all of the same classes; runs of another class count are left out).
v1::SweepPredictedClasses PredictedClassesOf(
    const std::vector<const v1::Predictions*>& predictions) {
  v1::SweepPredictedClasses classes;
  if (predictions.empty()) return classes;
  const v1::Predictions& first = *predictions.front();
  classes.set_epoch(first.epoch());
  *classes.mutable_class_names() = first.class_names();
  const int count = first.class_names_size();
  std::vector<std::vector<double>> shares(count);
  std::vector<double> top_shares;
  for (const v1::Predictions* p : predictions) {
    if (p->predicted_counts_size() != count || p->samples() <= 0) continue;
    double top = 0;
    for (int c = 0; c < count; ++c) {
      const double share =
          static_cast<double>(p->predicted_counts(c)) / static_cast<double>(p->samples());
      shares[c].push_back(share);
      top = std::max(top, share);
    }
    top_shares.push_back(top);
  }
  for (const std::vector<double>& values : shares) *classes.add_share() = SpreadOf(values);
  *classes.mutable_top_share() = SpreadOf(top_shares);
  return classes;
}

}  // namespace

v1::Spread SpreadOf(const std::vector<double>& values) {
  v1::Spread spread;
  if (values.empty()) return spread;
  const double n = static_cast<double>(values.size());
  double sum = 0;
  for (double value : values) sum += value;
  const double mean = sum / n;
  double squares = 0;
  for (double value : values) squares += (value - mean) * (value - mean);
  spread.set_count(static_cast<int>(values.size()));
  spread.set_mean(mean);
  spread.set_std(values.size() > 1 ? std::sqrt(squares / (n - 1)) : 0.0);
  spread.set_min(*std::min_element(values.begin(), values.end()));
  spread.set_max(*std::max_element(values.begin(), values.end()));
  return spread;
}

void AggregateCell(const std::vector<SweepRunResults>& runs, v1::SweepCell& cell) {
  int succeeded = 0, failed = 0, cancelled = 0;
  std::vector<double> final_test, best_test, final_loss, final_train;
  std::vector<double> first_norms, last_norms;
  size_t most_epochs = 0;
  std::vector<const v1::Predictions*> initial_predictions, final_predictions;
  for (const SweepRunResults& run : runs) {
    if (run.initial_predictions.has_value())
      initial_predictions.push_back(&*run.initial_predictions);
    if (run.state == v1::SUCCEEDED && run.latest_predictions.has_value()) {
      final_predictions.push_back(&*run.latest_predictions);
    }
    succeeded += run.state == v1::SUCCEEDED;
    failed += run.state == v1::FAILED;
    cancelled += run.state == v1::CANCELLED;
    most_epochs = std::max(most_epochs, run.epochs.size());
    if (run.state == v1::SUCCEEDED && !run.epochs.empty()) {
      const v1::EpochMetrics& last = run.epochs.back();
      final_test.push_back(last.test_accuracy());
      best_test.push_back(last.best_test_accuracy());
      final_loss.push_back(last.train_loss());
      final_train.push_back(last.train_accuracy());
    }
    if (run.step1 != nullptr) {
      if (int first = WeightIndex(*run.step1, false); first >= 0) {
        first_norms.push_back(run.step1->layers(first).grad_norm());
      }
      if (int last = WeightIndex(*run.step1, true); last >= 0) {
        last_norms.push_back(run.step1->layers(last).grad_norm());
      }
    }
  }
  cell.set_runs_succeeded(succeeded);
  cell.set_runs_failed(failed);
  cell.set_runs_cancelled(cancelled);
  *cell.mutable_final_test_accuracy() = SpreadOf(final_test);
  *cell.mutable_best_test_accuracy() = SpreadOf(best_test);
  *cell.mutable_final_train_loss() = SpreadOf(final_loss);
  *cell.mutable_final_train_accuracy() = SpreadOf(final_train);
  *cell.mutable_first_layer_step1_grad_norm() = SpreadOf(first_norms);
  *cell.mutable_last_layer_step1_grad_norm() = SpreadOf(last_norms);
  *cell.mutable_initial_predicted_classes() = PredictedClassesOf(initial_predictions);
  *cell.mutable_final_predicted_classes() = PredictedClassesOf(final_predictions);

  // Every parameter's step-1 norm, by name, in the order of the first run that has them
  // (every run of a cell has the same model).
  cell.clear_step1_gradients();
  std::vector<std::string> names;
  std::map<std::string, std::vector<double>> norms;
  // The conv and linear layers are those whose activations the snapshot records.
  std::set<std::string> layer_weights;
  for (const SweepRunResults& run : runs) {
    if (run.step1 == nullptr) continue;
    for (const v1::LayerActivation& activation : run.step1->activations()) {
      layer_weights.insert(absl::StrCat(activation.name(), ".weight"));
    }
    for (const v1::LayerGradient& layer : run.step1->layers()) {
      auto [it, added] = norms.try_emplace(layer.name());
      if (added) names.push_back(layer.name());
      it->second.push_back(layer.grad_norm());
    }
  }
  for (const std::string& name : names) {
    v1::SweepLayerGradient& layer = *cell.add_step1_gradients();
    layer.set_name(name);
    *layer.mutable_grad_norm() = SpreadOf(norms[name]);
    layer.set_layer_weight(layer_weights.count(name) > 0);
  }

  cell.clear_epochs();
  for (size_t epoch = 1; epoch <= most_epochs; ++epoch) {
    v1::SweepCellEpoch& row = *cell.add_epochs();
    row.set_epoch(static_cast<int>(epoch));
    *row.mutable_train_loss() =
        EpochSpread(runs, epoch, [](const v1::EpochMetrics& m) { return m.train_loss(); });
    *row.mutable_train_accuracy() =
        EpochSpread(runs, epoch, [](const v1::EpochMetrics& m) { return m.train_accuracy(); });
    *row.mutable_test_loss() =
        EpochSpread(runs, epoch, [](const v1::EpochMetrics& m) { return m.test_loss(); });
    *row.mutable_test_accuracy() =
        EpochSpread(runs, epoch, [](const v1::EpochMetrics& m) { return m.test_accuracy(); });
  }
}

void SummarizeSweep(bool any_started, v1::Sweep& sweep) {
  int total = 0, done = 0, succeeded = 0, cancelled = 0;
  for (const v1::SweepCell& cell : sweep.cells()) {
    total += cell.experiment_ids_size();
    succeeded += cell.runs_succeeded();
    cancelled += cell.runs_cancelled();
    done += cell.runs_succeeded() + cell.runs_failed() + cell.runs_cancelled();
  }
  sweep.set_runs_total(total);
  sweep.set_runs_done(done);
  if (done < total) {
    sweep.set_state(any_started || done > 0 ? v1::RUNNING : v1::QUEUED);
  } else if (succeeded == total) {
    sweep.set_state(v1::SUCCEEDED);
  } else {
    sweep.set_state(cancelled > 0 ? v1::CANCELLED : v1::FAILED);
  }
}

v1::Sweep SweepSummary(const v1::Sweep& sweep) {
  v1::Sweep summary = sweep;
  for (v1::SweepCell& cell : *summary.mutable_cells()) {
    cell.clear_step1_gradients();
    cell.clear_epochs();
    cell.clear_initial_predicted_classes();
    cell.clear_final_predicted_classes();
  }
  return summary;
}

}  // namespace gradlab
