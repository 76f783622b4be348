#include "server/experiments/training_run.h"

#include <glog/logging.h>

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/free_memory.h"
#include "server/engine/checkpoint.h"
#include "server/engine/dataset_request.h"
#include "server/engine/trainer.h"
#include "server/experiments/event_protos.h"

namespace gradlab {
namespace {

constexpr char kOutOfRoomPayload[] = "gradlab.dev/out-of-state-room";

// An error of the store or of a checkpoint write that ends a run, said as such; one for
// lack of space is marked, for IsOutOfStateRoom.
absl::Status RunStorageError(absl::string_view what, const absl::Status& status) {
  absl::Status error(status.code(), absl::StrCat(what, ": ", status.message()));
  if (absl::IsResourceExhausted(status)) error.SetPayload(kOutOfRoomPayload, absl::Cord());
  return error;
}

// Turns a run's events into the API's messages and hands them on. Runs on the training
// slot's thread. The first event that cannot be stored stops the run; error() says why.
class JobSink : public TrainingEventSink {
 public:
  JobSink(Job& job, const TrainingRunOptions& options, const EpochRecorder& record_epoch)
      : job_(job), options_(options), record_epoch_(record_epoch) {}

  void OnBatchProgress(const BatchProgress& progress) override {
    bool new_epoch;
    {
      absl::ReaderMutexLock lock(&job_.mu);
      new_epoch = job_.record.current_epoch() != progress.epoch;
    }
    if (new_epoch) {
      // Under change_mu, as every change of the record, so that a change being stored
      // does not put the old epoch back; once an epoch, so a store's write seldom holds
      // the training up.
      absl::MutexLock change(&job_.change_mu);
      absl::MutexLock lock(&job_.mu);
      job_.record.set_current_epoch(progress.epoch);
    }
    v1::MetricsEvent event = NewEvent();
    *event.mutable_batch_progress() = ToProto(progress);
    Check(job_.log->Append(std::move(event)).status());
  }

  void OnEpochMetrics(const EpochMetrics& metrics) override {
    v1::MetricsEvent event = NewEvent();
    *event.mutable_epoch_metrics() = ToProto(metrics);
    Check(record_epoch_(job_, std::move(event)));
  }

  void OnPredictions(const Predictions& predictions) override {
    v1::MetricsEvent event = NewEvent();
    *event.mutable_predictions() = ToProto(predictions);
    Check(job_.log->Append(std::move(event)).status());
  }

  void OnGradientSnapshot(const GradientSnapshot& snapshot) override {
    v1::GradientSnapshot proto = ToProto(snapshot);
    *proto.mutable_time() = ToTimestamp(options_.clock());
    Check(job_.log->Append(std::move(proto)).status());
  }

  const absl::Status& error() const { return error_; }

 private:
  v1::MetricsEvent NewEvent() {
    v1::MetricsEvent event;
    *event.mutable_time() = ToTimestamp(options_.clock());
    return event;
  }

  void Check(const absl::Status& status) {
    if (status.ok() || !error_.ok()) return;
    error_ = RunStorageError("cannot store the run's events", status);
    job_.stop.store(true);
  }

