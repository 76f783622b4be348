// Sweeps: a grid of experiments over axes and seeds as one thing to start, watch, cancel
// and delete. A sweep's runs are ordinary experiments of the ExperimentRegistry (labelled
// "sweep" and "sweep_cell"); this class keeps what binds them (the grid, each cell's runs)
// and each cell's aggregate (sweep_aggregate.h), refreshed whenever one of its runs
// changes, and stored with the sweep. Knows nothing of gRPC.
#ifndef GRADLAB_SERVER_EXPERIMENTS_SWEEP_REGISTRY_H_
#define GRADLAB_SERVER_EXPERIMENTS_SWEEP_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/experiments/experiment_registry.h"
#include "server/experiments/sweep_aggregate.h"
#include "server/store/experiment_store.h"

namespace gradlab {

struct SweepOptions {
  // The most runs (cells times seeds) one sweep may have (gradlabd's --max_sweep_runs).
  int64_t max_runs = 100;
  // Where sweeps are kept: the experiment registry's store; null: in memory only.
  std::shared_ptr<ExperimentStore> store;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class SweepRegistry;

// One reader of a sweep's changes (StreamSweep): each Read gives the sweep's newest state
// once, when its sequence has reached the reader's position. Read from one thread at a
// time; its wake-up runs on the thread that changed the sweep, must not block, and must
// not create or destroy readers. Destroying the reader waits for a running wake-up.
class SweepReader {
 public:
  ~SweepReader();
  SweepReader(const SweepReader&) = delete;
  SweepReader& operator=(const SweepReader&) = delete;

  struct Next {
    // The sweep as it is now, its sequence at least the position; the position then
    // moves past it.
    std::optional<v1::Sweep> sweep;
    // Finish the stream with this: OK after the finished sweep (or, without follow,
    // after the current one), NOT_FOUND once it is deleted, UNAVAILABLE at shutdown.
    std::optional<absl::Status> end;
  };
  // Neither field set: nothing new yet (the wake-up runs when there may be).
  Next Read();

 private:
  friend class SweepRegistry;
  SweepReader(const SweepRegistry& registry, int64_t handle, std::string id, int64_t from_sequence,
              bool follow)
      : registry_(registry),
        handle_(handle),
        id_(std::move(id)),
        next_sequence_(from_sequence),
        follow_(follow) {}

  const SweepRegistry& registry_;
  const int64_t handle_;
  const std::string id_;
  int64_t next_sequence_;
  const bool follow_;
};

// Thread-safe. Follows the experiment registry's change feed on a thread of its own from
// Open until Shutdown (or destruction), which must come before the registry's end.
//
// Lock order: start_mu_, then refresh_mu_, then watch_mu_, then mu_ (and the registry's
// locks after any).
class SweepRegistry {
 public:
  // The sweeps of options.store (none without one), each cell's aggregate recomputed from
  // its runs as `experiments` restored them (and stored again if it changed).
  static absl::StatusOr<std::unique_ptr<SweepRegistry>> Open(ExperimentRegistry& experiments,
                                                             SweepOptions options);
  ~SweepRegistry();
  SweepRegistry(const SweepRegistry&) = delete;
  SweepRegistry& operator=(const SweepRegistry&) = delete;

  absl::StatusOr<v1::Sweep> StartSweep(const v1::StartSweepRequest& request)
      ABSL_LOCKS_EXCLUDED(start_mu_, refresh_mu_, mu_);
  absl::StatusOr<v1::Sweep> GetSweep(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListSweepsResponse> ListSweeps(const v1::ListSweepsRequest& request) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // How many sweeps are in each state.
  std::map<v1::ExperimentState, int> CountByState() const ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every run that is queued or running; calls `done` with the sweep once they
  // have all stopped (possibly on a training thread). FAILED_PRECONDITION when none is.
  void CancelSweep(absl::string_view id, std::function<void(absl::StatusOr<v1::Sweep>)> done)
      ABSL_LOCKS_EXCLUDED(refresh_mu_, mu_);
  // Removes a finished sweep and its runs (their records, events and checkpoints).
  absl::Status DeleteSweep(absl::string_view id) ABSL_LOCKS_EXCLUDED(refresh_mu_, mu_);
  // A reader of the sweep's changes from `from_sequence` on; `wake` runs after each
  // change, its deletion and Shutdown. NOT_FOUND for an unknown id.
  absl::StatusOr<std::unique_ptr<SweepReader>> WatchSweep(absl::string_view id,
                                                          int64_t from_sequence, bool follow,
                                                          std::function<void()> wake) const
      ABSL_LOCKS_EXCLUDED(watch_mu_, mu_);
  // Stops following the registry's changes and ends every reader. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(follow_mu_, watch_mu_);

 private:
  struct Entry {
    int64_t ordinal = 0;
    std::string request_id;
    // Written under refresh_mu_ and mu_; read under either.
    v1::Sweep record;
    // The results of its finished runs, which do not change, by experiment id; under
    // refresh_mu_.
    std::map<std::string, SweepRunResults> finished;
  };

  friend class SweepReader;

  SweepRegistry(ExperimentRegistry& experiments, SweepOptions options);
  // Runs the wake-ups of the sweep's readers, or of every reader for an empty id.
  void WakeReaders(absl::string_view id) ABSL_LOCKS_EXCLUDED(watch_mu_);
  void RemoveReader(int64_t handle) const ABSL_LOCKS_EXCLUDED(watch_mu_);
  absl::StatusOr<std::shared_ptr<Entry>> Find(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);
  // Recomputes the sweep's aggregate from its runs now and stores it if it changed.
  void Refresh(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // The sweep as its runs are now, without storing it.
  v1::Sweep Compute(Entry& entry) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);
  // What the aggregate reads of one run; nullopt once it has been deleted.
  std::optional<SweepRunResults> ReadRun(const std::string& id, Entry& entry) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);
  // The feed-following thread: refreshes each sweep whose runs changed.
  void Follow() ABSL_LOCKS_EXCLUDED(follow_mu_);

  ExperimentRegistry& experiments_;
  const SweepOptions options_;

  absl::Mutex start_mu_ ABSL_ACQUIRED_BEFORE(refresh_mu_);
  // Held while a sweep's aggregate is computed and stored, so that one sweep's refreshes
  // are stored in the order computed and a deleted sweep is never stored again.
  mutable absl::Mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(watch_mu_);
  // Held while readers' wake-ups run, so that removing a reader waits for its running one.
  mutable absl::Mutex watch_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  struct Watcher {
    std::string sweep_id;
    std::function<void()> wake;
  };
  mutable std::map<int64_t, Watcher> watchers_ ABSL_GUARDED_BY(watch_mu_);  // by reader handle
  mutable int64_t next_handle_ ABSL_GUARDED_BY(watch_mu_) = 1;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // Shutdown has begun
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> sweeps_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Entry>> by_age_ ABSL_GUARDED_BY(mu_);      // oldest first
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);  // -> sweep id

  // The feed's wake-ups set `changed_`; Follow waits for it.
  absl::Mutex follow_mu_;
  bool changed_ ABSL_GUARDED_BY(follow_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(follow_mu_) = false;
  std::unique_ptr<ChangeCursor> cursor_;
  std::thread follower_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_SWEEP_REGISTRY_H_
