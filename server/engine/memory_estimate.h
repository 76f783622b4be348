// How much memory a run takes at its peak, estimated before it is accepted, so that a
// spec that would exhaust the machine is refused instead of bringing the server down.
//
// The part that depends on the model (parameters, gradients, optimizer state, the
// activations kept for backward, the evaluation's) is measured rather than modelled: a
// probe trains one epoch of two batches of random data of the run's shape, with LibTorch's
// allocator reporting every allocation of the probe's thread, at two small batch sizes,
// and the peak is extrapolated linearly to the run's batch size (activations are linear
// in it). What LibTorch's allocator does not see (the dataset as loaded, the prefetched
// batch, the checkpoint's serialised copies, the runtime's own working memory) is added
// from the spec. bench/run_memory compares the estimate with the peak resident memory of
// real runs (docs/PERFORMANCE.md).
#ifndef GRADLAB_SERVER_ENGINE_MEMORY_ESTIMATE_H_
#define GRADLAB_SERVER_ENGINE_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/experiment_spec.h"

namespace gradlab {

struct MemoryEstimate {
  // What the run adds, at its peak, to the resident memory of the server.
  int64_t peak_bytes = 0;
  // Its parts. Training: the model, its gradients and optimizer state, the activations of
  // a batch (as one rank trains it), evaluation and the batches being prepared.
  int64_t training_bytes = 0;
  // The dataset's tensors while training, or its loading, whichever needs more.
  int64_t dataset_bytes = 0;
  // The copies a checkpoint is serialised through at the end of each epoch.
  int64_t checkpoint_bytes = 0;
};

// For a spec as ResolveSpec returns it. Thread-safe; the probe's result is cached per
// model shape, so that only the first spec of a kind pays for it (a fraction of a second
// for the largest model). INVALID_ARGUMENT when the model cannot be built for the input.
// `model_file`: an uploaded model's TorchScript file (spec.model "uploaded:<id>"), whose
// probe runs its code in this process like its training will.
absl::StatusOr<MemoryEstimate> EstimateRunMemory(const ExperimentSpec& spec,
                                                 const std::string& model_file = "");

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_MEMORY_ESTIMATE_H_
