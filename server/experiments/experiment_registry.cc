#include "server/experiments/experiment_registry.h"

#include <glog/logging.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/byte_size.h"
#include "common/client_text.h"
#include "common/experiment_state.h"
#include "common/request_limits.h"
#include "common/spec_proto.h"
#include "common/version.h"
#include "server/engine/checkpoint.h"
#include "server/engine/dataset_request.h"
#include "server/engine/memory_estimate.h"
#include "server/experiments/crash_recovery.h"
#include "server/experiments/event_protos.h"
#include "server/experiments/lost_rank_policy.h"
#include "server/experiments/model_catalogue.h"
#include "server/experiments/random_id.h"

namespace gradlab {
namespace {

constexpr size_t kMaxRequestIdLength = 200;

absl::Status NoSuchExperiment(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("no experiment with id ", QuoteClientText(id)));
}

// RESOURCE_EXHAUSTED when `estimate` is over `limit` (0: none), saying by how much and
// what to lower.
absl::Status CheckRunMemory(const MemoryEstimate& estimate, const ExperimentSpec& spec,
                            int64_t limit) {
  if (limit == 0 || estimate.peak_bytes <= limit) return absl::OkStatus();
  std::string lower;
  if (estimate.training_bytes >= estimate.dataset_bytes &&
      estimate.training_bytes >= estimate.checkpoint_bytes) {
    lower = absl::StrCat("lower batch_size (", spec.batch_size, ")",
                         spec.precision == "fp32" ? " or train in precision bf16" : "");
  } else if (estimate.dataset_bytes >= estimate.checkpoint_bytes) {
    lower = "lower max_train_samples or max_test_samples";
  } else {
    lower = "choose a smaller model";
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "the run is estimated to need ", FormatBytes(estimate.peak_bytes),
      " of memory at its peak (training ", FormatBytes(estimate.training_bytes), " at batch_size ",
      spec.batch_size, ", dataset ", FormatBytes(estimate.dataset_bytes), ", checkpoints ",
      FormatBytes(estimate.checkpoint_bytes), "), more than the ", FormatBytes(limit),
      " this server allows a run (gradlabd --max_run_memory); ", lower));
}

// "1 idle worker", "2 idle workers".
std::string IdleWorkers(int count) {
  return absl::StrCat(count, count == 1 ? " idle worker" : " idle workers");
}

// The record's count of attempts since its last finished epoch.
int AttemptsSinceEpoch(const Job& job) {
  absl::ReaderMutexLock lock(&job.mu);
  return job.record.attempts_since_epoch();
}

// Sets where a job's next attempt goes on from, its newest usable checkpoint (none: epoch
// 1), and says which in words.
std::string ResumeFromNewestCheckpoint(Job& job) {
  const ResumePoint resume =
      job.checkpoints != nullptr ? FindResumePoint(*job.checkpoints) : ResumePoint{};
  if (resume.epoch == 0) return "epoch 1";
  job.resume_epoch = resume.epoch;
  return absl::StrCat("the checkpoint of epoch ", resume.epoch);
}

}  // namespace

ExperimentRegistry::ExperimentRegistry(RegistryOptions options, bool held)
    : options_(std::move(options)),
      run_options_{options_.clock, options_.progress_interval, options_.rendezvous,
                   options_.run_step_hook},
      models_(DescribeModels()),
      loaded_logs_(std::make_shared<LoadedLogs>(options_.loaded_events_budget)) {
  worker_pool_ = std::make_unique<WorkerPool>(options_.worker_pool, [this] {
    if (Scheduler* scheduler = scheduler_for_workers_.load()) scheduler->WorkersChanged();
  });
  scheduler_ = std::make_unique<Scheduler>(
      SchedulerOptions{options_.training_slots, options_.training_niceness, options_.rendezvous,
                       held, options_.memory_budget},
      *worker_pool_, [this](const std::shared_ptr<Job>& job) { RunJob(job); });
  scheduler_for_workers_.store(scheduler_.get());
}

ExperimentRegistry::~ExperimentRegistry() { Shutdown(); }

absl::StatusOr<std::unique_ptr<ExperimentRegistry>> ExperimentRegistry::Open(
    RegistryOptions options) {
  auto registry = absl::WrapUnique(new ExperimentRegistry(std::move(options), /*held=*/true));
  if (absl::Status status = registry->Restore(); !status.ok()) {
    registry->Shutdown();
    return status;
  }
  return registry;
}

