#include "server/service/call_authorization.h"

namespace gradlab {

absl::string_view AuthorizationOf(grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  const auto header = metadata.find("authorization");
  if (header == metadata.end()) return {};
  return absl::string_view(header->second.data(), header->second.size());
}

absl::Status AuthorizeCall(const TokenAuthorizer* authorizer, grpc::CallbackServerContext* context,
                           Role needed) {
  if (authorizer == nullptr) return absl::OkStatus();
  return authorizer->Authorize(AuthorizationOf(context), needed);
}

}  // namespace gradlab
