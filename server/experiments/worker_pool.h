// The coordinator's view of its workers (`gradlabd --worker` processes): who registered,
// when each was last heard from, and which rank of which run each one trains. The
// registry reserves idle workers for a data-parallel run and hands them their ranks
// through the answers to their heartbeats. Knows nothing of gRPC: the WorkerService glue
// passes the messages in and out.
#ifndef GRADLAB_SERVER_EXPERIMENTS_WORKER_POOL_H_
#define GRADLAB_SERVER_EXPERIMENTS_WORKER_POOL_H_

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
#include "absl/time/time.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "gradlab/v1/worker_service.pb.h"
#include "server/engine/rendezvous_store.h"

namespace gradlab {

struct WorkerPoolOptions {
  // What workers are told to heartbeat at.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // A worker not heard from for this long is dropped (and its run's collectives fail).
  absl::Duration worker_timeout = absl::Seconds(10);
  // Registrations beyond this many workers are refused (--max_workers).
  int max_workers = 256;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

// What one attempt at a data-parallel run asks of the pool.
struct RankRequest {
  std::string experiment_id;
  int attempt = 0;
  v1::ExperimentSpec spec;  // resolved
  int world_size = 2;
  absl::Duration timeout;
};

// Thread-safe. A background thread drops workers that stop heartbeating; `on_change` runs
// (on whatever thread made the change, never under the pool's lock) whenever a worker
// joins, leaves or becomes idle, so that the registry can look at its queue again.
class WorkerPool {
 public:
  WorkerPool(WorkerPoolOptions options, std::function<void()> on_change);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Longest strings a worker may register with, in characters.
  static constexpr size_t kMaxNameCharacters = 100;
  static constexpr size_t kMaxAddressCharacters = 255;
  // Most of a rank's error message kept for its run; the rest is cut.
  static constexpr size_t kMaxOutcomeCharacters = 1000;

  // `peer_host` is the address the call came from, for a worker that gives none. `owner`
  // is who registers it: the worker token's name ("token on line 5"), empty when the
  // coordinator has no tokens. A name is bound to its owner while it is registered: the
  // same owner registering it again replaces the old entry (a restarted worker; without
  // tokens, only from the same address); another owner gets ALREADY_EXISTS.
  // INVALID_ARGUMENT for a request without a name, with strings over their limits, or with
  // cpus or threads out of range; RESOURCE_EXHAUSTED beyond max_workers.
  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& request,
                                                      absl::string_view peer_host,
                                                      absl::string_view owner);
  // NOT_FOUND for a worker the pool does not know (never registered, or dropped) or that
  // `owner` did not register: it should register again.
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request,
                                                  absl::string_view owner);

  // Workers registered and not reserved by any run.
  int IdleCount() const;
  int Count() const;
  // Reserves world_size - 1 idle workers for `request` and gives them ranks 1, 2, ... at
  // their next heartbeats; returns the attempt's rendezvous store, for rank 0, which the
  // workers reach through Rendezvous until the attempt is released. FAILED_PRECONDITION
  // when too few are idle (nothing reserved).
  absl::StatusOr<std::shared_ptr<RendezvousStore>> Reserve(const RankRequest& request);
  // One operation on the rendezvous store of the attempt the request names, for a worker
  // that `owner` registered and that has been handed a rank of that attempt, not yet
  // released: INVALID_ARGUMENT for a malformed operation (checked first), PERMISSION_DENIED
  // for any other caller, and the store's own errors (NOT_FOUND for a key not there yet,
  // its limits).
  // The spec of the attempt, for a worker that `owner` registered and that holds a rank of
  // it (as Rendezvous): INVALID_ARGUMENT for a request without them, PERMISSION_DENIED for
  // any other caller.
  absl::StatusOr<v1::ExperimentSpec> AssignedSpec(const v1::FetchModelRequest& request,
                                                  absl::string_view owner) const;
  absl::StatusOr<v1::RendezvousResponse> Rendezvous(const v1::RendezvousRequest& request,
                                                    absl::string_view owner);
  // Ends an attempt: workers that have not picked up their rank are idle again at once;
  // those that have are told to stop it and are idle once they report it ended. Returns
  // what befell its workers so far, each as a status naming the worker ("worker w3
  // (host-b at 10.0.0.3), rank 1: ..."): UNAVAILABLE when dropped or restarted, else the
  // error its rank reported.
  std::vector<absl::Status> Release(const std::string& experiment_id, int attempt);
  std::vector<v1::WorkerInfo> List() const;

 private:
  struct Worker {
    v1::WorkerInfo info;
    std::string owner;  // see Register
    absl::Time last_heartbeat;
    // The rank this worker is reserved for, while it is.
    std::optional<v1::RankAssignment> assignment;
    bool handed_out = false;  // the worker has been given the assignment
    bool released = false;    // the run has ended that attempt; the worker must stop it
  };
  struct AttemptKey {
    std::string experiment_id;
    int attempt = 0;
    bool operator<(const AttemptKey& other) const {
      return std::tie(experiment_id, attempt) < std::tie(other.experiment_id, other.attempt);
    }
  };

  // Drops the workers not heard from within the timeout; returns whether any was.
  bool DropSilentWorkers() ABSL_LOCKS_EXCLUDED(mu_);
  // The worker `worker_id`, registered by `owner`, when it has been handed a rank of the
  // attempt and not released it; else PERMISSION_DENIED.
  absl::StatusOr<const Worker*> RankHolderLocked(const std::string& worker_id,
                                                 absl::string_view owner,
                                                 const std::string& experiment_id,
                                                 int attempt) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Note(const AttemptKey& key, absl::Status what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool Matches(const v1::RankAssignment& a, const std::string& id, int attempt) {
    return a.experiment_id() == id && a.attempt() == attempt;
  }

  const WorkerPoolOptions options_;
  const std::function<void()> on_change_;
  mutable absl::Mutex mu_;
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  int64_t next_worker_ ABSL_GUARDED_BY(mu_) = 1;
  // Each attempt still running: what befell its workers, for Release, and its rendezvous.
  struct Attempt {
    std::vector<absl::Status> notes;
    std::shared_ptr<MemoryRendezvousStore> store;
  };
  std::map<AttemptKey, Attempt> attempts_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_WORKER_POOL_H_