void ExperimentRegistry::StartTraining() { scheduler_->Release(); }

std::shared_ptr<Job> ExperimentRegistry::NewJob(const std::string& id, int64_t ordinal,
                                                RunPlan plan, const std::string& request_id) {
  auto job = std::make_shared<Job>();
  job->id = id;
  job->ordinal = ordinal;
  job->request_id = request_id;
  job->plan = std::move(plan);
  std::unique_ptr<EventJournal> journal;
  if (options_.store != nullptr) {
    journal = options_.store->Journal(id, options_.retention);
    job->checkpoints = std::make_unique<CheckpointFiles>(
        (std::filesystem::path(options_.store->state_dir()) / "checkpoints" / id).string(),
        options_.checkpoint_hook);
  }
  job->log = std::make_shared<ExperimentLog>(options_.retention, &notifier_, std::move(journal));
  return job;
}

absl::Status ExperimentRegistry::Restore() {
  if (options_.store == nullptr) return absl::OkStatus();
  absl::StatusOr<std::vector<StoredExperiment>> stored = options_.store->LoadExperiments();
  if (!stored.ok()) return stored.status();
  const JobFactory make_job = [this](const std::string& id, int64_t ordinal, RunPlan plan,
                                     const std::string& request_id) {
    plan.model_file = ModelFileOf(plan.spec, options_.models);
    return NewJob(id, ordinal, std::move(plan), request_id);
  };
  std::vector<RestoredJob> interrupted;
  std::vector<std::shared_ptr<Job>> queued;
  for (StoredExperiment& experiment : *stored) {
    absl::StatusOr<RestoredJob> restored =
        RestoreJob(std::move(experiment), options_.store, make_job, loaded_logs_);
    if (!restored.ok()) return restored.status();
    {
      absl::MutexLock lock(&mu_);
      jobs_.emplace(restored->job->id, restored->job);
      by_age_.push_back(restored->job);
      if (!restored->job->request_id.empty()) {
        request_ids_[restored->job->request_id] = restored->job->id;
      }
    }
    if (!restored->failure.empty()) {
      absl::MutexLock change(&restored->job->change_mu);
      Finish(*restored->job, v1::FAILED, restored->failure);
    }
    if (restored->queue == RestoredJob::Queue::kAhead) interrupted.push_back(*std::move(restored));
    if (restored->queue == RestoredJob::Queue::kInOrder) queued.push_back(restored->job);
  }
  // Each says why it waits again before a training slot can take it.
  for (RestoredJob& restored : interrupted) {
    absl::MutexLock change(&restored.job->change_mu);
    if (absl::Status status = ChangeState(*restored.job, v1::QUEUED, restored.requeue_reason);
        !status.ok()) {
      return status;
    }
  }
  // The interrupted ones first, in their order, then those that were waiting.
  for (const RestoredJob& restored : interrupted) scheduler_->PushBack(restored.job);
  for (const std::shared_ptr<Job>& job : queued) scheduler_->PushBack(job);
  // Watchers (and the sweeps) read every experiment there is first: the restored ones too,
  // oldest first, as they were.
  std::vector<std::shared_ptr<Job>> restored;
  {
    absl::ReaderMutexLock lock(&mu_);
    restored = by_age_;
  }
  for (const std::shared_ptr<Job>& job : restored) {
    absl::MutexLock change(&job->change_mu);
    changes_.Publish(Describe(*job));
  }
  LOG(INFO) << "restored " << stored->size() << " experiments from "
            << options_.store->database_path() << " (" << interrupted.size() << " interrupted, "
            << queued.size() << " queued)";
  return absl::OkStatus();
}

std::string ExperimentRegistry::NewId() const {
  while (true) {
    std::string id = RandomId();
    if (jobs_.find(id) == jobs_.end()) return id;
  }
}

