#include "server/jobs/experiment_registry.h"

#include <glog/logging.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/experiment_state.h"
#include "common/spec_proto.h"
#include "common/thread_priority.h"
#include "common/version.h"
#include "server/engine/checkpoint.h"
#include "server/engine/dataset_request.h"
#include "server/engine/model_options.h"
#include "server/engine/trainer.h"
#include "server/jobs/lost_rank_policy.h"

namespace gradlab {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxRequestIdLength = 200;
constexpr int kIdLength = 8;

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return timestamp;
}

v1::EpochMetrics ToProto(const EpochMetrics& m) {
  v1::EpochMetrics proto;
  proto.set_epoch(m.epoch);
  proto.set_train_loss(m.train_loss);
  proto.set_train_accuracy(m.train_accuracy);
  proto.set_test_loss(m.test_loss);
  proto.set_test_accuracy(m.test_accuracy);
  proto.set_best_test_accuracy(m.best_test_accuracy);
  proto.set_learning_rate(m.learning_rate);
  proto.set_epoch_seconds(m.epoch_seconds);
  proto.set_images_per_second(m.images_per_second);
  return proto;
}

v1::BatchProgress ToProto(const BatchProgress& p) {
  v1::BatchProgress proto;
  proto.set_epoch(p.epoch);
  proto.set_batch(p.batch);
  proto.set_batches(p.batches);
  proto.set_running_loss(p.running_loss);
  proto.set_running_accuracy(p.running_accuracy);
  proto.set_images_per_second(p.images_per_second);
  return proto;
}

v1::GradientSnapshot ToProto(const GradientSnapshot& s) {
  v1::GradientSnapshot proto;
  proto.set_step(s.step);
  proto.set_epoch(s.epoch);
  proto.set_batch(s.batch);
  for (const LayerGradient& g : s.gradients) {
    v1::LayerGradient* layer = proto.add_layers();
    layer->set_name(g.name);
    layer->set_grad_norm(g.grad_norm);
    layer->set_weight_norm(g.weight_norm);
    layer->set_ratio(g.ratio);
  }
  for (const LayerActivation& a : s.activations) {
    v1::LayerActivation* activation = proto.add_activations();
    activation->set_name(a.name);
    activation->set_std(a.std);
  }
  return proto;
}

// The model a default spec builds, at the input ServerInfo describes it with: CIFAR-10's
// for the conv models, MNIST's for the mlp (the sizes the reference table gives).
ModelOptions DefaultModelOptions(const ExperimentSpec& spec) {
  ModelOptions options;
  options.model = spec.model;
  options.batch_norm = spec.batch_norm.value_or(false);
  if (spec.model == "mlp") {
    options.in_channels = 1;
    options.height = options.width = 28;
  }
  return options;
}

// Takes an epoch's metrics into the record: current epoch, last metrics, best.
void RecordEpoch(const v1::EpochMetrics& metrics, v1::Experiment& record) {
  record.set_current_epoch(metrics.epoch());
  *record.mutable_last_metrics() = metrics;
  if (record.best_epoch() == 0 || metrics.test_accuracy() > record.best_test_accuracy()) {
    record.set_best_epoch(metrics.epoch());
  }
  record.set_best_test_accuracy(metrics.best_test_accuracy());
}

bool AfterEpoch(const v1::MetricsEvent& event, int epoch) {
  return (event.has_batch_progress() && event.batch_progress().epoch() > epoch) ||
         (event.has_epoch_metrics() && event.epoch_metrics().epoch() > epoch);
}

// Where an interrupted run goes on: the newest checkpoint that reads back whole, if any.
struct ResumePoint {
  std::optional<std::string> state;
  std::optional<EpochMetrics> metrics;  // of the checkpoint's epoch
  std::vector<std::string> unusable;    // the newer checkpoints skipped, and why
  int epoch() const { return metrics.has_value() ? metrics->epoch : 0; }
};

ResumePoint FindResumePoint(const CheckpointFiles& files) {
  ResumePoint resume;
  for (int epoch : files.Epochs()) {
    absl::StatusOr<std::string> state = files.Read(epoch);
    absl::StatusOr<EpochMetrics> metrics = state.ok() ? CheckpointMetrics(*state) : state.status();
    if (metrics.ok() && metrics->epoch == epoch) {
      resume.state = *std::move(state);
      resume.metrics = *metrics;
      break;
    }
    resume.unusable.push_back(absl::StrCat("the checkpoint of epoch ", epoch, " is unusable (",
                                           metrics.status().message(), ")"));
  }
  return resume;
}

