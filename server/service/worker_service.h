// The gRPC face of WorkerPool: `gradlabd --worker` processes register and heartbeat here
// (gradlab.v1.WorkerService, an internal service documented in the proto).
#ifndef GRADLAB_SERVER_SERVICE_WORKER_SERVICE_H_
#define GRADLAB_SERVER_SERVICE_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "gradlab/v1/worker_service.grpc.pb.h"
#include "server/auth/token_authorizer.h"
#include "server/experiments/worker_pool.h"
#include "server/models/model_registry.h"

namespace gradlab {

// Thread-safe. `authorizer` null: every call is allowed; otherwise every call needs a worker
// token, and a worker is bound to the token that registered it (WorkerPool::Register).
// Both must outlive it.
class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  // `models`: the uploaded models the workers fetch; null without a state folder.
  WorkerServiceImpl(WorkerPool& pool, const ModelRegistry* models,
                    const TokenAuthorizer* authorizer)
      : pool_(pool), models_(models), authorizer_(authorizer) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const v1::RegisterWorkerRequest* request,
                                           v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Rendezvous(grpc::CallbackServerContext* context,
                                       const v1::RendezvousRequest* request,
                                       v1::RendezvousResponse* response) override;
  grpc::ServerWriteReactor<v1::ModelChunk>* FetchModel(
      grpc::CallbackServerContext* context, const v1::FetchModelRequest* request) override;

 private:
  // Who the call's worker token is (empty without tokens), or why it may not call.
  absl::StatusOr<std::string> Owner(grpc::CallbackServerContext* context) const;

  // The file of the uploaded model an attempt the worker holds a rank of trains.
  absl::StatusOr<std::string> ModelBytes(const v1::FetchModelRequest& request,
                                         const std::string& owner) const;

  WorkerPool& pool_;
  const ModelRegistry* const models_;
  const TokenAuthorizer* const authorizer_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_WORKER_SERVICE_H_
