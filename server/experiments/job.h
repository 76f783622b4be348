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
#include "server/engine/rendezvous_store.h"
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
  // What the run is estimated to need at its peak (0: not known, for a run stored by an
  // older server), for the scheduler's memory budget.
  int64_t estimated_peak_bytes = 0;
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
  // the queue's lock hands them over): the epoch of the checkpoint to go on from and what
  // to say, and, for data-parallel runs, how many attempts have started (the workers'
  // assignments are numbered by it). The attempts that count towards giving up are in
  // the record (attempts_since_epoch), so that they survive a crash.
  std::optional<int> resume_epoch;
  std::string resume_reason;
  int attempts = 0;
  // The current attempt's rendezvous, which rank 0 joins (WorkerPool::Reserve).
  std::shared_ptr<RendezvousStore> rendezvous;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_JOB_H_
