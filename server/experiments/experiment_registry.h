// The core of gradlabd, as the API sees it: every experiment, by id and by age. Its
// methods mirror the API's RPCs in plain terms (messages in, absl::Status out); it knows
// nothing of gRPC, so it is tested without a server. The rooms behind it: the Scheduler
// (the queue and the training slots), TrainJob (the run of one job), crash_recovery (a
// restart), run_plan (a spec settled once), event_protos (the events as messages),
// model_catalogue (what ServerInfo lists) and the ChangeFeed (every change, for the watch
// streams).
#ifndef GRADLAB_SERVER_EXPERIMENTS_EXPERIMENT_REGISTRY_H_
#define GRADLAB_SERVER_EXPERIMENTS_EXPERIMENT_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/experiment_spec.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/experiments/change_feed.h"
#include "server/experiments/experiment_log.h"
#include "server/experiments/job.h"
#include "server/experiments/notifier.h"
#include "server/experiments/rendezvous_options.h"
#include "server/experiments/scheduler.h"
#include "server/experiments/training_run.h"
#include "server/experiments/worker_pool.h"
#include "server/store/experiment_store.h"

namespace gradlab {

// Which checkpoints of a finished experiment stay on disk (--keep_checkpoints). While it
// runs, the last two and the best are kept, so that a damaged newest one has a fallback.
struct KeepCheckpoints {
  bool last = true;
  bool best = true;
};

struct RegistryOptions {
  int training_slots = 1;   // trainings at once (gradlabd's --workers)
  int threads_per_job = 1;  // intra-op threads of each training
  int max_queue = 100;      // queued experiments beyond those running
  // The most memory one run may be estimated to need (see EstimateRunMemory), and all
  // runs at once (a run waits in the queue until it fits beside those running); 0: no
  // limit. gradlabd's --max_run_memory; see ServerOptionsFrom for the defaults.
  int64_t max_run_memory = 0;
  int64_t memory_budget = 0;
  std::string data_dir;  // where datasets are looked for first (see DatasetSearchPath)
  // The folders a spec's data_dir may name (see PlanLimits); empty: data_dir and
  // /usr/share/datasets.
  std::vector<std::string> allowed_data_dirs;
  LogRetention retention;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  absl::Duration progress_interval = absl::Milliseconds(500);
  // Added to the nice value of the training threads (and the OpenMP threads they start), so
  // that answering RPCs and writing streams preempts training on a busy machine; 0 keeps
  // the process's priority. A trade-off, measured in docs/PERFORMANCE.md: lower stream
  // latency for less training throughput when there are hundreds of subscribers.
  int training_niceness = 0;
  // Where experiments, their events and checkpoints are kept; null keeps everything in
  // memory only (no checkpoints; nothing survives the process). See Open.
  std::shared_ptr<ExperimentStore> store;
  // Finished experiments' events are read from the store when a stream asks for them, and
  // dropped again, oldest read first, when those in memory take more than this.
  int64_t loaded_events_budget = 256 << 20;
  // While the store's folder is full, a run about to start looks this often for room.
  absl::Duration state_room_poll = absl::Seconds(1);
  KeepCheckpoints keep_checkpoints;
  // For tests: runs after each step of every checkpoint write (see WriteStepHook).
  WriteStepHook checkpoint_hook;
  // For tests: runs at the named steps of every run (see RunStepHook).
  RunStepHook run_step_hook;
  // Data-parallel runs (spec.world_size > 1): this server is rank 0 and its workers (see
  // WorkerPool) the others.
  WorkerPoolOptions worker_pool;
  RendezvousOptions rendezvous;
  // The uploaded models specs may train (spec.model "uploaded:..."); null: none. Outlives
  // the registry.
  const ModelRegistry* models = nullptr;
};

// A model exported from a checkpoint: a file for torch.load (or torch.jit.load).
struct ExportedModel {
  int epoch = 0;
  std::string bytes;
};

// Thread-safe. Training slots start in the constructor and stop in Shutdown (or the
// destructor). No method waits for a disk while holding a lock that readers
// (GetExperiment, ListExperiments, the watch streams) need: a change is stored under its
// job's change_mu, which only other changes of the same job wait for.
//
// Lock order: start_mu_, then a job's change_mu, then mu_, then a job's mu, then the
// scheduler's and the change feed's.
class ExperimentRegistry {
 public:
  // An in-memory registry, or one over options.store that has not been restored yet:
  // use Open for that.
  explicit ExperimentRegistry(RegistryOptions options)
      : ExperimentRegistry(std::move(options), false) {}
  // A registry that first restores every experiment from options.store (when set):
  // finished ones with their history, queued ones in their order, and those that were
  // running queued again ahead of them, to resume from their last usable checkpoint (or
  // FAILED, when they have been interrupted too often; see Experiment.attempts_since_epoch).
  // Nothing trains until StartTraining(): a server calls it once it serves, so that a run
  // that takes the process down can be listed and cancelled after the restart.
  static absl::StatusOr<std::unique_ptr<ExperimentRegistry>> Open(RegistryOptions options);
  // Lets the training slots take queued experiments. Idempotent.
  void StartTraining();
  ~ExperimentRegistry();
  ExperimentRegistry(const ExperimentRegistry&) = delete;
  ExperimentRegistry& operator=(const ExperimentRegistry&) = delete;

