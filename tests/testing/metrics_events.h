// Reading a stream's MetricsEvents in end-to-end tests: the epochs and predictions it
// reported and its state changes in words.
#ifndef GRADLAB_TESTS_TESTING_METRICS_EVENTS_H_
#define GRADLAB_TESTS_TESTING_METRICS_EVENTS_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

inline std::vector<v1::EpochMetrics> Epochs(const std::vector<v1::MetricsEvent>& events) {
  std::vector<v1::EpochMetrics> epochs;
  for (const v1::MetricsEvent& event : events) {
    if (event.has_epoch_metrics()) epochs.push_back(event.epoch_metrics());
  }
  return epochs;
}

inline std::vector<v1::Predictions> PredictionsOf(const std::vector<v1::MetricsEvent>& events) {
  std::vector<v1::Predictions> predictions;
  for (const v1::MetricsEvent& event : events) {
    if (event.has_predictions()) predictions.push_back(event.predictions());
  }
  return predictions;
}

// "STATE: reason" per state change, one per line.
inline std::string StateChanges(const std::vector<v1::MetricsEvent>& events) {
  std::string text;
  for (const v1::MetricsEvent& event : events) {
    if (event.has_state_change()) {
      absl::StrAppend(&text, v1::ExperimentState_Name(event.state_change().state()), ": ",
                      event.state_change().reason(), "\n");
    }
  }
  return text;
}

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_METRICS_EVENTS_H_
