// A sweep's grid: the cross product of its axes' values (its cells) times its seeds,
// expanded into the ExperimentSpecs of ordinary experiments and checked whole before any of
// them is queued. Shared by the server (which queues them) and the CLI (which can show a
// grid before sending it); knows nothing of gRPC's transport or LibTorch.
#ifndef GRADLAB_COMMON_SWEEP_GRID_H_
#define GRADLAB_COMMON_SWEEP_GRID_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// One run of a sweep.
struct SweepRun {
  int cell = 0;        // index into SweepGrid::cells
  int seed_index = 0;  // index into SweepGrid::seeds
  // The base with the cell's values and the seed set, every default resolved.
  v1::ExperimentSpec spec;
};

struct SweepGrid {
  // Each cell's value of each axis, in the axes' order; cells in row-major order (the
  // last axis varies fastest).
  std::vector<std::vector<google::protobuf::Value>> cells;
  std::vector<uint64_t> seeds;
  // Every cell with every seed, in the order they should run: each cell's first seed,
  // then each cell's second, ..., so that the whole grid has an answer early.
  std::vector<SweepRun> runs;
};

// The most seeds seed_count may ask for.
inline constexpr int kMaxSweepSeeds = 100;

// Expands `sweep` and checks it: every axis names an ExperimentSpec field that may vary
// (not name, labels or seed), once; its values are of the field's type, each once; the
// seeds are given once each (or seed_count in [1, kMaxSweepSeeds], not both); the grid
// holds at most `max_runs` runs; and every cell's spec is one a server accepts
// (ResolveSpec). INVALID_ARGUMENT naming the axis, the value or the cell, and what is
// allowed.
absl::StatusOr<SweepGrid> ExpandSweep(const v1::SweepSpec& sweep, int64_t max_runs);

// An axis as people write it on a command line: "FIELD=V1,V2,...", each value read as the
// ExperimentSpec field's type (true/false, a number, or text). INVALID_ARGUMENT saying
// what is wrong; the values' ranges are checked by ExpandSweep.
absl::StatusOr<v1::SweepAxis> ParseSweepAxis(absl::string_view text);

// A value as people write it: true, 0.01, 64, kaiming_normal.
std::string SweepValueText(const google::protobuf::Value& value);

// A cell as people read it: "batch_norm=true, init=kaiming_normal" (the axes' fields and
// the cell's values); "(no axes)" for a sweep of seeds alone.
std::string SweepCellText(const v1::SweepSpec& sweep,
                          const std::vector<google::protobuf::Value>& cell);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_SWEEP_GRID_H_