// Drops what a run resumed after `epoch` will log again (as ExperimentStore does).
void DropEventsAfterEpoch(int epoch, StoredExperiment& stored) {
  auto& metrics = stored.metrics;
  metrics.erase(std::remove_if(metrics.begin(), metrics.end(),
                               [&](const v1::MetricsEvent& e) { return AfterEpoch(e, epoch); }),
                metrics.end());
  auto& gradients = stored.gradients;
  gradients.erase(std::remove_if(gradients.begin(), gradients.end(),
                                 [&](const v1::GradientSnapshot& g) { return g.epoch() > epoch; }),
                  gradients.end());
}

// Sets the record's current epoch, last metrics and best from the epochs in `events`.
void ResetEpochFields(const std::vector<v1::MetricsEvent>& events, v1::Experiment& record) {
  record.clear_last_metrics();
  record.set_current_epoch(0);
  record.set_best_epoch(0);
  record.set_best_test_accuracy(0);
  for (const v1::MetricsEvent& event : events) {
    if (event.has_epoch_metrics()) RecordEpoch(event.epoch_metrics(), record);
  }
}

// "1 idle worker", "2 idle workers".
std::string IdleWorkers(int count) {
  return absl::StrCat(count, count == 1 ? " idle worker" : " idle workers");
}

// An error of the store or of a checkpoint write that ends a run, said as such.
absl::Status RunStorageError(absl::string_view what, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

}  // namespace

// One experiment. `record` and `on_cancelled` are guarded by the registry's mu_;
// `resume_state` belongs to the worker that runs the job; the rest is set before the job
// is shared and never changes (`stop` is atomic).
struct ExperimentRegistry::Job {
  std::string id;
  int64_t ordinal = 0;  // creation order, for listing and page tokens
  std::string request_id;
  ExperimentSpec spec;  // resolved
  std::shared_ptr<ExperimentLog> log;
  std::unique_ptr<CheckpointFiles> checkpoints;  // null without a store
  std::atomic<bool> stop{false};
  v1::Experiment record;
  std::vector<std::function<void(absl::StatusOr<v1::Experiment>)>> on_cancelled;
  // Set when restored after a restart: the checkpoint to go on from, and what to say.
  std::optional<std::string> resume_state;
  std::string resume_reason;
  // Data-parallel attempts: how many have started, and how many in a row ended without
  // finishing an epoch (guarded by mu_).
  int attempts = 0;
  int attempts_without_progress = 0;
  int epochs_this_attempt = 0;
};

// Turns a run's events into the API's messages, appends them to the job's log and keeps
// the experiment's record current. Runs on the worker thread. The first event the store
// fails to take stops the run; error() then says why.
class ExperimentRegistry::JobSink : public TrainingEventSink {
 public:
  JobSink(ExperimentRegistry& registry, Job& job) : registry_(registry), job_(job) {}

  void OnBatchProgress(const BatchProgress& progress) override {
    {
      absl::MutexLock lock(&registry_.mu_);
      job_.record.set_current_epoch(progress.epoch);
    }
    v1::MetricsEvent event = NewEvent();
    *event.mutable_batch_progress() = ToProto(progress);
    Check(job_.log->Append(std::move(event)).status());
  }

  void OnEpochMetrics(const EpochMetrics& metrics) override {
    v1::MetricsEvent event = NewEvent();
    *event.mutable_epoch_metrics() = ToProto(metrics);
    {
      absl::MutexLock lock(&registry_.mu_);
      RecordEpoch(event.epoch_metrics(), job_.record);
      ++job_.epochs_this_attempt;
      Check(job_.log->Append(std::move(event)).status());
      Check(registry_.SaveRecord(job_));
    }
    registry_.NotifyChange(job_.id);
  }

  void OnGradientSnapshot(const GradientSnapshot& snapshot) override {
    v1::GradientSnapshot proto = ToProto(snapshot);
    *proto.mutable_time() = ToTimestamp(registry_.options_.clock());
    Check(job_.log->Append(std::move(proto)).status());
  }

  const absl::Status& error() const { return error_; }

 private:
  v1::MetricsEvent NewEvent() {
    v1::MetricsEvent event;
    *event.mutable_time() = ToTimestamp(registry_.options_.clock());
    return event;
  }

  void Check(const absl::Status& status) {
    if (status.ok() || !error_.ok()) return;
    error_ = RunStorageError("cannot store the run's events", status);
    job_.stop.store(true);
  }