absl::StatusOr<v1::Experiment> ExperimentRegistry::StartExperiment(
    const v1::StartExperimentRequest& request) {
  if (request.request_id().size() > kMaxRequestIdLength) {
    return absl::InvalidArgumentError(absl::StrCat("request_id: ", request.request_id().size(),
                                                   " characters is longer than the limit of ",
                                                   kMaxRequestIdLength));
  }
  const auto earlier_request = [&]() -> std::shared_ptr<Job> {
    absl::ReaderMutexLock lock(&mu_);
    auto it = request_ids_.find(request.request_id());
    if (request.request_id().empty() || it == request_ids_.end()) return nullptr;
    return jobs_.find(it->second)->second;
  };
  if (std::shared_ptr<Job> earlier = earlier_request()) return Describe(*earlier);
  absl::StatusOr<AdmittedRun> admitted = Admit(request.spec());
  if (!admitted.ok()) return admitted.status();
  const ExperimentSpec& spec = admitted->plan.spec;

  absl::MutexLock start(&start_mu_);
  // A concurrent request with the same id may have won the race since the check above.
  if (std::shared_ptr<Job> earlier = earlier_request()) return Describe(*earlier);
  const int queue_length = scheduler_->Length();
  std::shared_ptr<Job> job;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server shutting down");
    if (queue_length >= options_.max_queue) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the queue is full: ", queue_length,
                       " experiments are waiting, the limit (--max_queue) is ", options_.max_queue,
                       "; try again when some have finished"));
    }
    job = NewJob(NewId(), by_age_.empty() ? 1 : by_age_.back()->ordinal + 1, admitted->plan,
                 request.request_id());
    job->estimated_peak_bytes = admitted->peak_bytes;
  }
  std::string reason = absl::StrCat("queued at position ", scheduler_->PositionIfPushed(*job));
  if (spec.world_size > 1) {
    absl::StrAppend(&reason, "; needs ", IdleWorkers(spec.world_size - 1), ", ",
                    worker_pool_->IdleCount(), " of ", worker_pool_->Count(),
                    " registered are idle now");
  }
  absl::MutexLock change(&job->change_mu);
  // Stored (and synced) before anyone hears of it: once this returns, the experiment
  // survives a crash.
  absl::Status stored = ChangeState(
      *job, v1::QUEUED, reason, [&](v1::Experiment& record) { record = QueuedRecord(*job); },
      Publish::kNo);
  if (!stored.ok()) {
    LOG(ERROR) << "cannot store a new experiment: " << stored;
    return absl::Status(stored.code(),
                        absl::StrCat("cannot store the new experiment: ", stored.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    jobs_.emplace(job->id, job);
    by_age_.push_back(job);
    if (!request.request_id().empty()) request_ids_[request.request_id()] = job->id;
  }
  // The caller learns where it joined the queue, even if a training slot takes it at once
  // (it waits for change_mu to say so).
  const int position = scheduler_->PushBack(job);
  v1::Experiment queued = Describe(*job);
  queued.set_queue_position(position);
  changes_.Publish(queued);
  return queued;
}

absl::StatusOr<ExperimentRegistry::AdmittedRun> ExperimentRegistry::Admit(
    const v1::ExperimentSpec& requested) const {
  absl::StatusOr<RunPlan> plan =
      PlanRun(requested, PlanLimits{options_.threads_per_job, options_.data_dir,
                                    options_.allowed_data_dirs, options_.models});
  if (!plan.ok()) return plan.status();
  // Before anything is allocated for it (the first spec of a model shape runs a probe).
  absl::StatusOr<MemoryEstimate> memory = EstimateRunMemory(plan->spec, plan->model_file);
  if (!memory.ok()) return memory.status();
  if (absl::Status fits = CheckRunMemory(*memory, plan->spec, options_.max_run_memory);
      !fits.ok()) {
    return fits;
  }
  return AdmittedRun{*std::move(plan), memory->peak_bytes};
}

absl::StatusOr<std::vector<v1::Experiment>> ExperimentRegistry::StartSweepRuns(
    const std::vector<v1::ExperimentSpec>& specs, const SweepRecordMaker& make_sweep) {
  std::vector<AdmittedRun> admitted;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StatusOr<AdmittedRun> run = Admit(specs[i]);
    if (!run.ok()) {
      return absl::Status(run.status().code(),
                          absl::StrCat("run ", i + 1, " of ", specs.size(), " (", specs[i].name(),
                                       "): ", run.status().message()));
    }
    admitted.push_back(*std::move(run));
  }

  absl::MutexLock start(&start_mu_);
  const int queue_length = scheduler_->Length();
  std::vector<std::shared_ptr<Job>> jobs;
  std::vector<StoredExperiment> records;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server shutting down");
    const int room = std::max(0, options_.max_queue - queue_length);
    if (static_cast<int64_t>(specs.size()) > room) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the queue has room for ", room, " more experiments (", queue_length,
          " are waiting, the limit (--max_queue) is ", options_.max_queue, "), and the sweep has ",
          specs.size(), " runs; try again when some have finished, or with fewer runs"));
    }
    std::set<std::string> taken;
    int64_t ordinal = by_age_.empty() ? 1 : by_age_.back()->ordinal + 1;
    for (AdmittedRun& run : admitted) {
      std::string id = NewId();
      while (!taken.insert(id).second) id = NewId();
      std::shared_ptr<Job> job = NewJob(id, ordinal++, std::move(run.plan), "");
      job->estimated_peak_bytes = run.peak_bytes;
      StoredExperiment& stored = records.emplace_back();
      stored.ordinal = job->ordinal;
      stored.record = QueuedRecord(*job);
      jobs.push_back(std::move(job));
    }
  }
  std::vector<std::string> ids;
  for (const auto& job : jobs) ids.push_back(job->id);
  StoredSweep sweep = make_sweep(ids);
  // The runs and their sweep in one transaction: after a crash, all of them or none.
  if (options_.store != nullptr) {
    if (absl::Status stored = options_.store->SaveSweep(sweep, records); !stored.ok()) {
      LOG(ERROR) << "cannot store a new sweep: " << stored;
      return absl::Status(stored.code(),
                          absl::StrCat("cannot store the new sweep: ", stored.message()));
    }
  }
  std::vector<v1::Experiment> queued;
  for (size_t i = 0; i < jobs.size(); ++i) {
    Job& job = *jobs[i];
    absl::MutexLock change(&job.change_mu);
    absl::Status logged = ChangeState(
        job, v1::QUEUED,
        absl::StrCat("queued as run ", i + 1, " of ", jobs.size(), " of sweep ", sweep.record.id()),
        [&](v1::Experiment& record) { record = records[i].record; }, Publish::kNo);
    if (!logged.ok()) LOG(ERROR) << "experiment " << job.id << ": " << logged;
  }
  {
    absl::MutexLock lock(&mu_);
    for (const auto& job : jobs) {
      jobs_.emplace(job->id, job);
      by_age_.push_back(job);
    }
  }
  for (const auto& job : jobs) {
    const int position = scheduler_->PushBack(job);
    v1::Experiment experiment = Describe(*job);
    experiment.set_queue_position(position);
    changes_.Publish(experiment);
    queued.push_back(std::move(experiment));
  }
  return queued;
}

