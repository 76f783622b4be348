// The core of gradlabd: every experiment, the queue of those waiting, and the worker
// threads that train them. Its methods mirror the API's RPCs in plain terms (messages
// in, absl::Status out); it knows nothing of gRPC, so it is tested without a server.
#ifndef GRADLAB_SERVER_JOBS_EXPERIMENT_REGISTRY_H_
#define GRADLAB_SERVER_JOBS_EXPERIMENT_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/experiment_spec.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/engine/checkpoint.h"
#include "server/jobs/experiment_log.h"
#include "server/jobs/notifier.h"
#include "server/jobs/worker_pool.h"
#include "server/store/checkpoint_files.h"
#include "server/store/experiment_store.h"

namespace gradlab {

// Which checkpoints of a finished experiment stay on disk (--keep_checkpoints). While it
// runs, the last two and the best are kept, so that a damaged newest one has a fallback.
struct KeepCheckpoints {
  bool last = true;
  bool best = true;
};

struct RegistryOptions {
  int workers = 1;          // trainings at once
  int threads_per_job = 1;  // intra-op threads of each training
  int max_queue = 100;      // queued experiments beyond those running
  std::string data_dir;     // where datasets are looked for first (see DatasetSearchPath)
  LogRetention retention;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  absl::Duration progress_interval = absl::Milliseconds(500);
  // Added to the nice value of the worker threads (and the OpenMP threads they start), so
  // that answering RPCs and writing streams preempts training on a busy machine; 0 keeps
  // the process's priority. A trade-off, measured in docs/PERFORMANCE.md: lower stream
  // latency for less training throughput when there are hundreds of subscribers.
  int training_niceness = 0;
  // Where experiments, their events and checkpoints are kept; null keeps everything in
  // memory only (no checkpoints; nothing survives the process). See Open.
  std::shared_ptr<ExperimentStore> store;
  KeepCheckpoints keep_checkpoints;
  // For tests: runs after each step of every checkpoint write (see WriteStepHook).
  WriteStepHook checkpoint_hook;
  // Data-parallel runs (spec.world_size > 1): this server is rank 0 and its workers (see
  // WorkerPool) the others.
  WorkerPoolOptions worker_pool;
  // Rank 0 of the run on training thread i hosts the group's TCPStore on
  // rendezvous_port + i (0 to --workers - 1), on every interface.
  int rendezvous_port = 50052;
  // The address the workers reach rank 0's Gloo connections at (they bind to it); empty:
  // the address this machine's hostname resolves to.
  std::string advertise_address;
  // For the rendezvous and every collective: a rank lost mid-run fails the others' next
  // collective within this time, and the run goes back to the queue.
  absl::Duration collective_timeout = absl::Seconds(60);
};

// A model exported from a checkpoint: a file for torch.load.
struct ExportedModel {
  int epoch = 0;
  std::string state_dict;
};

// Thread-safe. Worker threads start in the constructor and stop in Shutdown (or the
// destructor). Listeners run on the thread that made the change and must not block nor
// call back into the registry's listener methods.
class ExperimentRegistry {
 public:
  // An in-memory registry, or one over options.store that has not been restored yet:
  // use Open for that.
  explicit ExperimentRegistry(RegistryOptions options);
  // A registry that first restores every experiment from options.store (when set):
  // finished ones with their history, queued ones in their order, and those that were
  // running queued again ahead of them, to resume from their last usable checkpoint.
  static absl::StatusOr<std::unique_ptr<ExperimentRegistry>> Open(RegistryOptions options);
  ~ExperimentRegistry();
  ExperimentRegistry(const ExperimentRegistry&) = delete;
  ExperimentRegistry& operator=(const ExperimentRegistry&) = delete;