  absl::StatusOr<v1::Experiment> StartExperiment(const v1::StartExperimentRequest& request)
      ABSL_LOCKS_EXCLUDED(start_mu_, mu_);
  // Given the ids of a sweep's new experiments, in order: the sweep's record, stored with
  // them.
  using SweepRecordMaker = std::function<StoredSweep(const std::vector<std::string>& ids)>;
  // Queues a sweep's runs, in the order given, all or none: each spec is checked and
  // admitted as StartExperiment does (the error names the run), then the queue must have
  // room for every one (RESOURCE_EXHAUSTED naming both numbers), then their records are
  // stored in one transaction with the sweep's record that `make_sweep` returns.
  absl::StatusOr<std::vector<v1::Experiment>> StartSweepRuns(
      const std::vector<v1::ExperimentSpec>& specs, const SweepRecordMaker& make_sweep)
      ABSL_LOCKS_EXCLUDED(start_mu_, mu_);
  absl::StatusOr<v1::Experiment> GetExperiment(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListExperimentsResponse> ListExperiments(
      const v1::ListExperimentsRequest& request) const ABSL_LOCKS_EXCLUDED(mu_);
  // Calls `done` with the experiment once it is CANCELLED: at once for a queued one, when
  // its training slot has stopped for a running one (within one batch). NOT_FOUND or
  // FAILED_PRECONDITION (already finished) at once. `done` may run on a training thread.
  void CancelExperiment(absl::string_view id, CancelDone done) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes a finished experiment, its events and its checkpoints.
  absl::Status DeleteExperiment(absl::string_view id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<ExportedModel> ExportModel(absl::string_view id,
                                            v1::ExportModelRequest::Which which,
                                            v1::ExportModelRequest::Format format =
                                                v1::ExportModelRequest::STATE_DICT) const
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::shared_ptr<ExperimentLog>> EventLog(absl::string_view id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  v1::ServerInfo ServerInfo() const;
  // The workers that register with this server, for the WorkerService.
  WorkerPool& worker_pool() { return *worker_pool_; }
  // Every change to every experiment (created, changed state, finished an epoch,
  // deleted), for the watch streams; it ends with UNAVAILABLE at Shutdown.
  ChangeFeed& changes() { return changes_; }

  // Every experiment's current state, oldest first.
  std::vector<v1::Experiment> AllExperiments() const ABSL_LOCKS_EXCLUDED(mu_);
  bool shutting_down() const ABSL_LOCKS_EXCLUDED(mu_);

  // Refuses new experiments (UNAVAILABLE), stops running trainings at the next batch,
  // ends every stream with UNAVAILABLE ("server shutting down") and joins the training
  // slots. Queued and running experiments keep their state. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Whether ChangeRecord publishes the change on the feed.
  enum class Publish { kNo, kYes };

  // `held`: the training slots wait for StartTraining().
  ExperimentRegistry(RegistryOptions options, bool held);

  absl::Status Restore() ABSL_LOCKS_EXCLUDED(mu_);
  // A spec a run may start with: planned (PlanRun), and admitted by its estimated memory.
  struct AdmittedRun {
    RunPlan plan;
    int64_t peak_bytes = 0;
  };
  absl::StatusOr<AdmittedRun> Admit(const v1::ExperimentSpec& requested) const;
  // A new job's record as it is first stored: QUEUED, with its resolved spec.
  v1::Experiment QueuedRecord(const Job& job) const;
  std::shared_ptr<Job> NewJob(const std::string& id, int64_t ordinal, RunPlan plan,
                              const std::string& request_id);
  std::string NewId() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Job>> FindJob(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);
  // The experiment as the API shows it, with its queue position.
  v1::Experiment Describe(const Job& job) const;

  // Runs a job the scheduler took, on training slot `slot`'s thread, and settles how it
  // ended: finished, back to the queue after a lost rank, or left as it was by shutdown.
  void RunJob(const std::shared_ptr<Job>& job) ABSL_LOCKS_EXCLUDED(mu_);
  // After a data-parallel attempt lost a rank (`status`, with what the pool saw of its
  // workers in `notes`): back to the front of the queue, to go on from its newest usable
  // checkpoint (none: epoch 1), or FAILED after kMaxAttemptsWithoutProgress attempts that
  // finished no epoch or a worker's own error.
  void Requeue(const std::shared_ptr<Job>& job, const absl::Status& status,
               const std::vector<absl::Status>& notes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job->change_mu);
  // After an attempt stopped because the state folder had no room (`status`): back to the
  // front of the queue, to go on from its newest usable checkpoint once there is room, or
  // FAILED after kMaxAttemptsWithoutProgress attempts that finished no epoch.
  void RequeueForRoom(const std::shared_ptr<Job>& job, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job->change_mu);
  // Before a run starts: waits while the state folder is full (its reserve in use, or no
  // room for two more of the job's checkpoints), looking again every
  // options_.state_room_poll; CANCELLED when the job is cancelled or the server shuts
  // down meanwhile.
  absl::Status WaitForStateRoom(Job& job) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the experiment in a finished `state` and prunes its checkpoints to those
  // --keep_checkpoints keeps.
  void Finish(Job& job, v1::ExperimentState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.change_mu);

  // Applies `change` to the job's record, appends `event` (if any) to its log, stores the
  // record and, with Publish::kYes, publishes the new state. The record changes in memory
  // even when the store fails; the error says so.
  absl::Status ChangeRecord(Job& job, const std::function<void(v1::Experiment&)>& change,
                            std::optional<v1::MetricsEvent> event, Publish publish)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.change_mu);
  // Sets the state (after `change`, if any), appends the StateChange event and stores the
  // record; a finished state closes the log.
  absl::Status ChangeState(Job& job, v1::ExperimentState state, const std::string& reason,
                           const std::function<void(v1::Experiment&)>& change = nullptr,
                           Publish publish = Publish::kYes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.change_mu);
  // Takes an epoch's metrics into the record (see EpochRecorder); training thread.
  absl::Status CommitEpoch(Job& job, v1::MetricsEvent epoch_event);

  const RegistryOptions options_;
  const TrainingRunOptions run_options_;
  const std::vector<v1::ModelInfo> models_;  // computed once; models do not change
  ChangeFeed changes_;
  // Runs the logs' stream notifications; declared before the logs so that it outlives them.
  Notifier notifier_;
  const std::shared_ptr<LoadedLogs> loaded_logs_;

  // Held by StartExperiment from its checks to its job's listing, so that the queue's
  // limit, request ids and ordinals stay true across its write to the store.
  absl::Mutex start_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Job>, std::less<>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Job>> by_age_ ABSL_GUARDED_BY(mu_);        // oldest first
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);  // -> experiment id
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  std::unique_ptr<Scheduler> scheduler_;
  // What the worker pool's changes wake; set once the scheduler exists.
  std::atomic<Scheduler*> scheduler_for_workers_{nullptr};
  // Declared after the scheduler: destroyed first, so that its thread never finds the
  // scheduler gone.
  std::unique_ptr<WorkerPool> worker_pool_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_EXPERIMENT_REGISTRY_H_
