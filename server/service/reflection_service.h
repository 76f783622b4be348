// gRPC server reflection (grpc.reflection.v1alpha, what grpcurl and other tools ask)
// behind gradlabd's tokens. gRPC's own reflection plugin cannot be guarded: its service is
// built in, and gRPC 1.51's C++ server offers no hook that could refuse one of its calls
// over a plain connection. This one answers the same questions from the descriptors
// compiled into gradlabd, after the call's token is checked for the read role.
#ifndef GRADLAB_SERVER_SERVICE_REFLECTION_SERVICE_H_
#define GRADLAB_SERVER_SERVICE_REFLECTION_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/auth/token_authorizer.h"

namespace gradlab {

// Thread-safe. Each stream answers its requests in order, one response per request.
class ReflectionService final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  // `services`: the full names list_services reports. `authorizer` (may be null) must
  // outlive it.
  ReflectionService(std::vector<std::string> services, const TokenAuthorizer* authorizer)
      : services_(std::move(services)), authorizer_(authorizer) {}

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

 private:
  class Stream;

  const std::vector<std::string> services_;
  const TokenAuthorizer* const authorizer_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_REFLECTION_SERVICE_H_