  absl::StatusOr<v1::Experiment> StartExperiment(const v1::StartExperimentRequest& request);
  absl::StatusOr<v1::Experiment> GetExperiment(absl::string_view id) const;
  absl::StatusOr<v1::ListExperimentsResponse> ListExperiments(
      const v1::ListExperimentsRequest& request) const;
  // Calls `done` with the experiment once it is CANCELLED: at once for a queued one, when
  // its worker has stopped for a running one (within one batch). NOT_FOUND or
  // FAILED_PRECONDITION (already finished) at once. `done` may run on a worker thread.
  void CancelExperiment(absl::string_view id,
                        std::function<void(absl::StatusOr<v1::Experiment>)> done);
  // Removes a finished experiment, its events and its checkpoints.
  absl::Status DeleteExperiment(absl::string_view id);
  absl::StatusOr<ExportedModel> ExportModel(absl::string_view id,
                                            v1::ExportModelRequest::Which which) const;
  absl::StatusOr<std::shared_ptr<ExperimentLog>> EventLog(absl::string_view id) const;
  v1::ServerInfo ServerInfo() const;
  // The workers that register with this server, for the WorkerService.
  WorkerPool& worker_pool() { return *worker_pool_; }

  // Every experiment's current state, oldest first.
  std::vector<v1::Experiment> AllExperiments() const;
  // Runs `listener(id)` whenever an experiment is created, changes state, finishes an
  // epoch or is deleted, and `listener("")` when shutdown begins. Returns a handle for
  // RemoveChangeListener, after which the listener is never running nor run again.
  int64_t AddChangeListener(std::function<void(const std::string& id)> listener);
  void RemoveChangeListener(int64_t handle);
  bool shutting_down() const;

  // Refuses new experiments (UNAVAILABLE), stops running trainings at the next batch,
  // ends every stream with UNAVAILABLE ("server shutting down") and joins the workers.
  // Queued and running experiments keep their state. Idempotent.
  void Shutdown();

 private:
  struct Job;
  class JobSink;

  absl::Status Restore();
  std::shared_ptr<Job> NewJob(const std::string& id, int64_t ordinal, const ExperimentSpec& spec,
                              const std::string& request_id);
  // Trains the queued experiments, one at a time; `slot` numbers the thread.
  void WorkerLoop(int slot);
  // The first queued experiment that can start now: one of world_size 1, or one whose
  // world_size - 1 workers are idle.
  std::deque<std::shared_ptr<Job>>::iterator FirstRunnable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasRunnableJob() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunJob(const std::shared_ptr<Job>& job, int slot);
  // After a data-parallel attempt lost a rank (`status`, with what the pool saw of its
  // workers in `notes`): back to the front of the queue, to go on from `resume_state`
  // (the newest usable checkpoint, of epoch `resume_epoch`; none: epoch 1), or FAILED
  // after attempts that finished no epoch or a worker's own error.
  void Requeue(const std::shared_ptr<Job>& job, const absl::Status& status,
               const std::vector<absl::Status>& notes, std::optional<std::string> resume_state,
               int resume_epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Saves the checkpoint of an epoch and prunes those no longer needed; worker thread.
  absl::Status SaveCheckpoint(Job& job, const TrainingCheckpoint& checkpoint);
  // Removes the checkpoints --keep_checkpoints does not keep, once a run has finished.
  void PruneFinished(const Job& job);
  // The experiment as the API shows it, with its queue position.
  v1::Experiment Describe(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Job>> FindJob(absl::string_view id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Sets the state, appends the StateChange event and saves the record; a finished state
  // closes the log. An error means the change is not stored (it stands in memory).
  absl::Status ChangeState(Job& job, v1::ExperimentState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveRecord(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void NotifyChange(const std::string& id) ABSL_LOCKS_EXCLUDED(listeners_mu_);
  std::string NewId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RegistryOptions options_;
  std::vector<v1::ModelInfo> model_infos_;  // computed once; models do not change
  // Runs the logs' stream notifications; declared before the logs so that it outlives them.
  Notifier notifier_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Job>, std::less<>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Job>> by_age_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);  // -> experiment id
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;

  // After mu_: destroyed first, so that its thread never finds mu_ gone.
  std::unique_ptr<WorkerPool> worker_pool_;

  absl::Mutex listeners_mu_ ABSL_ACQUIRED_AFTER(mu_);
  int64_t next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  std::map<int64_t, std::function<void(const std::string&)>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_JOBS_EXPERIMENT_REGISTRY_H_
