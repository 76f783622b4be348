#include "server/experiments/crash_recovery.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/experiment_state.h"
#include "common/spec_proto.h"
#include "server/engine/checkpoint.h"
#include "server/experiments/event_protos.h"
#include "server/store/event_journal.h"

namespace gradlab {
namespace {

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

}  // namespace

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

absl::StatusOr<RestoredJob> RestoreJob(StoredExperiment experiment, ExperimentStore& store,
                                       const JobFactory& make_job, absl::Time now) {
  RestoredJob restored;
  restored.job = make_job(experiment.record.id(), experiment.ordinal, StoredPlan(experiment.record),
                          experiment.request_id);
  Job& job = *restored.job;
  absl::MutexLock lock(&job.mu);  // not shared yet; taken for the analysis
  job.record = std::move(experiment.record);
  job.record.set_queue_position(0);
  const v1::ExperimentState state = job.record.state();
  const bool finished = IsFinished(state);
  ResumePoint resume;
  // Started before: RUNNING, or queued again after an earlier restart.
  if (!finished && job.record.has_started_time()) {
    resume = FindResumePoint(*job.checkpoints);
    if (absl::Status status = store.DropEventsAfterEpoch(job.id, resume.epoch()); !status.ok()) {
      return status;
    }
    DropEventsAfterEpoch(resume.epoch(), experiment);
    ResetEpochFields(experiment.metrics, job.record);
    job.resume_state = std::move(resume.state);
    job.resume_reason =
        resume.metrics.has_value()
            ? absl::StrCat("resumed after a restart from the checkpoint of epoch ", resume.epoch())
            : "started again from epoch 1 after a restart: no usable checkpoint";
    for (const std::string& note : resume.unusable) absl::StrAppend(&job.resume_reason, "; ", note);
    restored.queue = RestoredJob::Queue::kAhead;
    restored.requeue_reason = absl::StrCat(
        "queued again after a restart, to go on from ",
        resume.metrics.has_value() ? absl::StrCat("the checkpoint of epoch ", resume.epoch())
                                   : std::string("epoch 1"));
  } else if (!finished) {
    restored.queue = RestoredJob::Queue::kInOrder;
  }
  // Finished experiments get no more events; the others number theirs past any event
  // that was sent but not yet stored when the server stopped.
  job.log->Restore(
      std::move(experiment.metrics), std::move(experiment.gradients),
      finished ? experiment.last_sequence : experiment.last_sequence + kMaxUncommittedEvents);
  if (finished) job.log->Close();
  // A checkpoint written just before the crash whose metrics were not yet stored: the
  // checkpoint has them.
  if (resume.metrics.has_value() && job.record.current_epoch() < resume.epoch()) {
    v1::MetricsEvent event;
    *event.mutable_time() = ToTimestamp(now);
    *event.mutable_epoch_metrics() = ToProto(*resume.metrics);
    RecordEpoch(event.epoch_metrics(), job.record);
    if (absl::StatusOr<int64_t> appended = job.log->Append(std::move(event)); !appended.ok()) {
      return appended.status();
    }
  }
  return restored;
}

}  // namespace gradlab
