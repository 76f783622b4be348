// Which gRPC calls gradlabd's tokens allow: the one check every handler makes first.
#ifndef GRADLAB_SERVER_SERVICE_CALL_AUTHORIZATION_H_
#define GRADLAB_SERVER_SERVICE_CALL_AUTHORIZATION_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/auth/token_authorizer.h"

namespace gradlab {

// The call's "authorization" metadata ("Bearer TOKEN"); empty when there is none.
absl::string_view AuthorizationOf(grpc::CallbackServerContext* context);

// OK, or why the call's "authorization" metadata does not allow `needed`; always OK when
// `authorizer` is null (no --auth_tokens_file).
absl::Status AuthorizeCall(const TokenAuthorizer* authorizer, grpc::CallbackServerContext* context,
                           Role needed);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_CALL_AUTHORIZATION_H_