  ExperimentRegistry& registry_;
  Job& job_;
  absl::Status error_;
};

ExperimentRegistry::ExperimentRegistry(RegistryOptions options) : options_(std::move(options)) {
  for (const std::string& model : ModelNames()) {
    v1::ModelInfo info;
    info.set_name(model);
    ExperimentSpec spec;
    spec.model = model;
    spec = ResolveSpec(spec).value_or(spec);
    const ModelOptions model_options = DefaultModelOptions(spec);
    info.set_parameter_count(CountParameters(model_options).value_or(0));
    info.set_input_shape(absl::StrCat(model_options.in_channels, "x", model_options.height, "x",
                                      model_options.width));
    *info.mutable_default_spec() = SpecToProto(spec);
    model_infos_.push_back(std::move(info));
  }
  worker_pool_ = std::make_unique<WorkerPool>(options_.worker_pool, [this] {
    // absl::Mutex evaluates its waiters' conditions when it is released: the training
    // threads look at the queue (and the idle workers) again.
    absl::MutexLock lock(&mu_);
  });
  for (int i = 0; i < std::max(options_.workers, 1); ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ExperimentRegistry::~ExperimentRegistry() { Shutdown(); }

absl::StatusOr<std::unique_ptr<ExperimentRegistry>> ExperimentRegistry::Open(
    RegistryOptions options) {
  auto registry = std::make_unique<ExperimentRegistry>(std::move(options));
  if (absl::Status status = registry->Restore(); !status.ok()) {
    registry->Shutdown();
    return status;
  }
  return registry;
}

std::shared_ptr<ExperimentRegistry::Job> ExperimentRegistry::NewJob(const std::string& id,
                                                                    int64_t ordinal,
                                                                    const ExperimentSpec& spec,
                                                                    const std::string& request_id) {
  auto job = std::make_shared<Job>();
  job->id = id;
  job->ordinal = ordinal;
  job->request_id = request_id;
  job->spec = spec;
  std::unique_ptr<EventJournal> journal;
  if (options_.store != nullptr) {
    journal = options_.store->Journal(id);
    job->checkpoints = std::make_unique<CheckpointFiles>(
        (std::filesystem::path(options_.store->state_dir()) / "checkpoints" / id).string(),
        options_.checkpoint_hook);
  }
  job->log = std::make_shared<ExperimentLog>(options_.retention, &notifier_, std::move(journal));
  return job;
}

absl::Status ExperimentRegistry::Restore() {
  if (options_.store == nullptr) return absl::OkStatus();
  absl::StatusOr<std::vector<StoredExperiment>> stored = options_.store->LoadAll();
  if (!stored.ok()) return stored.status();
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Job>> queued;
  std::vector<std::pair<std::shared_ptr<Job>, std::string>> interrupted;  // and why requeued
  for (StoredExperiment& experiment : *stored) {
    std::shared_ptr<Job> job =
        NewJob(experiment.record.id(), experiment.ordinal, SpecFromProto(experiment.record.spec()),
               experiment.request_id);
    job->record = std::move(experiment.record);
    job->record.set_queue_position(0);
    const v1::ExperimentState state = job->record.state();
    // An interrupted run goes on from its newest readable checkpoint; what it logged
    // after that checkpoint's epoch will be logged again.
    ResumePoint resume;
    // Started before: RUNNING, or queued again after an earlier restart.
    if (!IsFinished(state) && job->record.has_started_time()) {
      resume = FindResumePoint(*job->checkpoints);
      if (absl::Status status = options_.store->DropEventsAfterEpoch(job->id, resume.epoch());
          !status.ok()) {
        return status;
      }
      DropEventsAfterEpoch(resume.epoch(), experiment);
      ResetEpochFields(experiment.metrics, job->record);
      job->resume_state = std::move(resume.state);
      job->resume_reason =
          resume.metrics.has_value()
              ? absl::StrCat("resumed after a restart from the checkpoint of epoch ",
                             resume.epoch())
              : "started again from epoch 1 after a restart: no usable checkpoint";
      for (const std::string& note : resume.unusable) {
        absl::StrAppend(&job->resume_reason, "; ", note);
      }
      interrupted.emplace_back(
          job, absl::StrCat("queued again after a restart, to go on from ",
                            resume.metrics.has_value()
                                ? absl::StrCat("the checkpoint of epoch ", resume.epoch())
                                : std::string("epoch 1")));
    } else if (!IsFinished(state)) {
      queued.push_back(job);
    }
    // Finished experiments get no more events; the others number theirs past any event
    // that was sent but not yet stored when the server stopped.
    job->log->Restore(std::move(experiment.metrics), std::move(experiment.gradients),
                      IsFinished(state) ? experiment.last_sequence
                                        : experiment.last_sequence + kMaxUncommittedEvents);
    if (IsFinished(state)) job->log->Close();
    // A checkpoint written just before the crash whose metrics were not yet stored: the
    // checkpoint has them.
    if (resume.metrics.has_value() && job->record.current_epoch() < resume.epoch()) {
      v1::MetricsEvent event;
      *event.mutable_time() = ToTimestamp(options_.clock());
      *event.mutable_epoch_metrics() = ToProto(*resume.metrics);
      RecordEpoch(event.epoch_metrics(), job->record);
      if (absl::StatusOr<int64_t> appended = job->log->Append(std::move(event)); !appended.ok()) {
        return appended.status();
      }
    }
    jobs_.emplace(job->id, job);
    by_age_.push_back(job);
    if (!job->request_id.empty()) request_ids_[job->request_id] = job->id;
  }
  for (auto& [job, reason] : interrupted) queue_.push_back(job);
  for (auto& job : queued) queue_.push_back(job);
  for (auto& [job, reason] : interrupted) {
    if (absl::Status status = ChangeState(*job, v1::QUEUED, reason); !status.ok()) return status;
  }
  LOG(INFO) << "restored " << by_age_.size() << " experiments from "
            << options_.store->database_path() << " (" << interrupted.size() << " interrupted, "
            << queued.size() << " queued)";
  return absl::OkStatus();
}

std::string ExperimentRegistry::NewId() {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";  // no l, o, 0, 1
  absl::BitGen random;
  while (true) {
    std::string id;
    for (int i = 0; i < kIdLength; ++i) {
      id.push_back(kAlphabet[absl::Uniform<size_t>(random, 0, sizeof(kAlphabet) - 1)]);
    }
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
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto it = request_ids_.find(request.request_id());
        !request.request_id().empty() && it != request_ids_.end()) {
      return Describe(**FindJob(it->second));
    }
  }
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(request.spec()));
  if (!spec.ok()) return spec.status();
  if (spec->threads > options_.threads_per_job) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.threads: ", spec->threads, " is more than this server's threads per job (",
        options_.threads_per_job, "); allowed: 0 to ", options_.threads_per_job));
  }
  if (spec->threads == 0) spec->threads = options_.threads_per_job;
  absl::StatusOr<std::string> location = LocateDataset(
      spec->dataset, DatasetSearchPath(spec->dataset, spec->data_dir, options_.data_dir));
  if (!location.ok()) return location.status();
  spec->data_dir = *location;

  std::shared_ptr<Job> job;
  v1::Experiment queued;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server shutting down");
    // A concurrent request with the same id may have won the race since the check above.
    if (auto it = request_ids_.find(request.request_id());
        !request.request_id().empty() && it != request_ids_.end()) {
      return Describe(**FindJob(it->second));
    }
    if (static_cast<int>(queue_.size()) >= options_.max_queue) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the queue is full: ", queue_.size(),
                       " experiments are waiting, the limit (--max_queue) is ", options_.max_queue,
                       "; try again when some have finished"));
    }
    job = NewJob(NewId(), by_age_.empty() ? 1 : by_age_.back()->ordinal + 1, *spec,
                 request.request_id());
    job->record.set_id(job->id);
    job->record.set_name(spec->name);
    *job->record.mutable_spec() = SpecToProto(*spec);
    *job->record.mutable_created_time() = ToTimestamp(options_.clock());
    // Stored (and synced) before anyone hears of it: once this returns, the experiment
    // survives a crash.
    std::string reason = absl::StrCat("queued at position ", queue_.size() + 1);
    if (spec->world_size > 1) {
      absl::StrAppend(&reason, "; needs ", IdleWorkers(spec->world_size - 1), ", ",
                      worker_pool_->IdleCount(), " of ", worker_pool_->Count(),
                      " registered are idle now");
    }
    if (absl::Status status = ChangeState(*job, v1::QUEUED, reason); !status.ok()) {
      LOG(ERROR) << "cannot store a new experiment: " << status;
      return RunStorageError("cannot store the new experiment", status);
    }
    jobs_.emplace(job->id, job);
    by_age_.push_back(job);
    queue_.push_back(job);
    if (!request.request_id().empty()) request_ids_[request.request_id()] = job->id;
    // Described before a worker can take it: the caller learns it was queued, and where.
    queued = Describe(*job);
  }
  NotifyChange(job->id);
  return queued;
}

