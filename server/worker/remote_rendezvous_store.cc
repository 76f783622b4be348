#include "server/worker/remote_rendezvous_store.h"

#include <utility>

#include "common/grpc_status.h"

namespace gradlab {

using Operation = v1::RendezvousRequest::Operation;

RemoteRendezvousStore::RemoteRendezvousStore(
    v1::WorkerService::Stub* stub,
    std::function<std::unique_ptr<grpc::ClientContext>()> new_context, std::string worker_id,
    std::string experiment_id, int attempt)
    : stub_(stub),
      new_context_(std::move(new_context)),
      worker_id_(std::move(worker_id)),
      experiment_id_(std::move(experiment_id)),
      attempt_(attempt) {}

v1::RendezvousRequest RemoteRendezvousStore::Request(Operation operation,
                                                     const std::vector<std::string>& keys) const {
  v1::RendezvousRequest request;
  request.set_worker_id(worker_id_);
  request.set_experiment_id(experiment_id_);
  request.set_attempt(attempt_);
  request.set_operation(operation);
  for (const std::string& key : keys) request.add_keys(key);
  return request;
}

absl::StatusOr<v1::RendezvousResponse> RemoteRendezvousStore::Call(
    const v1::RendezvousRequest& request) const {
  v1::RendezvousResponse response;
  absl::Status status = FromGrpcStatus(stub_->Rendezvous(new_context_().get(), request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::Status RemoteRendezvousStore::Set(const std::string& key, const std::string& value) {
  v1::RendezvousRequest request = Request(v1::RendezvousRequest::SET, {key});
  request.set_value(value);
  return Call(request).status();
}

absl::StatusOr<std::string> RemoteRendezvousStore::Get(const std::string& key) {
  absl::StatusOr<v1::RendezvousResponse> response =
      Call(Request(v1::RendezvousRequest::GET, {key}));
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_value());
}

absl::StatusOr<int64_t> RemoteRendezvousStore::Add(const std::string& key, int64_t amount) {
  v1::RendezvousRequest request = Request(v1::RendezvousRequest::ADD, {key});
  request.set_amount(amount);
  absl::StatusOr<v1::RendezvousResponse> response = Call(request);
  if (!response.ok()) return response.status();
  return response->number();
}

absl::StatusOr<std::string> RemoteRendezvousStore::CompareSet(const std::string& key,
                                                              const std::string& expected,
                                                              const std::string& desired) {
  v1::RendezvousRequest request = Request(v1::RendezvousRequest::COMPARE_SET, {key});
  request.set_expected(expected);
  request.set_value(desired);
  absl::StatusOr<v1::RendezvousResponse> response = Call(request);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_value());
}

absl::StatusOr<bool> RemoteRendezvousStore::Delete(const std::string& key) {
  absl::StatusOr<v1::RendezvousResponse> response =
      Call(Request(v1::RendezvousRequest::DELETE_KEY, {key}));
  if (!response.ok()) return response.status();
  return response->present();
}

absl::StatusOr<bool> RemoteRendezvousStore::Check(const std::vector<std::string>& keys) {
  absl::StatusOr<v1::RendezvousResponse> response =
      Call(Request(v1::RendezvousRequest::CHECK, keys));
  if (!response.ok()) return response.status();
  return response->present();
}

absl::StatusOr<int64_t> RemoteRendezvousStore::KeyCount() {
  absl::StatusOr<v1::RendezvousResponse> response =
      Call(Request(v1::RendezvousRequest::KEY_COUNT, {}));
  if (!response.ok()) return response.status();
  return response->number();
}

}  // namespace gradlab
