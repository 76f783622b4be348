// What a restart makes of the experiments in the store: finished ones come back with
// their history, queued ones in their order, and those that were running go on from
// their newest checkpoint that reads back whole, or FAIL when they have been interrupted
// kMaxAttemptsWithoutProgress times in a row without finishing an epoch. Nothing here
// parses a checkpoint (LibTorch does that inside the run's next attempt, which counts),
// so that a checkpoint that crashes the process cannot keep the server from serving.
#ifndef GRADLAB_SERVER_EXPERIMENTS_CRASH_RECOVERY_H_
#define GRADLAB_SERVER_EXPERIMENTS_CRASH_RECOVERY_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/experiments/job.h"
#include "server/store/checkpoint_files.h"
#include "server/store/experiment_store.h"

namespace gradlab {

// Where an interrupted run goes on: the newest checkpoint whose seal (length and CRC)
// holds, if any.
struct ResumePoint {
  int epoch = 0;                      // 0: none; the run starts again from epoch 1
  std::vector<std::string> unusable;  // the newer checkpoints skipped, and why
};

// Reads checkpoints from disk, newest first, until one is whole; does not parse it.
ResumePoint FindResumePoint(const CheckpointFiles& files);

// A job rebuilt from the store, not yet shared.
struct RestoredJob {
  std::shared_ptr<Job> job;
  enum class Queue { kNo, kAhead, kInOrder } queue = Queue::kNo;
  // For kAhead (a run that was interrupted): the reason of its QUEUED state change.
  std::string requeue_reason;
  // Set, with kNo, for a run interrupted once too often: why it FAILS.
  std::string failure;
};

// Makes an empty job with the given identity, its log and checkpoint files.
using JobFactory = std::function<std::shared_ptr<Job>(const std::string& id, int64_t ordinal,
                                                      RunPlan plan, const std::string& request_id)>;

// Rebuilds one stored experiment: record, log and, for one that had started, where it
// goes on from (job.resume_epoch); what it logged after that checkpoint's epoch is
// dropped from `store`, to be logged again. A finished experiment's log reads its events
// from `store` when a reader asks, and counts them in `loaded_logs` (see RestoreLater).
absl::StatusOr<RestoredJob> RestoreJob(StoredExperiment experiment,
                                       const std::shared_ptr<ExperimentStore>& store,
                                       const JobFactory& make_job,
                                       const std::shared_ptr<LoadedLogs>& loaded_logs);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_CRASH_RECOVERY_H_
