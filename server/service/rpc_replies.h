// What every gRPC handler of gradlabd does the same way: finish a unary call with a
// status converted in one place (common/grpc_status.h), log the failures, and tell the
// client's address from the peer string.
#ifndef GRADLAB_SERVER_SERVICE_RPC_REPLIES_H_
#define GRADLAB_SERVER_SERVICE_RPC_REPLIES_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gradlab {

// Logs a failed call with its method and peer; nothing for OK.
void LogFailure(const char* method, grpc::CallbackServerContext* context,
                const grpc::Status& status);

// Finishes a unary call with `status`.
grpc::ServerUnaryReactor* Reply(const char* method, grpc::CallbackServerContext* context,
                                const absl::Status& status);

// Finishes a unary call with `result`, copying it into the response on success.
template <typename Response>
grpc::ServerUnaryReactor* Reply(const char* method, grpc::CallbackServerContext* context,
                                absl::StatusOr<Response> result, Response* response) {
  if (result.ok()) *response = *std::move(result);
  return Reply(method, context, result.status());
}

// The client's address without port or brackets, from a peer string such as
// "ipv4:10.0.0.2:51234" or "ipv6:[::1]:51234".
std::string ClientAddress(const std::string& peer);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_RPC_REPLIES_H_
