// A TrainingEventSink for tests: keeps every event, and can ask a run to stop once it has
// seen a given number of batches.
#ifndef GRADLAB_SERVER_ENGINE_TESTING_RECORDING_SINK_H_
#define GRADLAB_SERVER_ENGINE_TESTING_RECORDING_SINK_H_

#include <atomic>
#include <vector>

#include "server/engine/training_events.h"

namespace gradlab {

class RecordingSink : public TrainingEventSink {
 public:
  void OnBatchProgress(const BatchProgress& progress) override;
  void OnEpochMetrics(const EpochMetrics& metrics) override;
  void OnGradientSnapshot(const GradientSnapshot& snapshot) override;
  void OnPredictions(const Predictions& event) override { predictions.push_back(event); }

  // Sets `stop` once `batches` batches have been reported by progress events.
  void StopAfterBatches(int batches, std::atomic<bool>* stop) {
    stop_after_batches_ = batches;
    stop_ = stop;
  }

  std::vector<BatchProgress> progress;
  std::vector<EpochMetrics> epochs;
  std::vector<GradientSnapshot> snapshots;
  std::vector<Predictions> predictions;

 private:
  int stop_after_batches_ = -1;
  std::atomic<bool>* stop_ = nullptr;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TESTING_RECORDING_SINK_H_
