// The queue of experiments waiting to train, and the training slots that take them: one
// thread per slot (--workers), each training one job at a time. The queue interleaves
// sweeps: each sweep's runs are one lane, and the experiments started one by one are
// another; the lanes take turns (a fair queue over them), so that a sweep of a hundred runs
// delays an experiment submitted after it by one run, not a hundred. Within a lane, jobs
// keep their order. A data-parallel job
// (world_size > 1) starts only when its other ranks' remote workers are idle, and claims
// them as it leaves the queue.
#ifndef GRADLAB_SERVER_EXPERIMENTS_SCHEDULER_H_
#define GRADLAB_SERVER_EXPERIMENTS_SCHEDULER_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/experiments/job.h"
#include "server/experiments/rendezvous_options.h"
#include "server/experiments/worker_pool.h"

namespace gradlab {

// The lane of the queue a job waits in (see Scheduler): its sweep's id, or "".
std::string QueueLane(const Job& job);

struct SchedulerOptions {
  int training_slots = 1;
  // Added to the nice value of the slots' threads (see RegistryOptions).
  int training_niceness = 0;
  RendezvousOptions rendezvous;
  // No slot takes a job until Release(): a restarted server resumes its interrupted runs
  // only once it serves, so that they can be listed and cancelled first.
  bool held = false;
  // The memory all running jobs may be estimated to need together (Job's
  // estimated_peak_bytes); a job that does not fit beside those running waits, and later
  // ones that fit go first. One job alone always runs. 0: no limit.
  int64_t memory_budget = 0;
};

// Thread-safe. Lock order: a job's mu before the queue's, so that describing a job may
// ask for its position; the scheduler never takes a job's lock.
class Scheduler {
 public:
  // Runs a job taken from the queue, on the thread of the training slot that took it.
  using RunFn = std::function<void(const std::shared_ptr<Job>& job)>;

  // Starts the slots' threads.
  Scheduler(SchedulerOptions options, WorkerPool& workers, RunFn run);
  // Stop()s.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues the job at the end of its lane (see above); returns its position (1 for the
  // next to run) as it joined the queue.
  int PushBack(std::shared_ptr<Job> job) ABSL_LOCKS_EXCLUDED(mu_);
  // The position PushBack would give the job now.
  int PositionIfPushed(const Job& job) const ABSL_LOCKS_EXCLUDED(mu_);
  // Ahead of every other: a run that goes on after losing a rank, or after a restart.
  void PushFront(std::shared_ptr<Job> job) ABSL_LOCKS_EXCLUDED(mu_);
  // Takes a job out of the queue; false if it is not there (a slot has taken it).
  bool Remove(const Job& job) ABSL_LOCKS_EXCLUDED(mu_);
  // 1 for the next to run; 0 when not queued.
  int Position(const Job& job) const ABSL_LOCKS_EXCLUDED(mu_);
  int Length() const ABSL_LOCKS_EXCLUDED(mu_);
  int training_slots() const { return static_cast<int>(slots_.size()); }

  // Lets the slots take jobs (see SchedulerOptions::held). Idempotent.
  void Release() ABSL_LOCKS_EXCLUDED(mu_);
  // The remote workers changed (one joined, left or became idle): look at the queue again.
  void WorkersChanged() ABSL_LOCKS_EXCLUDED(mu_);
  // No slot takes another job; waits for the running ones to return. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A queued job and its turn: the queue is in the order of turns, then of arrival.
  struct Queued {
    std::shared_ptr<Job> job;
    int64_t turn = 0;
  };
  using Queue = std::deque<Queued>;

  void SlotLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // The first queued job that can start now: one of world_size 1, or one whose
  // world_size - 1 remote workers are idle, and that fits in the memory budget.
  Queue::iterator FirstRunnable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Queue::const_iterator Find(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The turn the job would take at the end of its lane, and where in the queue that is.
  int64_t NextTurn(const Job& job) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Queue::const_iterator PlaceOf(int64_t turn) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const SchedulerOptions options_;
  WorkerPool& workers_;
  const RunFn run_;
  mutable absl::Mutex mu_;
  Queue queue_ ABSL_GUARDED_BY(mu_);
  // The turn of the last job taken, and of the last job queued in each lane (its sweep's
  // id, or "" for experiments started alone) that may still be queued.
  int64_t current_turn_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> lane_turns_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t running_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // their estimated peaks
  std::vector<std::thread> slots_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_SCHEDULER_H_