absl::StatusOr<std::shared_ptr<ExperimentRegistry::Job>> ExperimentRegistry::FindJob(
    absl::string_view id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no experiment with id \"", id, "\""));
  }
  return it->second;
}

v1::Experiment ExperimentRegistry::Describe(const Job& job) const {
  v1::Experiment experiment = job.record;
  if (experiment.state() == v1::QUEUED) {
    auto it = std::find_if(queue_.begin(), queue_.end(), [&](const std::shared_ptr<Job>& queued) {
      return queued.get() == &job;
    });
    if (it != queue_.end())
      experiment.set_queue_position(static_cast<int32_t>(it - queue_.begin()) + 1);
  }
  return experiment;
}

absl::StatusOr<v1::Experiment> ExperimentRegistry::GetExperiment(absl::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<std::shared_ptr<Job>> job = FindJob(id);
  if (!job.ok()) return job.status();
  return Describe(**job);
}

absl::StatusOr<v1::ListExperimentsResponse> ExperimentRegistry::ListExperiments(
    const v1::ListExperimentsRequest& request) const {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: ", request.page_size(),
                                                   " is out of range [0, ", kMaxPageSize, "]"));
  }
  const int page_size =
      request.page_size() == 0 ? kDefaultPageSize : std::min(request.page_size(), kMaxPageSize);
  // The token is the ordinal of the last experiment of the previous page.
  int64_t before = INT64_MAX;
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &before) || before <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token: \"", request.page_token(),
                                                   "\" is not a token this server gave out"));
  }
  v1::ListExperimentsResponse response;
  absl::ReaderMutexLock lock(&mu_);
  int64_t last_ordinal = 0;
  for (auto it = by_age_.rbegin(); it != by_age_.rend(); ++it) {
    const Job& job = **it;
    if (job.ordinal >= before) continue;
    if (request.state() != v1::EXPERIMENT_STATE_UNSPECIFIED &&
        job.record.state() != request.state()) {
      continue;
    }
    if (response.experiments_size() == page_size) {
      response.set_next_page_token(absl::StrCat(last_ordinal));
      break;
    }
    *response.add_experiments() = Describe(job);
    last_ordinal = job.ordinal;
  }
  return response;
}

