// A worker's side of its group's rendezvous: the coordinator keeps the attempt's store
// (MemoryRendezvousStore) and this reaches it over WorkerService.Rendezvous, with the
// worker's token, so that only the ranks of the attempt can meet there.
#ifndef GRADLAB_SERVER_WORKER_REMOTE_RENDEZVOUS_STORE_H_
#define GRADLAB_SERVER_WORKER_REMOTE_RENDEZVOUS_STORE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gradlab/v1/worker_service.grpc.pb.h"
#include "server/engine/rendezvous_store.h"

namespace gradlab {

// Thread-safe (gRPC stubs are). Each operation is one call; a failed call is its status.
class RemoteRendezvousStore final : public RendezvousStore {
 public:
  // `stub` must outlive it; `new_context` makes each call's context (token, deadline).
  RemoteRendezvousStore(v1::WorkerService::Stub* stub,
                        std::function<std::unique_ptr<grpc::ClientContext>()> new_context,
                        std::string worker_id, std::string experiment_id, int attempt);

  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> Get(const std::string& key) override;
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t amount) override;
  absl::StatusOr<std::string> CompareSet(const std::string& key, const std::string& expected,
                                         const std::string& desired) override;
  absl::StatusOr<bool> Delete(const std::string& key) override;
  absl::StatusOr<bool> Check(const std::vector<std::string>& keys) override;
  absl::StatusOr<int64_t> KeyCount() override;

 private:
  // A request for this worker's attempt.
  v1::RendezvousRequest Request(v1::RendezvousRequest::Operation operation,
                                const std::vector<std::string>& keys) const;
  absl::StatusOr<v1::RendezvousResponse> Call(const v1::RendezvousRequest& request) const;

  v1::WorkerService::Stub* const stub_;
  const std::function<std::unique_ptr<grpc::ClientContext>()> new_context_;
  const std::string worker_id_;
  const std::string experiment_id_;
  const int attempt_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_WORKER_REMOTE_RENDEZVOUS_STORE_H_
