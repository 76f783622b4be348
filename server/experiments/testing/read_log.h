// Reads what an experiment's log holds now, for tests.
#ifndef GRADLAB_SERVER_EXPERIMENTS_TESTING_READ_LOG_H_
#define GRADLAB_SERVER_EXPERIMENTS_TESTING_READ_LOG_H_

#include <vector>

#include "server/experiments/experiment_log.h"

namespace gradlab {

// Every metrics event the log keeps, in sequence order.
inline std::vector<v1::MetricsEvent> AllMetrics(const ExperimentLog& log) {
  std::vector<v1::MetricsEvent> events;
  for (int64_t from = 0;;) {
    auto next = log.NextMetrics(from);
    if (next.event == nullptr) break;
    events.push_back(*next.event);
    from = next.event->sequence() + 1;
  }
  return events;
}

// Every gradient snapshot the log keeps, in sequence order.
inline std::vector<v1::GradientSnapshot> AllGradients(const ExperimentLog& log) {
  std::vector<v1::GradientSnapshot> snapshots;
  for (int64_t from = 0;;) {
    auto next = log.NextGradientsBySequence(from);
    if (next.event == nullptr) break;
    snapshots.push_back(*next.event);
    from = next.event->sequence() + 1;
  }
  return snapshots;
}

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_TESTING_READ_LOG_H_