  Job& job_;
  const TrainingRunOptions& options_;
  const EpochRecorder& record_epoch_;
  absl::Status error_;
};

// Saves the checkpoint of an epoch and prunes those no longer needed: the newest two (the
// previous one is the fallback should this one be damaged) and the best.
absl::Status SaveCheckpoint(Job& job, const TrainingCheckpoint& checkpoint) {
  const int epoch = checkpoint.metrics.epoch;
  if (absl::Status status = job.checkpoints->Save(epoch, checkpoint.state); !status.ok()) {
    return RunStorageError(absl::StrCat("cannot save the checkpoint of epoch ", epoch), status);
  }
  int best_epoch = epoch;
  {
    absl::ReaderMutexLock lock(&job.mu);
    // The record learns of this epoch only after its checkpoint is safe.
    if (job.record.best_epoch() > 0 &&
        checkpoint.metrics.test_accuracy <= job.record.best_test_accuracy()) {
      best_epoch = job.record.best_epoch();
    }
  }
  if (absl::Status status = job.checkpoints->Prune({epoch, epoch - 1, best_epoch}); !status.ok()) {
    LOG(WARNING) << "experiment " << job.id << ": " << status;
  }
  return absl::OkStatus();
}

// Reads the checkpoint `job` goes on from; when the record has not seen its epoch yet (it
// was saved just before the server stopped), its metrics are recorded now.
absl::StatusOr<std::string> ReadResumeState(Job& job, const TrainingRunOptions& options,
                                            const EpochRecorder& record_epoch) {
  const int epoch = *job.resume_epoch;
  if (options.step_hook) options.step_hook("resume");
  absl::StatusOr<std::string> state = job.checkpoints->Read(epoch);
  absl::StatusOr<EpochMetrics> metrics = state.ok() ? CheckpointMetrics(*state) : state.status();
  if (!metrics.ok() || metrics->epoch != epoch) {
    return absl::DataLossError(
        absl::StrCat("cannot go on from the checkpoint of epoch ", epoch, ": ",
                     metrics.ok() ? absl::StrCat("it holds epoch ", metrics->epoch)
                                  : metrics.status().message()));
  }
  int recorded = 0;
  {
    absl::ReaderMutexLock lock(&job.mu);
    recorded = job.record.last_metrics().epoch();
  }
  if (recorded < epoch) {
    v1::MetricsEvent event;
    *event.mutable_time() = ToTimestamp(options.clock());
    *event.mutable_epoch_metrics() = ToProto(*metrics);
    if (absl::Status status = record_epoch(job, std::move(event)); !status.ok()) {
      return RunStorageError("cannot store the run's events", status);
    }
  }
  return state;
}

// Trains the job once its checkpoint, if any, has been read.
absl::Status Run(Job& job, const TrainingRunOptions& options, const EpochRecorder& record_epoch) {
  std::optional<std::string> resume_state;
  if (job.resume_epoch.has_value()) {
    absl::StatusOr<std::string> read = ReadResumeState(job, options, record_epoch);
    job.resume_epoch.reset();
    if (!read.ok()) return read.status();
    resume_state = *std::move(read);
  }
  DatasetRequest request = DatasetRequestFor(job.plan);
  request.stop_requested = &job.stop;
  if (options.step_hook) request.after_read = [&options] { options.step_hook("dataset read"); };
  absl::StatusOr<std::shared_ptr<const Dataset>> dataset = LoadSharedDataset(request);
  if (!dataset.ok()) return dataset.status();

  TrainingControl control;
  control.stop_requested = &job.stop;
  control.clock = options.clock;
  control.progress_interval = options.progress_interval;
  control.model_file = job.plan.model_file;
  if (job.checkpoints != nullptr) {
    control.save_checkpoint = [&job](const TrainingCheckpoint& checkpoint) {
      return SaveCheckpoint(job, checkpoint);
    };
  }
  if (resume_state.has_value()) control.resume_from = &*resume_state;
  JobSink sink(job, options, record_epoch);
  absl::Status status;
  if (job.plan.spec.world_size > 1) {
    ProcessGroupOptions group;
    group.store = job.rendezvous;
    group.store_name = "this coordinator";
    group.local_address = options.rendezvous.advertise_address;
    group.world_size = job.plan.spec.world_size;
    group.timeout = options.rendezvous.collective_timeout;
    status = TrainRank(job.plan.spec, **dataset, group, control, sink);
  } else {
    status = Train(job.plan.spec, **dataset, control, sink);
  }
  return sink.error().ok() ? status : sink.error();
}

}  // namespace

bool IsOutOfStateRoom(const absl::Status& status) {
  return status.GetPayload(kOutOfRoomPayload).has_value();
}

absl::Status TrainJob(Job& job, const TrainingRunOptions& options,
                      const EpochRecorder& record_epoch) {
  absl::Status status = Run(job, options, record_epoch);
  // The run's tensors are freed: the idle server need not hold the largest run's memory.
  ReleaseFreeMemory();
  if (absl::Status flushed = job.log->FlushJournal(); !flushed.ok() && status.ok()) {
    status = RunStorageError("cannot store the run's events", flushed);
  }
  return status;
}

}  // namespace gradlab