void ExperimentRegistry::CancelExperiment(
    absl::string_view id, std::function<void(absl::StatusOr<v1::Experiment>)> done) {
  absl::StatusOr<v1::Experiment> answer;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::shared_ptr<Job>> found = FindJob(id);
    if (!found.ok()) {
      answer = found.status();
    } else if (Job& job = **found; IsFinished(job.record.state())) {
      answer = absl::FailedPreconditionError(
          absl::StrCat("experiment ", id, " has already finished (",
                       v1::ExperimentState_Name(job.record.state()), ")"));
    } else if (job.record.state() == v1::QUEUED) {
      queue_.erase(std::find(queue_.begin(), queue_.end(), *found));
      job.record.set_queue_position(0);
      *job.record.mutable_finished_time() = ToTimestamp(options_.clock());
      ChangeState(job, v1::CANCELLED, "cancelled by request while queued").IgnoreError();
      answer = Describe(job);
    } else {
      // Running: the worker stops at the next batch and answers when it has.
      job.stop.store(true);
      job.on_cancelled.push_back(std::move(done));
      return;
    }
  }
  if (answer.ok()) NotifyChange(std::string(id));
  done(std::move(answer));
}

absl::Status ExperimentRegistry::DeleteExperiment(absl::string_view id) {
  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::shared_ptr<Job>> found = FindJob(id);
    if (!found.ok()) return found.status();
    job = *std::move(found);
    if (!IsFinished(job->record.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("experiment ", id, " is ", v1::ExperimentState_Name(job->record.state()),
                       "; only finished experiments can be deleted (cancel it first)"));
    }
    if (options_.store != nullptr) {
      if (absl::Status status = options_.store->DeleteExperiment(job->id); !status.ok()) {
        return status;
      }
    }
    jobs_.erase(job->id);
    by_age_.erase(std::find(by_age_.begin(), by_age_.end(), job));
    if (!job->request_id.empty()) request_ids_.erase(job->request_id);
  }
  LOG(INFO) << "experiment " << job->id << ": deleted";
  NotifyChange(job->id);
  if (job->checkpoints != nullptr) {
    if (absl::Status status = job->checkpoints->RemoveAll(); !status.ok()) {
      LOG(WARNING) << "experiment " << job->id << " deleted, but not its checkpoints: " << status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExportedModel> ExperimentRegistry::ExportModel(
    absl::string_view id, v1::ExportModelRequest::Which which) const {
  std::shared_ptr<Job> job;
  int epoch = 0;
  {
    absl::ReaderMutexLock lock(&mu_);
    absl::StatusOr<std::shared_ptr<Job>> found = FindJob(id);
    if (!found.ok()) return found.status();
    job = *std::move(found);
    if (job->record.last_metrics().epoch() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "experiment ", id, " has not finished an epoch yet: there is no model to export"));
    }
    epoch = which == v1::ExportModelRequest::LAST ? job->record.last_metrics().epoch()
                                                  : job->record.best_epoch();
  }
  if (job->checkpoints == nullptr) {
    return absl::FailedPreconditionError(
        "this server keeps no checkpoints (it runs without --state_dir), so it has no model to "
        "export");
  }
  absl::StatusOr<std::string> state = job->checkpoints->Read(epoch);
  if (absl::IsNotFound(state.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("the checkpoint of epoch ", epoch, " of experiment ", id,
                     " was not kept (gradlabd's --keep_checkpoints); the kept epochs: ",
                     absl::StrJoin(job->checkpoints->Epochs(), ", ")));
  }
  if (!state.ok()) return state.status();
  absl::StatusOr<std::string> state_dict = ExportStateDict(*state);
  if (!state_dict.ok()) return state_dict.status();
  return ExportedModel{epoch, *std::move(state_dict)};
}

