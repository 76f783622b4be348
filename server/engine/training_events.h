// What a training run reports as it goes, and the sink it reports to. Plain structs: the
// gRPC layer turns them into the API's messages, tests record them.
#ifndef GRADLAB_SERVER_ENGINE_TRAINING_EVENTS_H_
#define GRADLAB_SERVER_ENGINE_TRAINING_EVENTS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace gradlab {

// One finished epoch. Train loss and accuracy are sample-weighted running averages over
// the epoch in train mode (as the reference computes them); test ones are over the whole
// test split in eval mode. Accuracies are fractions in [0, 1].
struct EpochMetrics {
  int epoch = 0;  // 1-based
  double train_loss = 0;
  double train_accuracy = 0;
  double test_loss = 0;
  double test_accuracy = 0;
  double best_test_accuracy = 0;
  double learning_rate = 0;      // the rate of the epoch's last step
  double epoch_seconds = 0;      // training and evaluation
  double images_per_second = 0;  // training images over training time
};

// What the model predicts on the test split, in eval mode: at initialisation (epoch 0,
// before the first step) and at each epoch's evaluation. Summed over a data-parallel
// run's ranks.
struct Predictions {
  int epoch = 0;  // 0: the untrained model
  std::vector<std::string> class_names;
  int64_t samples = 0;
  std::vector<int64_t> confusion;   // classes x classes, [true * classes + predicted]
  std::vector<double> mean_softmax;  // per class, over every test image
  // classes x classes, [true * classes + class]: over each true class's images.
  std::vector<double> mean_softmax_by_class;
  double test_loss = 0;
  double evaluation_seconds = 0;  // the pass over the test split
};

// Progress inside an epoch, at most about twice a second and after its last batch.
struct BatchProgress {
  int epoch = 0;
  int batch = 0;  // 1-based, batches done so far
  int batches = 0;
  double running_loss = 0;
  double running_accuracy = 0;
  double images_per_second = 0;
};

struct LayerGradient {
  std::string name;  // the parameter's state_dict key, e.g. "layer2.0.conv1.weight"
  double grad_norm = 0;
  double weight_norm = 0;
  double ratio = 0;  // grad_norm / weight_norm; 0 when the weights are all zero
};

struct LayerActivation {
  std::string name;  // the layer, e.g. "conv1" or "layer2.0.shortcut.0"
  double std = 0;    // standard deviation of its output on the snapshot's batch
};

// Gradients after backward on one batch, before the optimizer step.
struct GradientSnapshot {
  int64_t step = 0;  // 1-based optimizer step over the whole run
  int epoch = 0;
  int batch = 0;
  std::vector<LayerGradient> gradients;      // every parameter tensor, in state_dict order
  std::vector<LayerActivation> activations;  // every conv and linear layer, in order
};

// Receives a run's events on the training thread. Implementations must return quickly
// and never block on a client: the run waits for them.
class TrainingEventSink {
 public:
  virtual ~TrainingEventSink() = default;
  virtual void OnBatchProgress(const BatchProgress& progress) = 0;
  virtual void OnEpochMetrics(const EpochMetrics& metrics) = 0;
  virtual void OnGradientSnapshot(const GradientSnapshot& snapshot) = 0;
  virtual void OnPredictions(const Predictions& predictions) = 0;
};

// For runs whose events no one reads (the ranks other than 0 of a data-parallel run,
// which send none anyway).
class IgnoringSink final : public TrainingEventSink {
 public:
  void OnBatchProgress(const BatchProgress&) override {}
  void OnEpochMetrics(const EpochMetrics&) override {}
  void OnGradientSnapshot(const GradientSnapshot&) override {}
  void OnPredictions(const Predictions&) override {}
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TRAINING_EVENTS_H_
