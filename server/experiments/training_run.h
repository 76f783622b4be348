// The training of one job on a training slot: its dataset loaded, the engine run (alone
// or as rank 0 of a data-parallel group), its events turned into the API's messages and
// appended to its log, its checkpoints saved and pruned. What the run does to the job's
// record goes through the registry's EpochRecorder, which stores and publishes it.
#ifndef GRADLAB_SERVER_EXPERIMENTS_TRAINING_RUN_H_
#define GRADLAB_SERVER_EXPERIMENTS_TRAINING_RUN_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/experiments/job.h"
#include "server/experiments/rendezvous_options.h"

namespace gradlab {

// For tests: called at the named steps of a run, to pause or end the process there:
// "resume" before the checkpoint to go on from is read, "dataset read" after each read of
// a dataset file.
using RunStepHook = std::function<void(absl::string_view step)>;

struct TrainingRunOptions {
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  absl::Duration progress_interval = absl::Milliseconds(500);
  RendezvousOptions rendezvous;
  RunStepHook step_hook;
};

// Takes an epoch's metrics event into the job's record and log; an error stops the run.
using EpochRecorder = std::function<absl::Status(Job& job, v1::MetricsEvent epoch_event)>;

// Trains `job` until it finishes, fails or is stopped (job.stop):
// OK, CANCELLED, UNAVAILABLE for a data-parallel run that lost a rank, or the error
// that ended it (a store that cannot take its events among them). A job with a
// resume_epoch first reads that checkpoint and, when the record has not seen its epoch
// yet, records it. Its events are committed to the journal before this returns.
absl::Status TrainJob(Job& job, const TrainingRunOptions& options,
                      const EpochRecorder& record_epoch);

// Whether TrainJob's error is that the state folder had no room (a checkpoint or an event
// could not be written for lack of space): the run can go on once there is room.
bool IsOutOfStateRoom(const absl::Status& status);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_TRAINING_RUN_H_
