#include "server/service/worker_service.h"

#include "absl/strings/str_cat.h"
#include "server/service/call_authorization.h"
#include "server/service/rpc_replies.h"

namespace gradlab {

absl::StatusOr<std::string> WorkerServiceImpl::Owner(grpc::CallbackServerContext* context) const {
  if (authorizer_ == nullptr) return std::string();
  absl::StatusOr<int> line = authorizer_->AuthorizedLine(AuthorizationOf(context), Role::kWorker);
  if (!line.ok()) return line.status();
  return absl::StrCat("the worker token on line ", *line);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::RegisterWorker(
    grpc::CallbackServerContext* context, const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return Reply("RegisterWorker", context, owner.status());
  return Reply("RegisterWorker", context,
               pool_.Register(*request, ClientAddress(context->peer()), *owner), response);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* context,
                                                       const v1::HeartbeatRequest* request,
                                                       v1::HeartbeatResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return Reply("Heartbeat", context, owner.status());
  return Reply("Heartbeat", context, pool_.Heartbeat(*request, *owner), response);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Rendezvous(grpc::CallbackServerContext* context,
                                                        const v1::RendezvousRequest* request,
                                                        v1::RendezvousResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return Reply("Rendezvous", context, owner.status());
  return Reply("Rendezvous", context, pool_.Rendezvous(*request, *owner), response);
}

}  // namespace gradlab
