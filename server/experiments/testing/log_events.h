// Events for an ExperimentLog in tests: only the field that tells them apart is set.
#ifndef GRADLAB_SERVER_EXPERIMENTS_TESTING_LOG_EVENTS_H_
#define GRADLAB_SERVER_EXPERIMENTS_TESTING_LOG_EVENTS_H_

#include <cstdint>

#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

inline v1::MetricsEvent Progress(int batch) {
  v1::MetricsEvent event;
  event.mutable_batch_progress()->set_batch(batch);
  return event;
}

inline v1::MetricsEvent Epoch(int epoch) {
  v1::MetricsEvent event;
  event.mutable_epoch_metrics()->set_epoch(epoch);
  return event;
}

inline v1::GradientSnapshot Snapshot(int64_t step) {
  v1::GradientSnapshot snapshot;
  snapshot.set_step(step);
  return snapshot;
}

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_TESTING_LOG_EVENTS_H_
