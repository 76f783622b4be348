#include "server/engine/batch_prefetcher.h"

#include <omp.h>

#include <utility>

namespace gradlab {

BatchPrefetcher::BatchPrefetcher(int count, MakeBatch make_batch)
    : count_(count), make_batch_(std::move(make_batch)), producer_([this] { Produce(); }) {}

BatchPrefetcher::~BatchPrefetcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  producer_.join();
}

void BatchPrefetcher::Produce() {
  // LibTorch parallelises with OpenMP, whose thread count is per calling thread: this one
  // gathers and normalises on a single thread instead of starting a second full team
  // that would compete with the training step's for the same cores.
  omp_set_num_threads(1);
  for (int index = 0; index < count_; ++index) {
    std::optional<TrainingBatch> batch;
    std::exception_ptr error;
    try {
      batch = make_batch_(index);
    } catch (...) {
      error = std::current_exception();
    }
    absl::MutexLock lock(&mu_);
    // Wait until the previous batch has been taken: one batch ahead, no more.
    mu_.Await(absl::Condition(
        +[](BatchPrefetcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->stopping_ || !self->ready_.has_value();
        },
        this));
    if (stopping_) return;
    if (error) {
      error_ = error;
      return;
    }
    ready_ = std::move(batch);
  }
}

TrainingBatch BatchPrefetcher::Next() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](BatchPrefetcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
        return self->ready_.has_value() || self->error_ != nullptr;
      },
      this));
  if (!ready_.has_value()) std::rethrow_exception(error_);
  TrainingBatch batch = *std::move(ready_);
  ready_.reset();
  return batch;
}

}  // namespace gradlab