v1::Experiment ExperimentRegistry::QueuedRecord(const Job& job) const {
  v1::Experiment record;
  record.set_id(job.id);
  record.set_name(job.plan.spec.name);
  *record.mutable_spec() = SpecToProto(job.plan.spec);
  record.set_state(v1::QUEUED);
  record.set_dataset_location(job.plan.dataset_location);
  record.set_estimated_peak_bytes(job.estimated_peak_bytes);
  *record.mutable_created_time() = ToTimestamp(options_.clock());
  return record;
}

absl::StatusOr<std::shared_ptr<Job>> ExperimentRegistry::FindJob(absl::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    return NoSuchExperiment(id);
  }
  return it->second;
}

v1::Experiment ExperimentRegistry::Describe(const Job& job) const {
  v1::Experiment experiment;
  {
    absl::ReaderMutexLock lock(&job.mu);
    experiment = job.record;
  }
  if (experiment.state() == v1::QUEUED) {
    experiment.set_queue_position(scheduler_->Position(job));
  }
  return experiment;
}

absl::StatusOr<v1::Experiment> ExperimentRegistry::GetExperiment(absl::string_view id) const {
  absl::StatusOr<std::shared_ptr<Job>> job = FindJob(id);
  if (!job.ok()) return job.status();
  return Describe(**job);
}

