// The engine's training events as the API's messages, and what an epoch does to an
// experiment's record.
#ifndef GRADLAB_SERVER_EXPERIMENTS_EVENT_PROTOS_H_
#define GRADLAB_SERVER_EXPERIMENTS_EVENT_PROTOS_H_

#include <vector>

#include "absl/time/time.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/engine/training_events.h"

namespace gradlab {

google::protobuf::Timestamp ToTimestamp(absl::Time time);

v1::EpochMetrics ToProto(const EpochMetrics& metrics);
v1::BatchProgress ToProto(const BatchProgress& progress);
v1::GradientSnapshot ToProto(const GradientSnapshot& snapshot);
// With each class's predicted count (the confusion matrix's column sums).
v1::Predictions ToProto(const Predictions& predictions);

// Takes an epoch's metrics into the record: current epoch, last metrics, best.
void RecordEpoch(const v1::EpochMetrics& metrics, v1::Experiment& record);
// Sets the record's current epoch, last metrics and best from the epochs in `events`.
void ResetEpochFields(const std::vector<v1::MetricsEvent>& events, v1::Experiment& record);
// Whether `event` belongs to an epoch after `epoch`.
bool AfterEpoch(const v1::MetricsEvent& event, int epoch);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_EVENT_PROTOS_H_
