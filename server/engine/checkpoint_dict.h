// The layout of a checkpoint's dict, shared by the trainer (which writes and reads whole
// checkpoints) and checkpoint.cc. Internal to the engine.
#ifndef GRADLAB_SERVER_ENGINE_CHECKPOINT_DICT_H_
#define GRADLAB_SERVER_ENGINE_CHECKPOINT_DICT_H_

#include <torch/torch.h>

#include <string>

#include "absl/strings/string_view.h"
#include "server/engine/training_events.h"

namespace gradlab {

using CheckpointDict = c10::Dict<std::string, at::Tensor>;

// "model." + each state_dict key: the model's parameters and buffers.
inline constexpr char kModelPrefix[] = "model.";
// float64[9]: the epoch's EpochMetrics, in declaration order.
inline constexpr char kMetricsKey[] = "gradlab.metrics";
// int64[2]: the epoch the checkpoint ends, and the optimizer steps taken so far.
inline constexpr char kProgressKey[] = "gradlab.progress";
// uint8: the optimizer, as torch::serialize::OutputArchive writes it.
inline constexpr char kOptimizerKey[] = "gradlab.optimizer";
// uint8: the data generator's state (Generator::get_state).
inline constexpr char kDataGeneratorKey[] = "gradlab.data_generator";

// Throw c10::Error on bad input; callers catch at the engine's boundary.
CheckpointDict UnpickleCheckpoint(absl::string_view state);
std::string PickleCheckpoint(const CheckpointDict& dict);
torch::Tensor MetricsToTensor(const EpochMetrics& metrics);
EpochMetrics MetricsFromTensor(const torch::Tensor& tensor);
torch::Tensor BytesToTensor(absl::string_view bytes);
std::string TensorToBytes(const torch::Tensor& tensor);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_CHECKPOINT_DICT_H_
