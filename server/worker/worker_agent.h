// What `gradlabd --worker` runs: registers with a coordinating gradlabd, heartbeats, and
// trains the ranks of data-parallel runs that the heartbeats' answers hand it, over
// LibTorch's c10d (see TrainRank). The gRPC calls to the coordinator are its only glue;
// the training knows nothing of them.
#ifndef GRADLAB_SERVER_WORKER_WORKER_AGENT_H_
#define GRADLAB_SERVER_WORKER_WORKER_AGENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gradlab/v1/worker_service.grpc.pb.h"

namespace gradlab {

// A worker checks what a coordinator asks of it before it trains: the spec as a server
// checks a submitted one (ResolveSpec: ranges, batches every rank can train), the rank
// within the group, the group the spec's, the timeout usable. INVALID_ARGUMENT
// naming what is wrong.
absl::Status CheckAssignment(const v1::RankAssignment& assignment);

struct WorkerAgentOptions {
  // The coordinator's gRPC address, host:port.
  std::string coordinator;
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  // A worker token for a coordinator with --auth_tokens_file; empty: none.
  std::string token;
  std::string name;
  // Where the other ranks reach this worker; empty: the address the coordinator sees.
  std::string address;
  int cpus = 1;
  int threads_per_job = 1;
  // Where datasets are looked for when the spec's data_dir (the coordinator's folder)
  // does not hold them here (see DatasetSearchPath).
  std::string data_dir;
  // Added to the training thread's nice value.
  int training_niceness = 0;
  // How long to wait between attempts to reach the coordinator.
  absl::Duration retry_interval = absl::Seconds(1);
  // Where the uploaded models it trains are kept, fetched from the coordinator once and
  // checked against their id (their sha256); empty: a folder of its own in the system's
  // temporary folder, removed when the agent is.
  std::string model_dir;
};

// Run() on one thread, Shutdown() from any other.
class WorkerAgent {
 public:
  explicit WorkerAgent(WorkerAgentOptions options);
  ~WorkerAgent();
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  // Registers (again whenever the coordinator has forgotten this worker), heartbeats and
  // trains ranks until Shutdown; a coordinator that cannot be reached is tried again.
  void Run();
  // Stops the rank being trained (its group learns of it in the next all-reduce, and the
  // coordinator puts the run back in its queue) and makes Run return.
  void Shutdown();

 private:
  // One gRPC call's context: the token, a deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  // Trains `assignment` on rank_thread_; its outcome goes in the next heartbeat.
  void StartRank(const v1::RankAssignment& assignment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status TrainAssignedRank(const v1::RankAssignment& assignment);
  // The file of the uploaded model `assignment` trains: the one kept from an earlier
  // attempt while its bytes still give its id, else fetched from the coordinator.
  absl::StatusOr<std::string> ModelFile(const v1::RankAssignment& assignment,
                                        const std::string& worker_id);
  // Waits `duration`, or less if Shutdown comes or a rank ends.
  void Pause(absl::Duration duration) ABSL_LOCKS_EXCLUDED(mu_);

  const WorkerAgentOptions options_;
  // options_.model_dir, or the temporary folder made for it (removed with the agent).
  std::string model_dir_;
  bool owns_model_dir_ = false;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::atomic<bool> rank_stop_{false};  // read by the training run

  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);  // empty: not registered
  std::string known_address_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  std::optional<v1::RankAssignment> running_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::RankOutcome> last_outcome_ ABSL_GUARDED_BY(mu_);
  bool rank_ended_ ABSL_GUARDED_BY(mu_) = false;  // wakes Pause to report it at once
  std::thread rank_thread_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_WORKER_WORKER_AGENT_H_
