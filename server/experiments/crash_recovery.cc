#include "server/experiments/crash_recovery.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/experiment_state.h"
#include "common/spec_proto.h"
#include "server/experiments/event_protos.h"
#include "server/experiments/lost_rank_policy.h"
#include "server/store/event_journal.h"

namespace gradlab {
namespace {

// Drops what a run resumed after `epoch` will log again (as ExperimentStore does).
void DropEventsAfterEpoch(int epoch, StoredEvents& stored) {
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
    if (state.ok()) {
      resume.epoch = epoch;
      break;
    }
    resume.unusable.push_back(absl::StrCat("the checkpoint of epoch ", epoch, " is unusable (",
                                           state.status().message(), ")"));
  }
  return resume;
}

absl::StatusOr<RestoredJob> RestoreJob(StoredExperiment experiment,
                                       const std::shared_ptr<ExperimentStore>& store,
                                       const JobFactory& make_job,
                                       const std::shared_ptr<LoadedLogs>& loaded_logs) {
  RestoredJob restored;
  restored.job = make_job(experiment.record.id(), experiment.ordinal, StoredPlan(experiment.record),
                          experiment.request_id);
  Job& job = *restored.job;
  job.estimated_peak_bytes = experiment.record.estimated_peak_bytes();
  absl::MutexLock lock(&job.mu);  // not shared yet; taken for the analysis
  job.record = std::move(experiment.record);
  job.record.set_queue_position(0);
  const v1::ExperimentState state = job.record.state();
  const bool finished = IsFinished(state);
  if (finished) {
    // Its events are read when a stream first asks for them (they never change now).
    job.log->RestoreLater([store, id = job.id] { return store->LoadEvents(id); },
                          experiment.last_sequence, loaded_logs);
    job.log->Close();
    return restored;
  }
  absl::StatusOr<StoredEvents> events = store->LoadEvents(job.id);
  if (!events.ok()) return events.status();
  // Started before: RUNNING, or queued again after an earlier restart.
  if (job.record.has_started_time()) {
    const ResumePoint resume = FindResumePoint(*job.checkpoints);
    // A run that was under way when the server stopped; its attempt was counted when it
    // began, and an epoch whose record was stored set the count back to 0.
    if (state == v1::RUNNING && job.record.attempts_since_epoch() >= kMaxAttemptsWithoutProgress) {
      restored.failure = absl::StrCat(
          "gave up after ", job.record.attempts_since_epoch(),
          " attempts in a row that finished no epoch; the last was interrupted when the server "
          "stopped while it ran (killed, crashed or out of memory; the server's log says more)");
    } else {
      if (absl::Status status = store->DropEventsAfterEpoch(job.id, resume.epoch); !status.ok()) {
        return status;
      }
      DropEventsAfterEpoch(resume.epoch, *events);
      ResetEpochFields(events->metrics, job.record);
      if (resume.epoch > 0) job.resume_epoch = resume.epoch;
      job.resume_reason =
          resume.epoch > 0
              ? absl::StrCat("resumed after a restart from the checkpoint of epoch ", resume.epoch)
              : "started again from epoch 1 after a restart: no usable checkpoint";
      for (const std::string& note : resume.unusable) {
        absl::StrAppend(&job.resume_reason, "; ", note);
      }
      restored.queue = RestoredJob::Queue::kAhead;
      restored.requeue_reason =
          absl::StrCat("queued again after a restart, to go on from ",
                       resume.epoch > 0 ? absl::StrCat("the checkpoint of epoch ", resume.epoch)
                                        : std::string("epoch 1"));
    }
  } else {
    restored.queue = RestoredJob::Queue::kInOrder;
  }
  // Numbered past any event that was sent but not yet stored when the server stopped.
  job.log->Restore(*std::move(events), experiment.last_sequence + kMaxUncommittedEvents);
  return restored;
}

}  // namespace gradlab
