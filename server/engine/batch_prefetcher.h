// Prepares an epoch's training batches on a background thread, one batch ahead of the
// training loop: while step k trains, batch k+1 is gathered, augmented and normalised.
//
// Batches are produced strictly in order by one thread, so anything they draw from a
// random generator is drawn in the same order as a plain loop would draw it: results do
// not depend on the prefetching. The generator belongs to the prefetcher's thread until
// the prefetcher is destroyed (or has produced its last batch).
#ifndef GRADLAB_SERVER_ENGINE_BATCH_PREFETCHER_H_
#define GRADLAB_SERVER_ENGINE_BATCH_PREFETCHER_H_

#include <torch/torch.h>

#include <exception>
#include <functional>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace gradlab {

struct TrainingBatch {
  torch::Tensor input;   // the model's input, in the layout it trains in
  torch::Tensor labels;  // int64 [B]
};

class BatchPrefetcher {
 public:
  // Makes batch `index` (0-based) of the epoch. Runs on the prefetcher's thread.
  using MakeBatch = std::function<TrainingBatch(int index)>;

  // Starts producing batches 0 .. count-1. The producing thread runs LibTorch's
  // operators on one intra-op thread, leaving the others to the training step.
  BatchPrefetcher(int count, MakeBatch make_batch);
  // Stops producing (a batch in progress is finished first) and joins the thread.
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The next batch in order, waiting for it if it is not ready. Rethrows on the caller's
  // thread what `make_batch` threw; after that, or after the last batch, no more batches
  // are made. Must not be called more than `count` times.
  TrainingBatch Next();

 private:
  void Produce();

  const int count_;
  const MakeBatch make_batch_;
  absl::Mutex mu_;
  std::optional<TrainingBatch> ready_ ABSL_GUARDED_BY(mu_);
  std::exception_ptr error_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread producer_;  // last: starts once everything above is initialised
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_BATCH_PREFETCHER_H_
