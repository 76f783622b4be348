// A sweep's numbers: each cell's aggregate over its runs (one per seed), and the sweep's
// state from its runs'. Pure functions of the runs' records and events, so that a sweep
// restored after a crash, its runs having resumed exactly, has the aggregate an
// uninterrupted one has.
#ifndef GRADLAB_SERVER_EXPERIMENTS_SWEEP_AGGREGATE_H_
#define GRADLAB_SERVER_EXPERIMENTS_SWEEP_AGGREGATE_H_

#include <memory>
#include <optional>
#include <vector>

#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// What a cell's aggregate reads of one run.
struct SweepRunResults {
  v1::ExperimentState state = v1::QUEUED;
  // Every finished epoch's metrics, in order.
  std::vector<v1::EpochMetrics> epochs;
  // What it predicted at initialisation (epoch 0) and after its newest evaluated epoch;
  // unset when it has not.
  std::optional<v1::Predictions> initial_predictions;
  std::optional<v1::Predictions> latest_predictions;
  // The step-1 gradient snapshot; null before step 1.
  std::shared_ptr<const v1::GradientSnapshot> step1;
  // When it finished; unset before.
  google::protobuf::Timestamp finished_time;
};

// The spread of `values` (see v1::Spread); summed in the order given.
v1::Spread SpreadOf(const std::vector<double>& values);

// Sets the cell's run counts and aggregates from its runs' results, in seed order (a run
// deleted since is left out). Its index, values, description and experiment ids stay.
void AggregateCell(const std::vector<SweepRunResults>& runs, v1::SweepCell& cell);

// Sets the sweep's runs_done and state from its runs' states, every cell's counts being
// up to date (see AggregateCell). `any_started`: some run has left the queue.
void SummarizeSweep(bool any_started, v1::Sweep& sweep);

// A copy without what ListSweeps leaves out (each cell's epochs, step-1 gradients and
// predicted classes).
v1::Sweep SweepSummary(const v1::Sweep& sweep);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_SWEEP_AGGREGATE_H_
