#include "server/service/worker_service.h"

#include "server/service/call_authorization.h"
#include "server/service/rpc_replies.h"

namespace gradlab {

grpc::ServerUnaryReactor* WorkerServiceImpl::RegisterWorker(
    grpc::CallbackServerContext* context, const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  if (absl::Status allowed = AuthorizeCall(authorizer_, context, Role::kWrite); !allowed.ok()) {
    return Reply("RegisterWorker", context, allowed);
  }
  return Reply("RegisterWorker", context, pool_.Register(*request, ClientAddress(context->peer())),
               response);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* context,
                                                       const v1::HeartbeatRequest* request,
                                                       v1::HeartbeatResponse* response) {
  if (absl::Status allowed = AuthorizeCall(authorizer_, context, Role::kWrite); !allowed.ok()) {
    return Reply("Heartbeat", context, allowed);
  }
  return Reply("Heartbeat", context, pool_.Heartbeat(*request), response);
}

}  // namespace gradlab