absl::StatusOr<v1::ListExperimentsResponse> ExperimentRegistry::ListExperiments(
    const v1::ListExperimentsRequest& request) const {
  const absl::StatusOr<int> page_size_or = PageSize(request.page_size());
  if (!page_size_or.ok()) return page_size_or.status();
  const int page_size = *page_size_or;
  const absl::StatusOr<int64_t> before_or = OrdinalsBefore(request.page_token());
  if (!before_or.ok()) return before_or.status();
  const int64_t before = *before_or;
  v1::ListExperimentsResponse response;
  absl::ReaderMutexLock lock(&mu_);
  int64_t last_ordinal = 0;
  for (auto it = by_age_.rbegin(); it != by_age_.rend(); ++it) {
    const Job& job = **it;
    if (job.ordinal >= before) continue;
    v1::Experiment experiment = Describe(job);
    if (request.state() != v1::EXPERIMENT_STATE_UNSPECIFIED &&
        experiment.state() != request.state()) {
      continue;
    }
    if (response.experiments_size() == page_size) {
      response.set_next_page_token(absl::StrCat(last_ordinal));
      break;
    }
    *response.add_experiments() = std::move(experiment);
    last_ordinal = job.ordinal;
  }
  return response;
}

void ExperimentRegistry::CancelExperiment(absl::string_view id, CancelDone done) {
  absl::StatusOr<std::shared_ptr<Job>> found = FindJob(id);
  if (!found.ok()) return done(found.status());
  Job& job = **found;
  absl::StatusOr<v1::Experiment> answer;
  {
    absl::MutexLock change(&job.change_mu);
    v1::ExperimentState state;
    {
      absl::ReaderMutexLock lock(&job.mu);
      state = job.record.state();
    }
    if (job.deleted) {
      answer = NoSuchExperiment(id);
    } else if (IsFinished(state)) {
      answer = absl::FailedPreconditionError(absl::StrCat(
          "experiment ", id, " has already finished (", v1::ExperimentState_Name(state), ")"));
    } else if (state == v1::QUEUED && scheduler_->Remove(job)) {
      Finish(job, v1::CANCELLED, "cancelled by request while queued");
      answer = Describe(job);
    } else {
      // Running, or taken by a training slot that is about to run it: it stops at the
      // next batch, and RunJob answers when it has.
      job.stop.store(true);
      absl::MutexLock lock(&job.mu);
      job.on_cancelled.push_back(std::move(done));
      return;
    }
  }
  done(std::move(answer));
}

absl::Status ExperimentRegistry::DeleteExperiment(absl::string_view id) {
  absl::StatusOr<std::shared_ptr<Job>> found = FindJob(id);
  if (!found.ok()) return found.status();
  Job& job = **found;
  {
    absl::MutexLock change(&job.change_mu);
    v1::Experiment last = Describe(job);
    if (job.deleted) return NoSuchExperiment(id);
    if (!IsFinished(last.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("experiment ", id, " is ", v1::ExperimentState_Name(last.state()),
                       "; only finished experiments can be deleted (cancel it first)"));
    }
    if (options_.store != nullptr) {
      if (absl::Status status = options_.store->DeleteExperiment(job.id); !status.ok()) {
        return status;
      }
    }
    job.deleted = true;
    {
      absl::MutexLock lock(&mu_);
      jobs_.erase(job.id);
      by_age_.erase(std::find(by_age_.begin(), by_age_.end(), *found));
      if (!job.request_id.empty()) request_ids_.erase(job.request_id);
    }
    last.set_deleted(true);
    changes_.Publish(std::move(last));
  }
  LOG(INFO) << "experiment " << job.id << ": deleted";
  if (job.checkpoints != nullptr) {
    if (absl::Status status = job.checkpoints->RemoveAll(); !status.ok()) {
      LOG(WARNING) << "experiment " << job.id << " deleted, but not its checkpoints: " << status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExportedModel> ExperimentRegistry::ExportModel(
    absl::string_view id, v1::ExportModelRequest::Which which,
    v1::ExportModelRequest::Format format) const {
  absl::StatusOr<std::shared_ptr<Job>> found = FindJob(id);
  if (!found.ok()) return found.status();
  const Job& job = **found;
  if (!v1::ExportModelRequest::Format_IsValid(format)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "format: unknown value ", format, "; valid values: STATE_DICT, TORCHSCRIPT"));
  }
  const bool torchscript = format == v1::ExportModelRequest::TORCHSCRIPT;
  if (torchscript && job.plan.model_file.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", id, " trains the built-in model ", job.plan.spec.model,
        ", which exports its state_dict only (format STATE_DICT; tests/reference/models.py "
        "has its PyTorch module); TORCHSCRIPT is for uploaded models"));
  }
  int epoch = 0;
  {
    absl::ReaderMutexLock lock(&job.mu);
    if (job.record.last_metrics().epoch() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "experiment ", id, " has not finished an epoch yet: there is no model to export"));
    }
    epoch = which == v1::ExportModelRequest::LAST ? job.record.last_metrics().epoch()
                                                  : job.record.best_epoch();
  }
  if (job.checkpoints == nullptr) {
    return absl::FailedPreconditionError(
        "this server keeps no checkpoints (it runs without --state_dir), so it has no model to "
        "export");
  }
  absl::StatusOr<std::string> state = job.checkpoints->Read(epoch);
  if (absl::IsNotFound(state.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("the checkpoint of epoch ", epoch, " of experiment ", id,
                     " was not kept (gradlabd's --keep_checkpoints); the kept epochs: ",
                     absl::StrJoin(job.checkpoints->Epochs(), ", ")));
  }
  if (!state.ok()) return state.status();
  absl::StatusOr<std::string> bytes = torchscript
                                          ? ExportTorchScript(job.plan.model_file, *state)
                                          : ExportStateDict(*state);
  if (!bytes.ok()) return bytes.status();
  return ExportedModel{epoch, *std::move(bytes)};
}

