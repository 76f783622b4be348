// Answers calls of methods gradlabd does not serve (gRPC's generic service): when the
// server wants tokens, a call without one it knows is UNAUTHENTICATED, as every other call
// would be, so that authentication comes before anything else; otherwise UNIMPLEMENTED,
// naming the method (cut to 100 characters).
#ifndef GRADLAB_SERVER_SERVICE_UNKNOWN_METHOD_SERVICE_H_
#define GRADLAB_SERVER_SERVICE_UNKNOWN_METHOD_SERVICE_H_

#include <grpcpp/generic/async_generic_service.h>

#include "server/auth/token_authorizer.h"

namespace gradlab {

class UnknownMethodService : public grpc::CallbackGenericService {
 public:
  // `authorizer` (null: no tokens) must outlive the server.
  explicit UnknownMethodService(const TokenAuthorizer* authorizer) : authorizer_(authorizer) {}

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override;

 private:
  const TokenAuthorizer* const authorizer_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_UNKNOWN_METHOD_SERVICE_H_