absl::StatusOr<std::shared_ptr<ExperimentLog>> ExperimentRegistry::EventLog(
    absl::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<std::shared_ptr<Job>> job = FindJob(id);
  if (!job.ok()) return job.status();
  return (*job)->log;
}

v1::ServerInfo ExperimentRegistry::ServerInfo() const {
  v1::ServerInfo info;
  info.set_version(kGradlabVersion);
  for (const v1::ModelInfo& model : model_infos_) *info.add_models() = model;
  for (const std::string& name : DatasetNames()) {
    v1::DatasetInfo* dataset = info.add_datasets();
    dataset->set_name(name);
    absl::StatusOr<std::string> location =
        LocateDataset(name, DatasetSearchPath(name, "", options_.data_dir));
    dataset->set_present(location.ok());
    dataset->set_location(location.ok()
                              ? (location->empty() ? "generated from the seed" : *location)
                              : std::string(location.status().message()));
  }
  info.set_workers(static_cast<int32_t>(workers_.size()));
  info.set_threads_per_job(options_.threads_per_job);
  info.set_queue_capacity(options_.max_queue);
  for (v1::WorkerInfo& worker : worker_pool_->List()) {
    *info.add_registered_workers() = std::move(worker);
  }
  absl::ReaderMutexLock lock(&mu_);
  info.set_queue_length(static_cast<int32_t>(queue_.size()));
  return info;
}

std::vector<v1::Experiment> ExperimentRegistry::AllExperiments() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Experiment> all;
  for (const auto& job : by_age_) all.push_back(Describe(*job));
  return all;
}

int64_t ExperimentRegistry::AddChangeListener(std::function<void(const std::string&)> listener) {
  absl::MutexLock lock(&listeners_mu_);
  const int64_t handle = next_listener_++;
  listeners_.emplace(handle, std::move(listener));
  return handle;
}

void ExperimentRegistry::RemoveChangeListener(int64_t handle) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.erase(handle);
}

void ExperimentRegistry::NotifyChange(const std::string& id) {
  absl::MutexLock lock(&listeners_mu_);
  for (auto& [handle, listener] : listeners_) listener(id);
}

bool ExperimentRegistry::shutting_down() const {
  absl::ReaderMutexLock lock(&mu_);
  return shutting_down_;
}

absl::Status ExperimentRegistry::SaveRecord(const Job& job) const {
  if (options_.store == nullptr) return absl::OkStatus();
  return options_.store->SaveExperiment(job.ordinal, job.request_id, job.record);
}

