#include "server/service/worker_service.h"

#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "common/experiment_spec.h"
#include "server/service/call_authorization.h"
#include "server/service/chunk_stream.h"
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

absl::StatusOr<std::string> WorkerServiceImpl::ModelBytes(const v1::FetchModelRequest& request,
                                                          const std::string& owner) const {
  absl::StatusOr<v1::ExperimentSpec> spec = pool_.AssignedSpec(request, owner);
  if (!spec.ok()) return spec.status();
  if (!IsUploadedModel(spec->model()) || models_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("experiment ", request.experiment_id(),
                                                      " trains the built-in model ", spec->model(),
                                                      ", which every worker has"));
  }
  absl::StatusOr<std::string> path =
      models_->FileOf(std::string(UploadedModelReference(spec->model())));
  if (!path.ok()) return path.status();
  std::ifstream file(*path, std::ios::binary);
  if (!file) return absl::DataLossError(absl::StrCat("cannot open the model file ", *path));
  std::string bytes((std::istreambuf_iterator<char>(file)), {});
  if (file.bad()) return absl::DataLossError(absl::StrCat("cannot read the model file ", *path));
  return bytes;
}

grpc::ServerWriteReactor<v1::ModelChunk>* WorkerServiceImpl::FetchModel(
    grpc::CallbackServerContext* context, const v1::FetchModelRequest* request) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return new FailedStream<v1::ModelChunk>("FetchModel", context, owner.status());
  absl::StatusOr<std::string> bytes = ModelBytes(*request, *owner);
  if (!bytes.ok()) return new FailedStream<v1::ModelChunk>("FetchModel", context, bytes.status());
  return new ChunkStream(/*epoch=*/0, *std::move(bytes), /*slot=*/nullptr);
}

}  // namespace gradlab
