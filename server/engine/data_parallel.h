// The two pieces of data-parallel training that need no server: which samples of each
// batch a rank trains on, and the average of the ranks' gradients, over LibTorch's own
// distributed engine (c10d's ProcessGroupGloo for the all-reduce), as PyTorch's
// DistributedDataParallel does on CPU. The ranks meet through a RendezvousStore
// (rendezvous_store.h) where PyTorch would use c10d's TCPStore. Knows nothing of gRPC or
// the job queue.
#ifndef GRADLAB_SERVER_ENGINE_DATA_PARALLEL_H_
#define GRADLAB_SERVER_ENGINE_DATA_PARALLEL_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/engine/process_group.h"

namespace c10d {
class ProcessGroupGloo;
class Store;
}  // namespace c10d

namespace gradlab {

// The rows of one global batch (its sample indices in the epoch's shuffled order, or the
// samples themselves) that rank `rank` of `world_size` takes: every world_size-th, starting
// at row `rank` (PyTorch's DistributedSampler scheme: the same permutation on every rank,
// each taking every N-th sample). The ranks' shards cover the batch exactly once; their
// sizes differ by at most one. Rank 0 of 1 takes the whole batch (a view of it).
torch::Tensor ShardOfBatch(const torch::Tensor& batch, int rank, int world_size);

// One rank's membership of a process group. Not thread-safe: one training thread uses it.
class GradientAverager {
 public:
  // Joins the group through options.store; returns once every rank has joined.
  // INVALID_ARGUMENT for options out of range; UNAVAILABLE (naming the store and the
  // timeout) when the others do not arrive in time or the store cannot be reached.
  static absl::StatusOr<std::unique_ptr<GradientAverager>> Join(const ProcessGroupOptions& options);
  ~GradientAverager();

  // Replaces each defined gradient of `parameters` by the sample-weighted average over
  // all ranks, where this rank's gradients are means over its `local_samples`: the result
  // is the mean over every rank's samples, what one process training the whole batch
  // computes (up to the order of floating-point sums). One all-reduce for all
  // parameters. UNAVAILABLE when a rank fails or the timeout passes; the gradients are
  // then unspecified.
  // A parameter without a gradient counts as a zero one (and gets it), so that every rank
  // reduces the same layout even when one trained on no samples.
  // `stop` is this rank's vote to end the run; the same all-reduce counts the votes, and
  // the result is how many ranks voted to stop (0: go on). Every rank learns the count in
  // the same step, so all of them stop together.
  // `batch_samples` is the whole batch's: the ranks' local_samples must add up to it, or
  // every rank gets DATA_LOSS (a rank out of step, or one that misreports its count, would
  // otherwise weight the average wrongly or divide it by zero).
  absl::StatusOr<int> Average(const std::vector<torch::Tensor>& parameters, int64_t local_samples,
                              int64_t batch_samples, bool stop);

  // How many ranks pass `stop` true; one small all-reduce.
  absl::StatusOr<int> CountVotes(bool stop);

  // Replaces `values` (float64, contiguous) by its element-wise sum over all ranks.
  absl::Status Sum(torch::Tensor& values);

  // Gives every rank rank 0's `bytes` (the others' are replaced).
  absl::Status Broadcast(std::string& bytes);

  // What the gradient all-reduces of Average have cost so far on this rank.
  const GradientTraffic& gradient_traffic() const { return gradient_traffic_; }

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  GradientAverager();
  // Sums `values` in place across the ranks; `what` names it in the error.
  absl::Status AllReduce(torch::Tensor& values, const char* what);

  int rank_ = 0;
  int world_size_ = 1;
  GradientTraffic gradient_traffic_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_DATA_PARALLEL_H_