absl::Status ExperimentRegistry::ChangeState(Job& job, v1::ExperimentState state,
                                             const std::string& reason) {
  job.record.set_state(state);
  if (state == v1::FAILED) job.record.set_error(reason);
  v1::MetricsEvent event;
  *event.mutable_time() = ToTimestamp(options_.clock());
  event.mutable_state_change()->set_state(state);
  event.mutable_state_change()->set_reason(reason);
  absl::Status status = job.log->Append(std::move(event)).status();
  if (status.ok()) status = SaveRecord(job);
  if (IsFinished(state)) job.log->Close();
  LOG(INFO) << "experiment " << job.id << " (" << job.spec.model << " on " << job.spec.dataset
            << "): " << v1::ExperimentState_Name(state) << ": " << reason;
  if (!status.ok()) {
    LOG(ERROR) << "experiment " << job.id << ": cannot store its change to "
               << v1::ExperimentState_Name(state) << ": " << status;
  }
  return status;
}

std::deque<std::shared_ptr<ExperimentRegistry::Job>>::iterator ExperimentRegistry::FirstRunnable() {
  const int idle_workers = worker_pool_->IdleCount();
  return std::find_if(queue_.begin(), queue_.end(), [&](const std::shared_ptr<Job>& job) {
    return job->spec.world_size - 1 <= idle_workers;
  });
}

bool ExperimentRegistry::HasRunnableJob() { return FirstRunnable() != queue_.end(); }

void ExperimentRegistry::WorkerLoop(int slot) {
  if (absl::Status lowered = LowerThisThreadsPriority(options_.training_niceness); !lowered.ok()) {
    LOG(WARNING) << lowered.message();
  }
  while (true) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ExperimentRegistry* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return self->shutting_down_ || self->HasRunnableJob();
          },
          this));
      if (shutting_down_) return;
      const auto runnable = FirstRunnable();
      job = *runnable;
      if (job->spec.world_size > 1) {
        RankRequest ranks;
        ranks.experiment_id = job->id;
        ranks.attempt = job->attempts + 1;
        ranks.spec = job->record.spec();
        ranks.world_size = job->spec.world_size;
        ranks.store_host = options_.advertise_address;
        ranks.store_port = options_.rendezvous_port + slot;
        ranks.timeout = options_.collective_timeout;
        // A worker may have gone since FirstRunnable counted it; look again.
        if (!worker_pool_->Reserve(ranks).ok()) continue;
        ++job->attempts;
      }
      job->epochs_this_attempt = 0;
      queue_.erase(runnable);
      if (!job->record.has_started_time()) {
        *job->record.mutable_started_time() = ToTimestamp(options_.clock());
      }
      ChangeState(*job, v1::RUNNING,
                  job->resume_reason.empty() ? "started" : job->resume_reason)
          .IgnoreError();  // logged; the run's first event fails it if the store is gone  //
                           // logged; the run's first event will fail it if the store is gone
    }
    NotifyChange(job->id);
    RunJob(job, slot);
  }
}