absl::StatusOr<std::shared_ptr<ExperimentLog>> ExperimentRegistry::EventLog(
    absl::string_view id) const {
  absl::StatusOr<std::shared_ptr<Job>> job = FindJob(id);
  if (!job.ok()) return job.status();
  return (*job)->log;
}

v1::ServerInfo ExperimentRegistry::ServerInfo() const {
  v1::ServerInfo info;
  info.set_version(kGradlabVersion);
  for (const v1::ModelInfo& model : models_) *info.add_models() = model;
  for (v1::DatasetInfo& dataset : DescribeDatasets(options_.data_dir)) {
    *info.add_datasets() = std::move(dataset);
  }
  info.set_workers(scheduler_->training_slots());
  info.set_threads_per_job(options_.threads_per_job);
  info.set_queue_capacity(options_.max_queue);
  info.set_max_run_memory_bytes(options_.max_run_memory);
  info.set_memory_budget_bytes(options_.memory_budget);
  for (v1::WorkerInfo& worker : worker_pool_->List()) {
    *info.add_registered_workers() = std::move(worker);
  }
  info.set_queue_length(scheduler_->Length());
  return info;
}

std::vector<v1::Experiment> ExperimentRegistry::AllExperiments() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Experiment> all;
  for (const auto& job : by_age_) all.push_back(Describe(*job));
  return all;
}

bool ExperimentRegistry::shutting_down() const {
  absl::ReaderMutexLock lock(&mu_);
  return shutting_down_;
}

absl::Status ExperimentRegistry::ChangeRecord(Job& job,
                                              const std::function<void(v1::Experiment&)>& change,
                                              std::optional<v1::MetricsEvent> event,
                                              Publish publish) {
  v1::Experiment record;
  {
    absl::ReaderMutexLock lock(&job.mu);
    record = job.record;
  }
  change(record);
  absl::Status status;
  if (event.has_value()) status = job.log->Append(*std::move(event)).status();
  if (status.ok() && options_.store != nullptr) {
    status = options_.store->SaveExperiment(job.ordinal, job.request_id, record);
  }
  {
    absl::MutexLock lock(&job.mu);
    job.record = record;
  }
  if (publish == Publish::kYes) changes_.Publish(Describe(job));
  return status;
}

absl::Status ExperimentRegistry::ChangeState(Job& job, v1::ExperimentState state,
                                             const std::string& reason,
                                             const std::function<void(v1::Experiment&)>& change,
                                             Publish publish) {
  v1::MetricsEvent event;
  *event.mutable_time() = ToTimestamp(options_.clock());
  event.mutable_state_change()->set_state(state);
  event.mutable_state_change()->set_reason(reason);
  const absl::Status status = ChangeRecord(
      job,
      [&](v1::Experiment& record) {
        if (change) change(record);
        record.set_state(state);
        if (state == v1::FAILED) record.set_error(reason);
      },
      std::move(event), publish);
  if (IsFinished(state)) job.log->Close();
  LOG(INFO) << "experiment " << job.id << " (" << job.plan.spec.model << " on "
            << job.plan.spec.dataset << "): " << v1::ExperimentState_Name(state) << ": " << reason;
  if (!status.ok()) {
    LOG(ERROR) << "experiment " << job.id << ": cannot store its change to "
               << v1::ExperimentState_Name(state) << ": " << status;
  }
  return status;
}

