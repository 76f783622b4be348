// The gRPC face of WorkerPool: `gradlabd --worker` processes register and heartbeat here
// (gradlab.v1.WorkerService, an internal service documented in the proto).
#ifndef GRADLAB_SERVER_SERVICE_WORKER_SERVICE_H_
#define GRADLAB_SERVER_SERVICE_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "gradlab/v1/worker_service.grpc.pb.h"
#include "server/auth/token_authorizer.h"
#include "server/experiments/worker_pool.h"

namespace gradlab {

// Thread-safe. `authorizer` null: every call is allowed; otherwise every call needs a worker
// token, and a worker is bound to the token that registered it (WorkerPool::Register).
// Both must outlive it.
class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(WorkerPool& pool, const TokenAuthorizer* authorizer)
      : pool_(pool), authorizer_(authorizer) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const v1::RegisterWorkerRequest* request,
                                           v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Rendezvous(grpc::CallbackServerContext* context,
                                       const v1::RendezvousRequest* request,
                                       v1::RendezvousResponse* response) override;

 private:
  // Who the call's worker token is (empty without tokens), or why it may not call.
  absl::StatusOr<std::string> Owner(grpc::CallbackServerContext* context) const;

  WorkerPool& pool_;
  const TokenAuthorizer* const authorizer_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_WORKER_SERVICE_H_