void ExperimentRegistry::RunJob(const std::shared_ptr<Job>& job, int slot) {
  absl::Status status;
  absl::StatusOr<std::shared_ptr<const Dataset>> dataset =
      LoadSharedDataset(DatasetRequestFor(job->spec));
  if (!dataset.ok()) {
    status = dataset.status();
  } else {
    TrainingControl control;
    control.stop_requested = &job->stop;
    control.clock = options_.clock;
    control.progress_interval = options_.progress_interval;
    if (job->checkpoints != nullptr) {
      control.save_checkpoint = [this, &job](const TrainingCheckpoint& checkpoint) {
        return SaveCheckpoint(*job, checkpoint);
      };
    }
    if (job->resume_state.has_value()) control.resume_from = &*job->resume_state;
    JobSink sink(*this, *job);
    if (job->spec.world_size > 1) {
      ProcessGroupOptions group;
      group.store_host = "127.0.0.1";  // rank 0 hosts the store
      group.store_port = options_.rendezvous_port + slot;
      group.local_address = options_.advertise_address;
      group.world_size = job->spec.world_size;
      group.timeout = options_.collective_timeout;
      status = TrainRank(job->spec, **dataset, group, control, sink);
    } else {
      status = Train(job->spec, **dataset, control, sink);
    }
    if (!sink.error().ok()) status = sink.error();
  }
  std::vector<absl::Status> worker_notes;
  ResumePoint resume;  // where a data-parallel run that lost a rank goes on from
  if (job->spec.world_size > 1) {
    worker_notes = worker_pool_->Release(job->id, job->attempts);
    // Read before taking mu_: it reads checkpoints from disk.
    if (absl::IsUnavailable(status) && job->checkpoints != nullptr) {
      resume = FindResumePoint(*job->checkpoints);
    }
  }
  job->resume_state.reset();
  if (absl::Status flushed = job->log->FlushJournal(); !flushed.ok() && status.ok()) {
    status = RunStorageError("cannot store the run's events", flushed);
  }

  std::vector<std::function<void(absl::StatusOr<v1::Experiment>)>> on_cancelled;
  v1::Experiment final_record;
  {
    absl::MutexLock lock(&mu_);
    const bool lost_rank = job->spec.world_size > 1 && absl::IsUnavailable(status);
    if (shutting_down_ && (absl::IsCancelled(status) || lost_rank)) {
      // Stopped by shutdown, not by a user: the experiment keeps its state; its streams
      // have already ended with UNAVAILABLE.
      LOG(INFO) << "experiment " << job->id << " stopped by shutdown";
    } else if (lost_rank && !job->stop.load()) {
      Requeue(job, status, worker_notes, std::move(resume.state), resume.epoch());
    } else {
      // A cancel that came while the group gathered ends as one.
      if (lost_rank) status = absl::CancelledError(status.message());
      *job->record.mutable_finished_time() = ToTimestamp(options_.clock());
      absl::Status stored;
      if (status.ok()) {
        stored = ChangeState(*job, v1::SUCCEEDED, "finished all epochs");
      } else if (absl::IsCancelled(status)) {
        stored = ChangeState(*job, v1::CANCELLED,
                             absl::StrCat("cancelled by request: ", status.message()));
      } else {
        stored = ChangeState(*job, v1::FAILED, std::string(status.message()));
      }
      stored.IgnoreError();  // logged; the state stands in memory
      PruneFinished(*job);
    }
    on_cancelled.swap(job->on_cancelled);
    final_record = Describe(*job);
  }
  NotifyChange(job->id);
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

void ExperimentRegistry::Requeue(const std::shared_ptr<Job>& shared_job, const absl::Status& status,
                                 const std::vector<absl::Status>& notes,
                                 std::optional<std::string> resume_state, int resume_epoch) {
  Job& job = *shared_job;
  const LostRankVerdict verdict =
      JudgeLostRank(status, notes, job.epochs_this_attempt, job.attempts_without_progress);
  if (!verdict.retry) {
    *job.record.mutable_finished_time() = ToTimestamp(options_.clock());
    ChangeState(job, v1::FAILED, verdict.reason).IgnoreError();  // logged
    PruneFinished(job);
    return;
  }
  job.attempts_without_progress = verdict.attempts_without_progress;
  const std::string from = resume_state.has_value()
                               ? absl::StrCat("the checkpoint of epoch ", resume_epoch)
                               : std::string("epoch 1");
  job.resume_state = std::move(resume_state);
  job.resume_reason =
      absl::StrCat("attempt ", job.attempts + 1, " goes on from ", from, " after a rank was lost");
  queue_.push_front(shared_job);
  ChangeState(job, v1::QUEUED,
              absl::StrCat("a rank was lost: ", verdict.reason, "; queued again to go on from ",
                           from, " when ", IdleWorkers(job.spec.world_size - 1), " are available"))
      .IgnoreError();  // logged
}

absl::Status ExperimentRegistry::SaveCheckpoint(Job& job, const TrainingCheckpoint& checkpoint) {
  const int epoch = checkpoint.metrics.epoch;
  if (absl::Status status = job.checkpoints->Save(epoch, checkpoint.state); !status.ok()) {
    return RunStorageError(absl::StrCat("cannot save the checkpoint of epoch ", epoch), status);
  }
  int best_epoch = epoch;
  {
    absl::ReaderMutexLock lock(&mu_);
    // The record learns of this epoch only after its checkpoint is safe.
    if (job.record.best_epoch() > 0 &&
        checkpoint.metrics.test_accuracy <= job.record.best_test_accuracy()) {
      best_epoch = job.record.best_epoch();
    }
  }
  // The newest two (the previous one is the fallback should this one be damaged) and the best.
  if (absl::Status status = job.checkpoints->Prune({epoch, epoch - 1, best_epoch}); !status.ok()) {
    LOG(WARNING) << "experiment " << job.id << ": " << status;
  }
  return absl::OkStatus();
}

void ExperimentRegistry::PruneFinished(const Job& job) {
  if (job.checkpoints == nullptr) return;
  std::set<int> keep;
  if (options_.keep_checkpoints.last) keep.insert(job.record.last_metrics().epoch());
  if (options_.keep_checkpoints.best) keep.insert(job.record.best_epoch());
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
  NotifyChange("");
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

}  // namespace gradlab
