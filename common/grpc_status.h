// The one place where absl::Status and grpc::Status meet. The core returns absl::Status
// (whose codes mean what gRPC's mean); the service glue and the CLI convert here.
#ifndef GRADLAB_COMMON_GRPC_STATUS_H_
#define GRADLAB_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace gradlab {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_GRPC_STATUS_H_
