#include "server/experiments/scheduler.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

#include "common/spec_proto.h"
#include "common/thread_priority.h"

namespace gradlab {

Scheduler::Scheduler(SchedulerOptions options, WorkerPool& workers, RunFn run)
    : options_(std::move(options)), workers_(workers), run_(std::move(run)), held_(options_.held) {
  for (int i = 0; i < std::max(options_.training_slots, 1); ++i) {
    slots_.emplace_back([this] { SlotLoop(); });
  }
}

Scheduler::~Scheduler() { Stop(); }

int Scheduler::PushBack(std::shared_ptr<Job> job) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(job));
  return static_cast<int>(queue_.size());
}

void Scheduler::PushFront(std::shared_ptr<Job> job) {
  absl::MutexLock lock(&mu_);
  queue_.push_front(std::move(job));
}

bool Scheduler::Remove(const Job& job) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const std::shared_ptr<Job>& queued) { return queued.get() == &job; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

int Scheduler::Position(const Job& job) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const std::shared_ptr<Job>& queued) { return queued.get() == &job; });
  return it == queue_.end() ? 0 : static_cast<int>(it - queue_.begin()) + 1;
}

int Scheduler::Length() const {
  absl::ReaderMutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

void Scheduler::Release() {
  absl::MutexLock lock(&mu_);
  held_ = false;
}

void Scheduler::WorkersChanged() {
  // absl::Mutex evaluates its waiters' conditions when it is released: the slots look at
  // the queue (and the idle workers) again.
  absl::MutexLock lock(&mu_);
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& slot : slots_) {
    if (slot.joinable()) slot.join();
  }
}

std::deque<std::shared_ptr<Job>>::iterator Scheduler::FirstRunnable() {
  const int idle_workers = workers_.IdleCount();
  const int running = running_;
  const int64_t running_bytes = running_bytes_;
  return std::find_if(queue_.begin(), queue_.end(), [&](const std::shared_ptr<Job>& job) {
    const bool fits = options_.memory_budget == 0 || running == 0 ||
                      running_bytes + job->estimated_peak_bytes <= options_.memory_budget;
    return fits && job->plan.spec.world_size - 1 <= idle_workers;
  });
}

void Scheduler::SlotLoop() {
  if (absl::Status lowered = LowerThisThreadsPriority(options_.training_niceness); !lowered.ok()) {
    LOG(WARNING) << lowered.message();
  }
  while (true) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Scheduler* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return self->stopping_ || (!self->held_ && self->FirstRunnable() != self->queue_.end());
          },
          this));
      if (stopping_) return;
      const auto runnable = FirstRunnable();
      job = *runnable;
      if (job->plan.spec.world_size > 1) {
        RankRequest ranks;
        ranks.experiment_id = job->id;
        ranks.attempt = job->attempts + 1;
        ranks.spec = SpecToProto(job->plan.spec);
        // Each rank looks where rank 0 found the dataset first, then where it keeps its own.
        if (!job->plan.dataset_location.empty()) {
          ranks.spec.set_data_dir(job->plan.dataset_location);
        }
        ranks.world_size = job->plan.spec.world_size;
        ranks.timeout = options_.rendezvous.collective_timeout;
        // A worker may have gone since FirstRunnable counted it; look again.
        absl::StatusOr<std::shared_ptr<RendezvousStore>> rendezvous = workers_.Reserve(ranks);
        if (!rendezvous.ok()) continue;
        job->rendezvous = *std::move(rendezvous);
        ++job->attempts;
      }
      queue_.erase(runnable);
      ++running_;
      running_bytes_ += job->estimated_peak_bytes;
    }
    run_(job);
    absl::MutexLock lock(&mu_);
    --running_;
    running_bytes_ -= job->estimated_peak_bytes;
  }
}

}  // namespace gradlab
