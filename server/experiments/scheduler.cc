#include "server/experiments/scheduler.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

#include "common/spec_proto.h"
#include "common/thread_priority.h"

namespace gradlab {

std::string QueueLane(const Job& job) {
  auto sweep = job.plan.spec.labels.find("sweep");
  return sweep == job.plan.spec.labels.end() ? "" : sweep->second;
}

Scheduler::Scheduler(SchedulerOptions options, WorkerPool& workers, RunFn run)
    : options_(std::move(options)), workers_(workers), run_(std::move(run)), held_(options_.held) {
  for (int i = 0; i < std::max(options_.training_slots, 1); ++i) {
    slots_.emplace_back([this] { SlotLoop(); });
  }
}

Scheduler::~Scheduler() { Stop(); }

int64_t Scheduler::NextTurn(const Job& job) const {
  // A lane's next job takes the turn after its last one, or the next turn if the lane has
  // been idle.
  auto lane = lane_turns_.find(QueueLane(job));
  return std::max(lane == lane_turns_.end() ? 0 : lane->second, current_turn_) + 1;
}

Scheduler::Queue::const_iterator Scheduler::PlaceOf(int64_t turn) const {
  // After every job of an earlier or the same turn.
  return std::upper_bound(queue_.begin(), queue_.end(), turn,
                          [](int64_t t, const Queued& queued) { return t < queued.turn; });
}

int Scheduler::PushBack(std::shared_ptr<Job> job) {
  absl::MutexLock lock(&mu_);
  const int64_t turn = NextTurn(*job);
  lane_turns_[QueueLane(*job)] = turn;
  auto place = queue_.insert(PlaceOf(turn), Queued{std::move(job), turn});
  return static_cast<int>(place - queue_.begin()) + 1;
}

int Scheduler::PositionIfPushed(const Job& job) const {
  absl::ReaderMutexLock lock(&mu_);
  return static_cast<int>(PlaceOf(NextTurn(job)) - queue_.begin()) + 1;
}

void Scheduler::PushFront(std::shared_ptr<Job> job) {
  absl::MutexLock lock(&mu_);
  const int64_t first = queue_.empty() ? current_turn_ : queue_.front().turn;
  queue_.push_front(Queued{std::move(job), std::min(first, current_turn_)});
}

Scheduler::Queue::const_iterator Scheduler::Find(const Job& job) const {
  return std::find_if(queue_.begin(), queue_.end(),
                      [&](const Queued& queued) { return queued.job.get() == &job; });
}

bool Scheduler::Remove(const Job& job) {
  absl::MutexLock lock(&mu_);
  auto it = Find(job);
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

int Scheduler::Position(const Job& job) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = Find(job);
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

Scheduler::Queue::iterator Scheduler::FirstRunnable() {
  const int idle_workers = workers_.IdleCount();
  const int running = running_;
  const int64_t running_bytes = running_bytes_;
  return std::find_if(queue_.begin(), queue_.end(), [&](const Queued& queued) {
    const Job* job = queued.job.get();
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
      job = runnable->job;
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
      current_turn_ = std::max(current_turn_, runnable->turn);
      queue_.erase(runnable);
      // Lanes whose last turn has come hold nothing back any more.
      for (auto lane = lane_turns_.begin(); lane != lane_turns_.end();) {
        lane = lane->second <= current_turn_ ? lane_turns_.erase(lane) : std::next(lane);
      }
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
