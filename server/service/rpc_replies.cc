#include "server/service/rpc_replies.h"

#include <glog/logging.h>

#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"

namespace gradlab {

void LogFailure(const char* method, grpc::CallbackServerContext* context,
                const grpc::Status& status) {
  if (status.ok()) return;
  LOG(WARNING) << method << " from " << context->peer() << " failed: "
               << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))
               << ": " << status.error_message();
}

grpc::ServerUnaryReactor* Reply(const char* method, grpc::CallbackServerContext* context,
                                const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const grpc::Status grpc_status = ToGrpcStatus(status);
  LogFailure(method, context, grpc_status);
  reactor->Finish(grpc_status);
  return reactor;
}

std::string ClientAddress(const std::string& peer) {
  absl::string_view address = peer;
  if (!absl::ConsumePrefix(&address, "ipv4:")) absl::ConsumePrefix(&address, "ipv6:");
  address = address.substr(0, address.rfind(':'));
  if (absl::ConsumePrefix(&address, "[")) absl::ConsumeSuffix(&address, "]");
  return std::string(address);
}

}  // namespace gradlab
