// What a restart makes of the experiments in the store: finished ones come back with
// their history, queued ones in their order, and those that were running go on from
// their newest checkpoint that reads back whole.
#ifndef GRADLAB_SERVER_EXPERIMENTS_CRASH_RECOVERY_H_
#define GRADLAB_SERVER_EXPERIMENTS_CRASH_RECOVERY_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/engine/training_events.h"
#include "server/experiments/job.h"
#include "server/store/checkpoint_files.h"
#include "server/store/experiment_store.h"

namespace gradlab {

// Where an interrupted run goes on: the newest checkpoint that reads back whole, if any.
struct ResumePoint {
  std::optional<std::string> state;
  std::optional<EpochMetrics> metrics;  // of the checkpoint's epoch
  std::vector<std::string> unusable;    // the newer checkpoints skipped, and why
  int epoch() const { return metrics.has_value() ? metrics->epoch : 0; }
};

// Reads checkpoints from disk, newest first.
ResumePoint FindResumePoint(const CheckpointFiles& files);

// A job rebuilt from the store, not yet shared.
struct RestoredJob {
  std::shared_ptr<Job> job;
  enum class Queue { kNo, kAhead, kInOrder } queue = Queue::kNo;
  // For kAhead (a run that was interrupted): the reason of its QUEUED state change.
  std::string requeue_reason;
};

// Makes an empty job with the given identity, its log and checkpoint files.
using JobFactory = std::function<std::shared_ptr<Job>(const std::string& id, int64_t ordinal,
                                                      RunPlan plan, const std::string& request_id)>;

// Rebuilds one stored experiment: record, log and, for one that had started, where it
// goes on from; what it logged after that checkpoint's epoch is dropped from `store`,
// to be logged again.
absl::StatusOr<RestoredJob> RestoreJob(StoredExperiment experiment, ExperimentStore& store,
                                       const JobFactory& make_job, absl::Time now);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_CRASH_RECOVERY_H_