absl::Status ExperimentRegistry::CommitEpoch(Job& job, v1::MetricsEvent epoch_event) {
  absl::MutexLock change(&job.change_mu);
  const v1::EpochMetrics metrics = epoch_event.epoch_metrics();
  return ChangeRecord(
      job,
      [&](v1::Experiment& record) {
        RecordEpoch(metrics, record);
        record.set_attempts_since_epoch(0);
      },
      std::move(epoch_event), Publish::kYes);
}

void ExperimentRegistry::RunJob(const std::shared_ptr<Job>& job) {
  absl::Status status = WaitForStateRoom(*job);
  {
    absl::MutexLock change(&job->change_mu);
    // Taken from the queue as shutdown began: it stays queued, in the store too.
    if (shutting_down()) return;
    // Again before it starts: the server may allow less than the one it was submitted to.
    if (status.ok()) {
      absl::StatusOr<MemoryEstimate> memory =
          EstimateRunMemory(job->plan.spec, job->plan.model_file);
      status = memory.ok() ? CheckRunMemory(*memory, job->plan.spec, options_.max_run_memory)
                           : memory.status();
    }
    if (status.ok()) {
      // Counted, and stored, before anything of the attempt can take the process down.
      ChangeState(*job, v1::RUNNING, job->resume_reason.empty() ? "started" : job->resume_reason,
                  [&](v1::Experiment& record) {
                    if (!record.has_started_time()) {
                      *record.mutable_started_time() = ToTimestamp(options_.clock());
                    }
                    record.set_attempts_since_epoch(record.attempts_since_epoch() + 1);
                  })
          .IgnoreError();  // logged; the run's first event fails it if the store is gone
    }
  }
  if (status.ok()) {
    status = TrainJob(*job, run_options_, [this](Job& trained, v1::MetricsEvent event) {
      return CommitEpoch(trained, std::move(event));
    });
  }
  std::vector<absl::Status> worker_notes;
  if (job->plan.spec.world_size > 1) worker_notes = worker_pool_->Release(job->id, job->attempts);

  std::vector<CancelDone> on_cancelled;
  v1::Experiment final_record;
  {
    absl::MutexLock change(&job->change_mu);
    const bool lost_rank = job->plan.spec.world_size > 1 && absl::IsUnavailable(status);
    if (shutting_down() && (absl::IsCancelled(status) || lost_rank)) {
      // Stopped by shutdown, not by a user: the experiment keeps its state (its streams
      // have already ended with UNAVAILABLE), and the attempt is not held against it.
      ChangeRecord(
          *job,
          [](v1::Experiment& record) {
            record.set_attempts_since_epoch(std::max(record.attempts_since_epoch() - 1, 0));
          },
          std::nullopt, Publish::kNo)
          .IgnoreError();  // at worst the attempt counts
      LOG(INFO) << "experiment " << job->id << " stopped by shutdown";
    } else if (lost_rank && !job->stop.load()) {
      Requeue(job, status, worker_notes);
    } else if (IsOutOfStateRoom(status) && !job->stop.load() && !shutting_down()) {
      RequeueForRoom(job, status);
    } else {  // A cancel that came while the group gathered ends as one.
      if (lost_rank) status = absl::CancelledError(status.message());
      if (status.ok()) {
        Finish(*job, v1::SUCCEEDED, "finished all epochs");
      } else if (absl::IsCancelled(status)) {
        Finish(*job, v1::CANCELLED, absl::StrCat("cancelled by request: ", status.message()));
      } else {
        Finish(*job, v1::FAILED, std::string(status.message()));
      }
    }
    {
      absl::MutexLock lock(&job->mu);
      on_cancelled.swap(job->on_cancelled);
    }
    final_record = Describe(*job);
  }
  for (auto& done : on_cancelled) {
    if (final_record.state() == v1::CANCELLED) {
      done(final_record);
    } else if (final_record.state() == v1::RUNNING) {
      done(absl::UnavailableError("server shutting down"));
    } else {
      done(absl::FailedPreconditionError(absl::StrCat(
          "experiment ", job->id, " finished (", v1::ExperimentState_Name(final_record.state()),
          ") before it could be cancelled")));
    }
  }
}

