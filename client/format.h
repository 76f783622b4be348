// How the CLI shows things: the reference's epoch line, the progress bar, and the tables
// of experiments, gradients and model comparisons. Pure functions of the API's messages,
// so that their output is checked against golden files.
#ifndef GRADLAB_CLIENT_FORMAT_H_
#define GRADLAB_CLIENT_FORMAT_H_

#include <string>
#include <vector>

#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// "[Epoch 01] train 2.3032/10.00% | val 2.3029/10.00% (best 10.00%)", as the reference
// prints it.
std::string EpochLine(const v1::EpochMetrics& metrics);

// One line for a terminal: "[Epoch 03] [######------] 120/391 loss 1.2345 acc 45.67%
// 812 img/s ETA 42.7s"; the ETA is for the epoch's training batches.
std::string ProgressLine(const v1::BatchProgress& progress, int batch_size);

// The final line of a watch: "SUCCEEDED after 20 epochs, best test accuracy 71.23%".
std::string FinalStateLine(const v1::Experiment& experiment);

// ID, NAME, MODEL, DATASET, STATE, EPOCH, BEST, CREATED (UTC).
std::string ExperimentTable(const std::vector<v1::Experiment>& experiments);

// Every field of one experiment, one per line.
std::string ExperimentDetails(const v1::Experiment& experiment);

// Per parameter: grad norm, weight norm, ratio, the std of the layer's output (on the
// weight rows) and a bar whose length is the grad norm on a log scale spanning the
// snapshot's decades, so that vanishing gradients show at a glance.
std::string GradientTable(const v1::GradientSnapshot& snapshot);
// What the model predicts at an epoch (0: initialisation): its confusion matrix with row
// percentages, each class's share of the predictions with a bar and its mean softmax, and
// in words when one class takes over 90% of the predictions.
std::string PredictionsTable(const v1::Predictions& predictions);

// One row of the comparison table.
struct ComparisonRow {
  v1::Experiment experiment;
  double final_train_loss = 0;
  double final_test_accuracy = 0;
  double seconds = 0;            // summed epoch seconds
  double images_per_second = 0;  // mean over epochs
  // Grad norm of the first layer's weights over the last layer's at step 1; 0 if unknown.
  double first_to_last_grad_ratio = 0;
};
std::string ComparisonTable(const std::vector<ComparisonRow>& rows);

// The first conv/linear layer's weight-gradient norm over the last one's (0 if none).
double FirstToLastGradRatio(const v1::GradientSnapshot& snapshot);

// A sweep: a line for the sweep (id, name, state, runs done, seeds), then one row per
// cell: its runs done, and mean +- standard deviation over its seeds of the final and best
// test accuracy, the final train loss and the step-1 gradient norms of the first and last
// weights.
std::string SweepTable(const v1::Sweep& sweep);

// ID, NAME, STATE, RUNS (done/total), CELLS, SEEDS, CREATED (UTC).
std::string SweepListTable(const std::vector<v1::Sweep>& sweeps);

// One run's finished epochs and their predictions (one per epoch, epoch 0 first when
// the run evaluated its untrained model), for MetricsCsv and PredictionsCsv.
struct RunEpochs {
  v1::Experiment experiment;
  std::vector<v1::EpochMetrics> epochs;
  std::vector<v1::Predictions> predictions;
};

// Tidy CSV (RFC 4180): a header, then one row per run and epoch: experiment, name, sweep,
// cell, each of the sweep's axes' fields (with `sweep` given), model, dataset and seed
// (unless they are axes), epoch and its metrics. `sweep` null: runs of no sweep.
std::string MetricsCsv(const v1::Sweep* sweep, const std::vector<RunEpochs>& runs);

// Tidy CSV of the runs' predictions: the same run columns as MetricsCsv, then one row per
// run, epoch (0: the untrained model), true class and predicted class: epoch, true_class,
// true_label, predicted_class, predicted_label, count (the confusion matrix's cell) and
// mean_softmax (the softmax output for predicted_class averaged over true_class's images).
// A true class's counts sum to its test images; the predicted-class histogram is the sum of
// count over true classes, and the mean softmax over the test split is mean_softmax
// weighted by each true class's images.
std::string PredictionsCsv(const v1::Sweep* sweep, const std::vector<RunEpochs>& runs);

std::string ServerInfoText(const v1::ServerInfo& info);

// An uploaded model: its id, name, size and parameters, then each dataset it fits, and
// each it does not with why.
std::string ModelText(const v1::ModelArtifact& model);

// ID (the sha256's first 12 characters), NAME, SIZE, PARAMETERS, DATASETS (those it fits),
// UPLOADED (UTC).
std::string ModelListTable(const std::vector<v1::ModelArtifact>& models);

// "1h02m03s", "4m05s", "12.3s".
std::string Duration(double seconds);

}  // namespace gradlab

#endif  // GRADLAB_CLIENT_FORMAT_H_
