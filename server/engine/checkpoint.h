// What a run keeps at the end of each epoch so that it can go on exactly as if it had
// never stopped: the model's parameters and buffers, the optimizer's momentum, the
// generator that orders and augments the data, the step count, and the epoch's metrics.
// Stored as a pickled dict of tensors (the format of torch.save), which the trainer
// writes and reads; this header lets the layers above read the parts they need.
#ifndef GRADLAB_SERVER_ENGINE_CHECKPOINT_H_
#define GRADLAB_SERVER_ENGINE_CHECKPOINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/engine/training_events.h"

namespace gradlab {

struct TrainingCheckpoint {
  EpochMetrics metrics;  // of the epoch the checkpoint ends; the run goes on after it
  std::string state;     // the pickled dict
};

// The metrics of the epoch that `state` ends; an error when it is not a checkpoint.
absl::StatusOr<EpochMetrics> CheckpointMetrics(absl::string_view state);

// The model's state_dict alone, pickled so that Python's torch.load returns a dict that
// the equivalent PyTorch module's load_state_dict accepts.
absl::StatusOr<std::string> ExportStateDict(absl::string_view state);

// An uploaded model as trained: its TorchScript file `script_file`, as uploaded, with the
// parameters and buffers of the checkpoint `state`, saved as torch.jit.save saves it, so
// that Python's torch.jit.load returns the trained module.
absl::StatusOr<std::string> ExportTorchScript(const std::string& script_file,
                                              absl::string_view state);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_CHECKPOINT_H_
