// What a model predicts over a split, summed batch by batch during an evaluation: the
// confusion matrix and the softmax outputs, over every image and per true class.
#ifndef GRADLAB_SERVER_ENGINE_PREDICTION_TALLY_H_
#define GRADLAB_SERVER_ENGINE_PREDICTION_TALLY_H_

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/engine/data_parallel.h"
#include "server/engine/training_events.h"

namespace gradlab {

class PredictionTally {
 public:
  explicit PredictionTally(int64_t classes);

  // `logits`: float [N, classes]; `labels`: int64 [N].
  void Add(const torch::Tensor& logits, const torch::Tensor& labels);

  // The tally over every rank's images (each rank calls it, with its own).
  absl::Status SumAcrossRanks(GradientAverager& group);

  // The tally as the event of `epoch` (0: before the first step); `class_names` as many as
  // the classes.
  Predictions Finish(int epoch, std::vector<std::string> class_names, double test_loss) const;

 private:
  const int64_t classes_;
  // float64 [2, classes * classes], one tensor for one all-reduce: row 0 the confusion
  // counts [true * classes + predicted] (exact: below 2^53), row 1 the softmax outputs
  // summed per true class [true * classes + class].
  torch::Tensor sums_;
};

// The names of `dataset`'s classes (DatasetTable), or "class 0", "class 1", ... when it
// lists none for `classes`.
std::vector<std::string> ClassNames(const std::string& dataset, int64_t classes);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_PREDICTION_TALLY_H_
