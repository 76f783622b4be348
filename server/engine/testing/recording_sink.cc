#include "server/engine/testing/recording_sink.h"

namespace gradlab {

void RecordingSink::OnBatchProgress(const BatchProgress& batch_progress) {
  progress.push_back(batch_progress);
  if (stop_ != nullptr && stop_after_batches_ >= 0 && batch_progress.batch >= stop_after_batches_) {
    stop_->store(true);
  }
}

void RecordingSink::OnEpochMetrics(const EpochMetrics& metrics) { epochs.push_back(metrics); }

void RecordingSink::OnGradientSnapshot(const GradientSnapshot& snapshot) {
  snapshots.push_back(snapshot);
}

}  // namespace gradlab