void ExperimentRegistry::Requeue(const std::shared_ptr<Job>& job, const absl::Status& status,
                                 const std::vector<absl::Status>& notes) {
  const LostRankVerdict verdict = JudgeLostRank(status, notes, AttemptsSinceEpoch(*job));
  if (!verdict.retry) return Finish(*job, v1::FAILED, verdict.reason);
  const std::string from = ResumeFromNewestCheckpoint(*job);
  job->resume_reason =
      absl::StrCat("attempt ", job->attempts + 1, " goes on from ", from, " after a rank was lost");
  // A slot that takes it at once waits for change_mu, so it starts from QUEUED.
  scheduler_->PushFront(job);
  ChangeState(
      *job, v1::QUEUED,
      absl::StrCat("a rank was lost: ", verdict.reason, "; queued again to go on from ", from,
                   " when ", IdleWorkers(job->plan.spec.world_size - 1), " are available"))
      .IgnoreError();  // logged
}

void ExperimentRegistry::RequeueForRoom(const std::shared_ptr<Job>& job,
                                        const absl::Status& status) {
  const int attempts_since_epoch = AttemptsSinceEpoch(*job);
  if (attempts_since_epoch >= kMaxAttemptsWithoutProgress) {
    return Finish(*job, v1::FAILED,
                  absl::StrCat("gave up after ", attempts_since_epoch,
                               " attempts in a row that finished no epoch, each stopped by a "
                               "full state folder; the last: ",
                               status.message()));
  }
  const std::string from = ResumeFromNewestCheckpoint(*job);
  job->resume_reason = absl::StrCat("the state folder has room again; goes on from ", from);
  // A slot that takes it at once waits for change_mu, then for room (WaitForStateRoom).
  scheduler_->PushFront(job);
  ChangeState(*job, v1::QUEUED,
              absl::StrCat(status.message(), "; queued again to go on from ", from,
                           " when the state folder has room"))
      .IgnoreError();  // logged; the reserve is there for it
}

absl::Status ExperimentRegistry::WaitForStateRoom(Job& job) {
  if (options_.store == nullptr) return absl::OkStatus();
  // Room for its next checkpoint beside those it keeps, with as much again to spare.
  int64_t checkpoint_bytes = 0;
  if (const std::vector<int> epochs = job.checkpoints->Epochs(); !epochs.empty()) {
    std::error_code error;
    checkpoint_bytes = static_cast<int64_t>(
        std::filesystem::file_size(job.checkpoints->PathOf(epochs.front()), error));
    if (error) checkpoint_bytes = 0;
  }
  bool waiting = false;
  while (true) {
    absl::Status room = options_.store->RestoreReserve(2 * checkpoint_bytes);
    if (room.ok()) {
      if (waiting) LOG(INFO) << "experiment " << job.id << ": the state folder has room again";
      return absl::OkStatus();
    }
    if (job.stop.load() || shutting_down()) {
      return absl::CancelledError("while it waited for room in the state folder");
    }
    if (!waiting) LOG(WARNING) << "experiment " << job.id << " waits for room: " << room;
    waiting = true;
    absl::SleepFor(options_.state_room_poll);
  }
}

void ExperimentRegistry::Finish(Job& job, v1::ExperimentState state, const std::string& reason) {
  ChangeState(job, state, reason, [&](v1::Experiment& record) {
    *record.mutable_finished_time() = ToTimestamp(options_.clock());
  }).IgnoreError();  // logged; the state stands in memory
  // Removes the checkpoints --keep_checkpoints does not keep.
  if (job.checkpoints == nullptr) return;
  std::set<int> keep;
  {
    absl::ReaderMutexLock lock(&job.mu);
    if (options_.keep_checkpoints.last) keep.insert(job.record.last_metrics().epoch());
    if (options_.keep_checkpoints.best) keep.insert(job.record.best_epoch());
  }
  if (absl::Status status = job.checkpoints->Prune(keep); !status.ok()) {
    LOG(WARNING) << "experiment " << job.id << ": " << status;
  }
}

void ExperimentRegistry::Shutdown() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    jobs = by_age_;
  }
  for (const auto& job : jobs) {
    job->stop.store(true);
    job->log->Abort(absl::UnavailableError("server shutting down"));
  }
  changes_.Close(absl::UnavailableError("server shutting down"));
  scheduler_->Stop();
}

}  // namespace gradlab
