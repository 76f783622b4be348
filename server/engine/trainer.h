// Trains one experiment: builds the model from the seed, runs SGD over the dataset for
// the spec's epochs, evaluates after each, and reports epoch metrics, batch progress and
// gradient snapshots to a sink. Knows nothing of gRPC, queues or storage. Includes no
// LibTorch: the layers above run experiments through this header alone and compile
// without it (docs/PERFORMANCE.md, "Building").
#ifndef GRADLAB_SERVER_ENGINE_TRAINER_H_
#define GRADLAB_SERVER_ENGINE_TRAINER_H_

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/experiment_spec.h"
#include "server/engine/checkpoint.h"
#include "server/engine/dataset_request.h"
#include "server/engine/model_options.h"
#include "server/engine/process_group.h"
#include "server/engine/training_events.h"

namespace gradlab {

class GradientAverager;  // server/engine/data_parallel.h

struct TrainingControl {
  // Set from any thread to stop the run; checked before every batch, so the run stops
  // within one batch and returns CANCELLED.
  const std::atomic<bool>* stop_requested = nullptr;
  // Times epochs and paces batch progress; tests inject a fake.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  absl::Duration progress_interval = absl::Milliseconds(500);
  // Called at the end of every epoch, after its evaluation and before the sink hears of
  // its metrics, with all the run needs to go on from the next epoch. An error ends the
  // run with that error. Unset: no checkpoints.
  std::function<absl::Status(const TrainingCheckpoint&)> save_checkpoint;
  // Set: the run goes on after this checkpoint's epoch (one that save_checkpoint was given
  // by a run of the same spec) instead of starting at epoch 1, and its epochs are bit for
  // bit those of a run that never stopped (same thread count).
  const std::string* resume_from = nullptr;
  // Conv models train on channels-last (NHWC) tensors, which oneDNN convolves faster
  // (docs/PERFORMANCE.md); false keeps PyTorch's default NCHW. Results agree within
  // float rounding; checkpoints are the same either way.
  bool channels_last = true;
  // The next training batch is prepared on a background thread while the current one
  // trains (server/engine/batch_prefetcher.h); false prepares it in line. Results are the
  // same either way.
  bool prefetch_batches = true;
  // Set: this run is one rank of a data-parallel group (server/engine/data_parallel.h),
  // and every rank runs Train with the same spec and dataset. Each trains on its shard of
  // every batch (ShardOfBatch of the epoch's permutation, which is the same on all ranks)
  // and evaluates its share of the test split; gradients are averaged between backward
  // and the optimizer step, and the epoch's scores are summed, so every rank computes the
  // metrics one process would. Only rank 0 tells the sink and saves checkpoints.
  // stop_requested is voted on in every step's all-reduce (and every evaluation batch):
  // all ranks stop in the same step, CANCELLED where it was requested and UNAVAILABLE
  // ("N ranks of the group stopped ...") on the others. Equal to
  // a run without it up to the order of floating-point sums, when the model has no
  // BatchNorm (each rank normalises over its own shard, as DistributedDataParallel does)
  // and augment is off (each rank draws its own crops and flips). A failed collective ends
  // the run with UNAVAILABLE.
  GradientAverager* data_parallel = nullptr;
  // An uploaded model's TorchScript file (spec.model "uploaded:<id>"); each run loads its
  // own copy of the module from it, starting from the weights it was saved with.
  std::string model_file;
};

// The model `spec` (as returned by ResolveSpec) trains on `dataset`: its shape, its number
// of classes and the spec's architecture knobs (an uploaded model's file is not in the spec:
// see TrainingControl::model_file).
ModelOptions ModelOptionsFor(const ExperimentSpec& spec, const Dataset& dataset);

// Runs `spec` (as returned by ResolveSpec) on `dataset` on the calling thread, with
// spec.threads intra-op threads (0: UsableCpus()). spec.precision "bf16" runs the forward
// pass under CPU autocast to bfloat16; the loss, weights, gradients and the optimizer
// stay fp32. Returns OK after the last epoch,
// CANCELLED when stopped, or the error that ended it; never throws. The same spec, seed
// and thread count give identical metrics, run after run. Thread-safe: several runs may
// go on at once on different threads, but LibTorch's intra-op thread count is
// process-wide, so concurrent runs must use the same spec.threads.
absl::Status Train(const ExperimentSpec& spec, const Dataset& dataset,
                   const TrainingControl& control, TrainingEventSink& sink);

// One rank of a data-parallel run: joins the process group `group` describes, gives every
// rank rank 0's control.resume_from (the others' is ignored), so that all go on from the
// same checkpoint, then runs Train with control.data_parallel set to the group. Every rank
// calls it with the same spec and dataset. `traffic`, when set, receives what the
// gradient all-reduces cost this rank.
absl::Status TrainRank(const ExperimentSpec& spec, const Dataset& dataset,
                       const ProcessGroupOptions& group, TrainingControl control,
                       TrainingEventSink& sink,
                       GradientTraffic* traffic = nullptr);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TRAINER_H_
