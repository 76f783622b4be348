// One experiment as the server holds it: what it is (set once), its event log and
// checkpoints, and its record, the Experiment the API shows.
#ifndef GRADLAB_SERVER_EXPERIMENTS_JOB_H_
#define GRADLAB_SERVER_EXPERIMENTS_JOB_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/experiments/experiment_log.h"
#include "server/experiments/run_plan.h"
#include "server/store/checkpoint_files.h"

namespace gradlab {

// Answers a CancelExperiment: with the cancelled experiment, or why it was not cancelled.
using CancelDone = std::function<void(absl::StatusOr<v1::Experiment>)>;

struct Job {
  // Set before the job is shared; never changed.
  std::string id;
  int64_t ordinal = 0;  // creation order, for listing and page tokens
  std::string request_id;
  RunPlan plan;
  std::shared_ptr<ExperimentLog> log;
  std::unique_ptr<CheckpointFiles> checkpoints;  // null without a store

  std::atomic<bool> stop{false};

  // Held by whoever changes the record, from reading it to storing and publishing the
  // change, so that the store and the change feed see one job's changes in the order
  // made. Readers of the record never take it, so they never wait for a disk.
  absl::Mutex change_mu ABSL_ACQUIRED_BEFORE(mu);
  bool deleted ABSL_GUARDED_BY(change_mu) = false;

  mutable absl::Mutex mu;
  v1::Experiment record ABSL_GUARDED_BY(mu);
  std::vector<CancelDone> on_cancelled ABSL_GUARDED_BY(mu);

  // Belong to whoever holds the job out of the queue (the training slot that took it;
  // the queue's lock hands them over): the checkpoint to go on from and what to say,
  // and, for data-parallel runs, how many attempts have started, how many in a row
  // finished no epoch, and the epochs of this one.
  std::optional<std::string> resume_state;
  std::string resume_reason;
  int attempts = 0;
  int attempts_without_progress = 0;
  int epochs_this_attempt = 0;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_JOB_H_
